//! Validation before spend over real HTTP: every schema and policy rejection answers 422 in
//! fal's shape with the right `loc`, and none of them reaches fal.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use base64::Engine;
use common::*;
use reqwest::Method;
use serde_json::{Value, json};

fn with(mut input: Value, field: &str, value: Value) -> Value {
    input[field] = value;
    input
}

fn without(mut input: Value, field: &str) -> Value {
    input.as_object_mut().unwrap().remove(field);
    input
}

fn data_uri(media: &str, bytes: usize) -> String {
    let payload = base64::engine::general_purpose::STANDARD.encode(vec![7u8; bytes]);
    format!("data:{media};base64,{payload}")
}

/// Submits `input` and returns the `loc`s of the 422 answer.
async fn rejected_locs(proxy: &Proxy, input: &Value) -> Vec<Value> {
    let response = proxy.submit(input).await;
    let status = response.status();
    let body: Value = response.json().await.unwrap();
    assert_eq!(status, 422, "{input} -> {body}");
    assert_eq!(body["code"], "invalid_input");
    let detail = body["detail"].as_array().unwrap();
    for d in detail {
        assert!(d["msg"].as_str().is_some_and(|m| !m.is_empty()), "{d}");
        assert!(d["type"].as_str().is_some_and(|m| !m.is_empty()), "{d}");
    }
    detail.iter().map(|d| d["loc"].clone()).collect()
}

