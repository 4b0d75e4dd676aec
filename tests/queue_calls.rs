//! Every queue call on both routes, end to end through the real proxy to the fake fal.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use reqwest::Method;
use serde_json::{Value, json};

async fn json_of(response: reqwest::Response) -> (u16, Value, reqwest::header::HeaderMap) {
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let text = response.text().await.unwrap();
    assert!(!text.contains(FAL_KEY), "the fal key leaked: {text}");
    let value = serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text}"));
    (status, value, headers)
}

/// Reads a whole SSE response, returning the JSON of each `data:` event.
async fn read_events(response: reqwest::Response) -> Vec<Value> {
    assert_eq!(response.status(), 200);
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        content_type.starts_with("text/event-stream"),
        "{content_type}"
    );
    let text = response.text().await.unwrap();
    text.lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .map(|d| serde_json::from_str(d.trim()).unwrap())
        .collect()
}

#[tokio::test]
async fn compat_route_runs_the_whole_queue_flow() {
    let (fake, origin) = start_mock().await;
    let proxy = start_proxy(&origin, |_| {}).await;

    let (status, submitted, headers) = json_of(
        proxy
            .to_fal(Method::POST, &submit_url())
            .header("x-fal-queue-priority", "low")
            .json(&edit_input())
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{submitted}");
    let id = submitted["request_id"].as_str().unwrap().to_owned();
    assert_eq!(headers["x-fal-request-id"], id.as_str());
    // Compat answers stay exactly as fal wrote them: the client follows them through the proxy.
    let status_url = submitted["status_url"].as_str().unwrap().to_owned();
    assert!(status_url.starts_with("https://queue.fal.run/fal-ai/nano-banana-pro/requests/"));

    // The fake saw the server's key, the allowed headers, the exact body, and no client secret.
    let received = fake.received();
    let submit = received.iter().find(|r| r.method == Method::POST).unwrap();
    assert_eq!(submit.path, format!("/queue/{EDIT}"));
    assert_eq!(
        submit.headers["authorization"],
        format!("Key {FAL_KEY}").as_str()
    );
    assert_eq!(submit.headers["x-fal-queue-priority"], "low");
    assert!(submit.headers.get("x-fal-target-url").is_none());
    let sent: Value = serde_json::from_slice(&submit.body).unwrap();
    assert_eq!(sent, edit_input());

    // status with logs
    let (status, body, _) = json_of(
        proxy
            .to_fal(Method::GET, &format!("{status_url}?logs=1"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200);
    assert!(["IN_QUEUE", "IN_PROGRESS", "COMPLETED"].contains(&body["status"].as_str().unwrap()));

    // result before completion: fal's own 400 passes through.
    let response_url = submitted["response_url"].as_str().unwrap().to_owned();
    let early = proxy
        .to_fal(Method::GET, &response_url)
        .send()
        .await
        .unwrap();
    assert_eq!(early.status(), 400);

    // the status stream, until COMPLETED
    let events = read_events(
        proxy
            .to_fal(Method::GET, &format!("{status_url}/stream?logs=1"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert!(events.len() >= 2, "{events:?}");
    assert_eq!(events.last().unwrap()["status"], "COMPLETED");
    assert!(events.iter().any(|e| e["status"] == "IN_PROGRESS"));

    // result
    let (status, result, _) = json_of(
        proxy
            .to_fal(Method::GET, &response_url)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{result}");
    let image_url = result["images"][0]["url"].as_str().unwrap();
    let image = http().get(image_url).send().await.unwrap();
    assert_eq!(image.status(), 200);
    assert_eq!(&image.bytes().await.unwrap()[..4], b"\x89PNG");

    // cancel after completion: fal's 400 ALREADY_COMPLETED passes through.
    let cancel_url = submitted["cancel_url"].as_str().unwrap();
    let (status, body, _) =
        json_of(proxy.to_fal(Method::PUT, cancel_url).send().await.unwrap()).await;
    assert_eq!(
        (status, body["status"].as_str()),
        (400, Some("ALREADY_COMPLETED"))
    );

    // Nothing the fake received through the proxy carries a client key. (The image GET above
    // went to the fake's file server directly, as a browser's <img> would.)
    for r in fake
        .received()
        .into_iter()
        .filter(|r| !r.path.starts_with("/files/"))
    {
        let auth = r
            .headers
            .get("authorization")
            .map(|v| v.to_str().unwrap().to_owned());
        assert_eq!(auth, Some(format!("Key {FAL_KEY}")), "{}", r.path);
        assert!(!String::from_utf8_lossy(&r.body).contains(&proxy.client_key));
    }
}

#[tokio::test]
async fn cancel_while_queued_and_sub_path_request_urls() {
    let (fake, origin) = start_mock_with(5.0, 5.0).await;
    let proxy = start_proxy(&origin, |_| {}).await;
    let (_, submitted, _) = json_of(proxy.submit_edit().await).await;
    let id = submitted["request_id"].as_str().unwrap();
    // The long form with the sub-path is accepted too.
    let long = format!("https://queue.fal.run/{EDIT}/requests/{id}/status");
    let (status, body, _) = json_of(proxy.to_fal(Method::GET, &long).send().await.unwrap()).await;
    assert_eq!((status, body["status"].as_str()), (200, Some("IN_QUEUE")));
    let cancel = format!("https://queue.fal.run/fal-ai/nano-banana-pro/requests/{id}/cancel");
    let response = proxy.to_fal(Method::PUT, &cancel).send().await.unwrap();
    assert_eq!(response.status(), 202);
    // The cancel PUT reached fal with the body the client sent (none), not a re-serialised `{}`.
    let put = fake
        .received()
        .into_iter()
        .find(|r| r.method == Method::PUT)
        .unwrap();
    assert!(put.body.is_empty());
}

#[tokio::test]
async fn sync_run_and_storage_upload_through_compat() {
    let (_fake, origin) = start_mock_with(0.1, 0.2).await;
    let proxy = start_proxy(&origin, |_| {}).await;
    let (status, result, _) = json_of(
        proxy
            .to_fal(Method::POST, "https://fal.run/fal-ai/nano-banana-pro")
            .json(&json!({"prompt": "a lighthouse at dusk", "output_format": "jpeg"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{result}");
    assert_eq!(result["images"][0]["content_type"], "image/jpeg");

    let (status, initiated, _) = json_of(
        proxy
            .to_fal(
                Method::POST,
                "https://rest.fal.ai/storage/upload/initiate?storage_type=fal-cdn-v3",
            )
            .json(&json!({"content_type": "image/png", "file_name": "cat.png"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{initiated}");
    let upload_url = initiated["upload_url"].as_str().unwrap();
    let put = http()
        .put(upload_url)
        .header("content-type", "image/png")
        .body(b"\x89PNG fake bytes".to_vec())
        .send()
        .await
        .unwrap();
    assert!(put.status().is_success());
    let file_url = initiated["file_url"].as_str().unwrap();
    let got = http()
        .get(file_url)
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(&got[..], b"\x89PNG fake bytes");
}

#[tokio::test]
async fn native_routes_mirror_fal_and_point_urls_at_the_proxy() {
    let (fake, origin) = start_mock().await;
    let proxy = start_proxy(&origin, |c| {
        c.public_url = Some("https://api.example.com".into())
    })
    .await;
    let (status, submitted, _) = json_of(
        proxy
            .native(Method::POST, &format!("/queue/{EDIT}"))
            .json(&edit_input())
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{submitted}");
    let id = submitted["request_id"].as_str().unwrap().to_owned();
    for key in ["status_url", "response_url", "cancel_url"] {
        let url = submitted[key].as_str().unwrap();
        assert!(
            url.starts_with("https://api.example.com/queue/fal-ai/nano-banana-pro/requests/"),
            "{key}: {url}"
        );
    }
    // The same call reached fal unchanged.
    assert!(
        fake.received()
            .iter()
            .any(|r| r.path == format!("/queue/{EDIT}"))
    );

    let base = format!("/queue/fal-ai/nano-banana-pro/requests/{id}");
    let (status, body, _) = json_of(
        proxy
            .native(Method::GET, &format!("{base}/status?logs=1"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    if let Some(url) = body["response_url"].as_str() {
        assert!(url.starts_with("https://api.example.com/queue/"), "{url}");
    }

    let events = read_events(
        proxy
            .native(Method::GET, &format!("{base}/status/stream"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(events.last().unwrap()["status"], "COMPLETED");
    for e in &events {
        if let Some(url) = e["response_url"].as_str() {
            assert!(url.starts_with("https://api.example.com/queue/"), "{url}");
        }
    }
    let (status, result, _) = json_of(proxy.native(Method::GET, &base).send().await.unwrap()).await;
    assert_eq!(status, 200, "{result}");
    assert!(result["images"].as_array().is_some_and(|a| a.len() == 1));
    let response = proxy
        .native(Method::PUT, &format!("{base}/cancel"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);

    let (status, result, _) = json_of(
        proxy
            .native(Method::POST, "/run/fal-ai/nano-banana-pro")
            .json(&json!({"prompt": "a red bicycle", "aspect_ratio": "16:9"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{result}");
    let width = result["images"][0]["width"].as_u64().unwrap();
    let height = result["images"][0]["height"].as_u64().unwrap();
    assert!(width > height);

    let (status, initiated, _) = json_of(
        proxy
            .native(
                Method::POST,
                "/storage/upload/initiate?storage_type=fal-cdn-v3",
            )
            .json(&json!({"content_type": "image/png", "file_name": "a.png"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{initiated}");
}

#[tokio::test]
async fn native_urls_derive_from_the_host_without_public_url() {
    let (_fake, origin) = start_mock().await;
    let proxy = start_proxy(&origin, |_| {}).await;
    let (_, submitted, _) = json_of(
        proxy
            .native(Method::POST, &format!("/queue/{EDIT}"))
            .json(&edit_input())
            .send()
            .await
            .unwrap(),
    )
    .await;
    let url = submitted["status_url"].as_str().unwrap();
    assert!(url.starts_with(&format!("{}/queue/", proxy.url)), "{url}");
    // Following the rewritten URL works.
    let response = common::http()
        .get(url)
        .header("authorization", format!("Bearer {}", proxy.client_key))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}
