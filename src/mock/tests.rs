//! The fake over real HTTP: queue lifecycle, status stream, images, cancel, sync run, storage.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use serde_json::{Value, json};

use super::MockFal;
use crate::config::MockConfig;

const APP: &str = "fal-ai/nano-banana-pro";

async fn serve(queue_seconds: f64, progress_seconds: f64) -> (MockFal, String) {
    let config = MockConfig {
        queue_seconds,
        progress_seconds,
        public_url: None,
    };
    let mock = MockFal::new(&config, "");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let origin = format!("http://{}", listener.local_addr().unwrap());
    let router = mock.router();
    tokio::spawn(async move { axum::serve(listener, router).await });
    (mock, origin)
}

fn client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new()
}

async fn json_of(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    let bytes = response.bytes().await.unwrap();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

async fn submit(http: &reqwest::Client, queue: &str, input: Value) -> Value {
    let response = http
        .post(format!("{queue}/{APP}/edit"))
        .header("authorization", "Key test")
        .header("content-type", "application/json")
        .body(input.to_string())
        .send()
        .await
        .unwrap();
    let id = response.headers()["x-fal-request-id"]
        .to_str()
        .unwrap()
        .to_string();
    let (status, body) = json_of(response).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["request_id"], id.as_str());
    body
}

/// Reads a whole event stream, returning each `data:` payload as JSON.
async fn read_stream(http: &reqwest::Client, url: &str) -> Vec<Value> {
    let response = http
        .get(url)
        .header("authorization", "Key test")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        content_type.starts_with("text/event-stream"),
        "{content_type}"
    );
    let text = tokio::time::timeout(Duration::from_secs(10), response.text())
        .await
        .unwrap()
        .unwrap();
    text.split("\n\n")
        .filter_map(|event| event.lines().find_map(|l| l.strip_prefix("data:")))
        .map(|data| serde_json::from_str(data.trim()).unwrap())
        .collect()
}