#[tokio::test]
async fn each_schema_and_policy_rejection_names_its_field_and_nothing_reaches_fal() {
    let (fake, origin) = start_mock().await;
    let proxy = start_proxy(&origin, |c| {
        let edit = &mut c.endpoints[0];
        edit.max_num_images = Some(2);
        edit.allowed_resolutions = vec!["1K".into(), "2K".into()];
        edit.allow_web_search = false;
        edit.max_image_urls = Some(3);
        edit.max_data_uri_bytes = 1024;
    })
    .await;
    let base = edit_input();
    let cases: Vec<(Value, Value)> = vec![
        (without(base.clone(), "prompt"), json!(["body", "prompt"])),
        (
            with(base.clone(), "prompt", json!("hi")),
            json!(["body", "prompt"]),
        ),
        (
            with(base.clone(), "prompt", json!(42)),
            json!(["body", "prompt"]),
        ),
        (
            without(base.clone(), "image_urls"),
            json!(["body", "image_urls"]),
        ),
        (
            with(base.clone(), "num_images", json!(0)),
            json!(["body", "num_images"]),
        ),
        (
            with(base.clone(), "num_images", json!(5)),
            json!(["body", "num_images"]),
        ),
        (
            with(base.clone(), "num_images", json!(1.5)),
            json!(["body", "num_images"]),
        ),
        (
            with(base.clone(), "num_images", json!(3)),
            json!(["body", "num_images"]),
        ),
        (
            with(base.clone(), "aspect_ratio", json!("7:3")),
            json!(["body", "aspect_ratio"]),
        ),
        (
            with(base.clone(), "output_format", json!("gif")),
            json!(["body", "output_format"]),
        ),
        (
            with(base.clone(), "resolution", json!("8K")),
            json!(["body", "resolution"]),
        ),
        (
            with(base.clone(), "resolution", json!("4K")),
            json!(["body", "resolution"]),
        ),
        (
            with(base.clone(), "sync_mode", json!(true)),
            json!(["body", "sync_mode"]),
        ),
        (
            with(base.clone(), "enable_web_search", json!(true)),
            json!(["body", "enable_web_search"]),
        ),
        (
            with(base.clone(), "safety_tolerance", json!("9")),
            json!(["body", "safety_tolerance"]),
        ),
        (
            with(base.clone(), "surprise", json!(1)),
            json!(["body", "surprise"]),
        ),
        (
            with(
                base.clone(),
                "image_urls",
                json!([
                    "https://a.com/1.png",
                    "https://a.com/2.png",
                    "https://a.com/3.png",
                    "https://a.com/4.png"
                ]),
            ),
            json!(["body", "image_urls"]),
        ),
        (
            with(base.clone(), "image_urls", json!(["http://a.com/1.png"])),
            json!(["body", "image_urls", 0]),
        ),
        (
            with(
                base.clone(),
                "image_urls",
                json!(["https://a.com/1.png", "ftp://a.com/2.png"]),
            ),
            json!(["body", "image_urls", 1]),
        ),
        (
            with(
                base.clone(),
                "image_urls",
                json!(["https://user:pw@a.com/1.png"]),
            ),
            json!(["body", "image_urls", 0]),
        ),
        (
            with(
                base.clone(),
                "image_urls",
                json!([data_uri("text/html", 10)]),
            ),
            json!(["body", "image_urls", 0]),
        ),
        (
            with(
                base.clone(),
                "image_urls",
                json!(["data:image/png;base64,@@@notbase64"]),
            ),
            json!(["body", "image_urls", 0]),
        ),
        (
            with(
                base.clone(),
                "image_urls",
                json!([data_uri("image/png", 4096)]),
            ),
            json!(["body", "image_urls", 0]),
        ),
        (
            with(base.clone(), "image_urls", json!([17])),
            json!(["body", "image_urls", 0]),
        ),
    ];
    for (input, loc) in &cases {
        let locs = rejected_locs(&proxy, input).await;
        assert!(locs.contains(loc), "{input}: expected {loc} in {locs:?}");
    }
    // Not JSON at all, and JSON that is not an object.
    for body in ["{not json", "[1,2]", ""] {
        let response = proxy
            .to_fal(Method::POST, &submit_url())
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 422, "{body:?}");
        let v: Value = response.json().await.unwrap();
        assert_eq!(v["detail"][0]["loc"][0], "body");
    }
    // The same rules on the native route and on sync runs.
    let bad = with(base.clone(), "num_images", json!(9));
    let response = proxy
        .native(Method::POST, &format!("/queue/{EDIT}"))
        .json(&bad)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 422);
    let response = proxy
        .native(Method::POST, "/run/fal-ai/nano-banana-pro")
        .json(&json!({"prompt": "ok prompt", "image_urls": ["https://a.com/x.png"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.status(),
        422,
        "text-to-image has no image_urls field"
    );

    assert!(fake.received().is_empty(), "a rejected input reached fal");
}

#[tokio::test]
async fn every_violated_field_is_reported_at_once() {
    let (fake, origin) = start_mock().await;
    let proxy = start_proxy(&origin, |_| {}).await;
    let input = json!({
        "prompt": "x",
        "image_urls": ["http://insecure.example/a.png", "data:text/plain;base64,aGk="],
        "num_images": 7,
        "aspect_ratio": "2:1",
        "output_format": "bmp",
        "extra": true
    });
    let locs = rejected_locs(&proxy, &input).await;
    for loc in [
        json!(["body", "prompt"]),
        json!(["body", "image_urls", 0]),
        json!(["body", "image_urls", 1]),
        json!(["body", "num_images"]),
        json!(["body", "aspect_ratio"]),
        json!(["body", "output_format"]),
        json!(["body", "extra"]),
    ] {
        assert!(locs.contains(&loc), "{loc} missing from {locs:?}");
    }
    assert!(fake.received().is_empty());
}

#[tokio::test]
async fn valid_inputs_with_data_uris_and_host_allowlists_pass() {
    let (fake, origin) = start_mock().await;
    let proxy = start_proxy(&origin, |c| {
        c.endpoints[0].image_url_hosts = vec!["*.googleapis.com".into()];
    })
    .await;
    let input = with(
        edit_input(),
        "image_urls",
        json!([
            "https://storage.googleapis.com/falserverless/example_inputs/nano-banana-edit-input.png",
            data_uri("image/png", 200 * 1024),
            data_uri("image/webp", 1000),
        ]),
    );
    let response = proxy.submit(&input).await;
    assert_eq!(response.status(), 200);
    // The body reached fal byte for byte as sent.
    let sent = serde_json::to_vec(&input).unwrap();
    assert_eq!(&fake.received()[0].body[..], &sent[..]);

    let elsewhere = with(
        edit_input(),
        "image_urls",
        json!(["https://evil.example.com/a.png"]),
    );
    let locs = rejected_locs(&proxy, &elsewhere).await;
    assert_eq!(locs, vec![json!(["body", "image_urls", 0])]);
}