#[tokio::test]
async fn queue_lifecycle_over_http() {
    let (mock, origin) = serve(0.2, 0.3).await;
    let (queue, _, _) = mock.base_urls(&origin);
    let http = client();

    // No key: 401 with a detail (and still recorded).
    let (status, body) = json_of(
        http.post(format!("{queue}/{APP}"))
            .body("{}")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((status, body["detail"].is_string()), (401, true));
    let bad = http
        .post(format!("{queue}/{APP}"))
        .header("authorization", "Key k")
        .body("[nope")
        .send()
        .await;
    let (status, body) = json_of(bad.unwrap()).await;
    assert_eq!(
        (status, &body["detail"][0]["type"]),
        (422, &json!("json_invalid"))
    );

    let input =
        json!({"prompt": "a red fox", "image_urls": ["https://x/y.png"], "aspect_ratio": "16:9"});
    let sub = submit(&http, &queue, input).await;
    let id = sub["request_id"].as_str().unwrap().to_string();
    assert_eq!(sub["status"], "IN_QUEUE");
    assert_eq!(
        sub["response_url"],
        format!("https://queue.fal.run/{APP}/requests/{id}")
    );
    assert_eq!(
        sub["status_url"],
        format!("https://queue.fal.run/{APP}/requests/{id}/status")
    );
    assert_eq!(
        sub["cancel_url"],
        format!("https://queue.fal.run/{APP}/requests/{id}/cancel")
    );

    let status_url = format!("{queue}/{APP}/requests/{id}/status");
    let (code, st) = json_of(
        http.get(&status_url)
            .header("authorization", "Key t")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((code, st["status"].as_str().unwrap()), (200, "IN_QUEUE"));
    assert!(st["queue_position"].is_u64() && st["response_url"] == sub["response_url"]);
    let early = http
        .get(format!("{queue}/{APP}/requests/{id}"))
        .header("authorization", "Key t")
        .send();
    let (code, body) = json_of(early.await.unwrap()).await;
    assert_eq!(
        (code, body["detail"].as_str().unwrap()),
        (400, "Request is still in progress")
    );

    // The stream (sub-path form of the URL) runs through every phase and ends after COMPLETED.
    let events = read_stream(
        &http,
        &format!("{queue}/{APP}/edit/requests/{id}/status/stream?logs=1"),
    )
    .await;
    let statuses: Vec<&str> = events
        .iter()
        .map(|e| e["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses.first(), Some(&"IN_QUEUE"));
    assert!(statuses.contains(&"IN_PROGRESS"), "{statuses:?}");
    assert_eq!(statuses.last(), Some(&"COMPLETED"));
    let logs: usize = events
        .iter()
        .map(|e| e["logs"].as_array().map_or(0, Vec::len))
        .sum();
    assert_eq!(logs, super::jobs::LOG_MESSAGES.len());
    assert_eq!(
        events[events.len() - 1]["metrics"]["inference_time"].as_f64(),
        Some(0.3)
    );

    let (code, st) = json_of(
        http.get(format!("{status_url}?logs=1"))
            .header("authorization", "Key t")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((code, st["status"].as_str().unwrap()), (200, "COMPLETED"));
    assert_eq!(st["logs"][0]["level"], "INFO");
    assert_eq!(st["logs"][0]["source"], "user");

    let done = http
        .get(format!("{queue}/{APP}/requests/{id}"))
        .header("authorization", "Key t")
        .send();
    let (code, result) = json_of(done.await.unwrap()).await;
    assert_eq!(code, 200, "{result}");
    let image = &result["images"][0];
    assert_eq!(
        (image["width"].as_u64(), image["height"].as_u64()),
        (Some(1024), Some(576))
    );
    assert_eq!(image["content_type"], "image/png");
    let url = image["url"].as_str().unwrap();
    assert!(
        url.starts_with(&format!("{origin}/files/gen/{id}/")),
        "{url}"
    );
    let fetched = http.get(url).send().await.unwrap();
    assert_eq!(fetched.headers()["content-type"], "image/png");
    assert_eq!(fetched.headers()["access-control-allow-origin"], "*");
    let bytes = fetched.bytes().await.unwrap();
    assert_eq!(&bytes[1..4], b"PNG");
    assert_eq!(bytes.len() as u64, image["file_size"].as_u64().unwrap());

    // Cancel: too late for this job; a fresh one is cancelled and reads as such.
    let cancel_url = format!("{queue}/{APP}/requests/{id}/cancel");
    let (code, body) = json_of(
        http.put(&cancel_url)
            .header("authorization", "Key t")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((code, body), (400, json!({"status": "ALREADY_COMPLETED"})));
    let fresh = submit(&http, &queue, json!({"prompt": "later"})).await;
    let fresh_id = fresh["request_id"].as_str().unwrap();
    let cancel_url = format!("{queue}/{APP}/requests/{fresh_id}/cancel");
    let (code, body) = json_of(
        http.put(&cancel_url)
            .header("authorization", "Key t")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (code, body),
        (202, json!({"status": "CANCELLATION_REQUESTED"}))
    );
    let gone = http
        .get(format!("{queue}/{APP}/requests/{fresh_id}"))
        .header("authorization", "Key t")
        .send();
    let (code, body) = json_of(gone.await.unwrap()).await;
    assert_eq!(
        (code, body["detail"].as_str().unwrap()),
        (400, "Request was cancelled")
    );
    let unknown = http
        .get(format!("{queue}/{APP}/requests/nope/status"))
        .header("authorization", "Key t")
        .send();
    let (code, body) = json_of(unknown.await.unwrap()).await;
    assert_eq!((code, body), (404, json!({"detail": "Request not found"})));

    let received = mock.received();
    assert_eq!(received[0].path, format!("/queue/{APP}"));
    assert_eq!(received[0].body.as_ref(), b"{}");
    assert!(
        received
            .iter()
            .any(|r| r.query.as_deref() == Some("logs=1"))
    );
}

#[tokio::test]
async fn sync_run_answers_the_result_with_data_uris() {
    let (mock, origin) = serve(0.05, 0.05).await;
    let (_, run, _) = mock.base_urls(&origin);
    let input =
        json!({"prompt": "tiny", "sync_mode": true, "output_format": "jpeg", "num_images": 2});
    let response = client()
        .post(format!("{run}/{APP}"))
        .header("authorization", "Key t")
        .body(input.to_string())
        .send()
        .await
        .unwrap();
    assert!(response.headers().contains_key("x-fal-request-id"));
    let (code, result) = json_of(response).await;
    assert_eq!(code, 200);
    let images = result["images"].as_array().unwrap();
    assert_eq!(images.len(), 2);
    assert!(
        images[0]["url"]
            .as_str()
            .unwrap()
            .starts_with("data:image/jpeg;base64,/9j/")
    );
    assert_ne!(images[0]["url"], images[1]["url"]);
    assert!(result["seed"].is_u64());
}

#[tokio::test]
async fn storage_upload_and_multipart() {
    let (mock, origin) = serve(0.0, 0.0).await;
    let (_, _, rest) = mock.base_urls(&origin);
    let http = client();
    let init = |path: &str, name: &str| {
        http.post(format!(
            "{rest}/storage/upload/{path}?storage_type=fal-cdn-v3"
        ))
        .header("authorization", "Key t")
        .body(json!({"content_type": "image/png", "file_name": name}).to_string())
        .send()
    };
    let (code, body) = json_of(init("initiate", "my cat.png").await.unwrap()).await;
    assert_eq!(code, 200);
    let upload_url = body["upload_url"].as_str().unwrap();
    let file_url = body["file_url"].as_str().unwrap();
    assert!(upload_url.starts_with(&format!("{origin}/files/upload/")));
    assert!(file_url.ends_with("/my%20cat.png"), "{file_url}");
    let preflight = http
        .request(reqwest::Method::OPTIONS, upload_url)
        .header("origin", "https://app.example")
        .send();
    let preflight = preflight.await.unwrap();
    assert_eq!(preflight.headers()["access-control-allow-origin"], "*");
    let put = http
        .put(upload_url)
        .header("content-type", "image/png")
        .body(b"\x89PNG-data".to_vec())
        .send();
    assert_eq!(put.await.unwrap().status().as_u16(), 200);
    let got = http.get(file_url).send().await.unwrap();
    assert_eq!(got.headers()["content-type"], "image/png");
    assert_eq!(got.bytes().await.unwrap().as_ref(), b"\x89PNG-data");

    // The official client's multipart path: PUT {upload_url}/{n}, POST {upload_url}/complete.
    let (_, body) = json_of(init("initiate-multipart", "big.bin").await.unwrap()).await;
    let upload_url = body["upload_url"].as_str().unwrap();
    let mut parts = Vec::new();
    for (n, chunk) in [(1, "first-"), (2, "second")] {
        let (code, part) = json_of(
            http.put(format!("{upload_url}/{n}"))
                .body(chunk)
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!((code, part["partNumber"].as_u64()), (200, Some(n)));
        parts.push(part);
    }
    let done = http
        .post(format!("{upload_url}/complete"))
        .body(json!({"parts": parts}).to_string())
        .send();
    assert_eq!(done.await.unwrap().status().as_u16(), 200);
    let got = http
        .get(body["file_url"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(got.bytes().await.unwrap().as_ref(), b"first-second");

    let missing = http
        .post(format!("{rest}/storage/upload/initiate"))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status().as_u16(), 401);
}

#[tokio::test]
async fn nested_under_a_mount() {
    let config = MockConfig {
        queue_seconds: 0.0,
        progress_seconds: 0.0,
        public_url: None,
    };
    let mock = MockFal::new(&config, "/_mock");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let origin = format!("http://{}", listener.local_addr().unwrap());
    let app = axum::Router::new().nest("/_mock", mock.router());
    tokio::spawn(async move { axum::serve(listener, app).await });
    let (queue, run, rest) = mock.base_urls(&origin);
    assert_eq!(run, format!("{origin}/_mock/run"));
    assert_eq!(rest, format!("{origin}/_mock/rest"));
    let http = client();
    let sub = submit(
        &http,
        &queue,
        json!({"prompt": "nested", "output_format": "webp"}),
    )
    .await;
    let id = sub["request_id"].as_str().unwrap();
    let result = http
        .get(format!("{queue}/{APP}/requests/{id}"))
        .header("authorization", "Key t")
        .send();
    let (code, result) = json_of(result.await.unwrap()).await;
    assert_eq!(code, 200, "{result}");
    let url = result["images"][0]["url"].as_str().unwrap();
    assert_eq!(url, format!("{origin}/_mock/files/gen/{id}/0.webp"));
    let image = http.get(url).send().await.unwrap();
    assert_eq!(image.headers()["content-type"], "image/webp");
    assert_eq!(&image.bytes().await.unwrap()[..4], b"RIFF");
    assert_eq!(mock.received()[0].path, format!("/queue/{APP}/edit"));
    let (code, _) = json_of(
        http.get(format!("{origin}/_mock/nowhere"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(code, 404);
}
