//! Target rules, client authentication and CORS over real HTTP; nothing refused reaches fal.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use reqwest::Method;

#[tokio::test]
async fn every_class_of_target_rule_is_refused_before_fal() {
    let (fake, origin) = start_mock().await;
    let proxy = start_proxy(&origin, |_| {}).await;
    let cases: &[(Method, &str, u16, &str)] = &[
        (
            Method::POST,
            "http://queue.fal.run/fal-ai/nano-banana-pro/edit",
            400,
            "target_not_https",
        ),
        (
            Method::POST,
            "https://evil.example.com/fal-ai/nano-banana-pro/edit",
            403,
            "target_host_not_allowed",
        ),
        (
            Method::POST,
            "https://user:pass@queue.fal.run/fal-ai/nano-banana-pro/edit",
            400,
            "target_userinfo",
        ),
        (
            Method::POST,
            "https://queue.fal.run:8443/fal-ai/nano-banana-pro/edit",
            400,
            "target_port",
        ),
        (
            Method::POST,
            "https://169.254.169.254/latest/meta-data",
            400,
            "target_ip_literal",
        ),
        (
            Method::POST,
            "https://queue.fal.run/fal-ai/../nano-banana-pro/edit",
            400,
            "target_path",
        ),
        (
            Method::POST,
            "https://queue.fal.run/fal-ai/%2e%2e/nano-banana-pro/edit",
            400,
            "target_path",
        ),
        (
            Method::POST,
            "https://queue.fal.run/fal-ai%2fnano-banana-pro/edit",
            400,
            "target_path",
        ),
        (Method::POST, "/relative/path", 400, "invalid_target"),
        (Method::POST, "garbage", 400, "invalid_target"),
        (
            Method::POST,
            "https://queue.fal.run/fal-ai/flux/dev",
            403,
            "endpoint_not_allowed",
        ),
        (
            Method::GET,
            "https://queue.fal.run/fal-ai/flux/requests/abc/status",
            403,
            "endpoint_not_allowed",
        ),
        (
            Method::POST,
            "https://rest.fal.ai/keys",
            403,
            "target_path_not_allowed",
        ),
        (
            Method::POST,
            "https://rest.fal.ai/storage/upload/initiate?storage_type=gcs",
            403,
            "target_query",
        ),
        (
            Method::POST,
            "https://queue.fal.run/fal-ai/nano-banana-pro/edit?fal_webhook=https://attacker.example/x",
            403,
            "webhook_not_allowed",
        ),
        (
            Method::GET,
            "https://queue.fal.run/fal-ai/nano-banana-pro/edit",
            405,
            "method_not_allowed",
        ),
        (
            Method::PUT,
            "https://queue.fal.run/fal-ai/nano-banana-pro/requests/abc/status",
            405,
            "method_not_allowed",
        ),
        (
            Method::GET,
            "https://queue.fal.run/fal-ai/nano-banana-pro/requests/a.b/status",
            400,
            "invalid_request_id",
        ),
    ];
    for (method, target, status, code) in cases {
        let response = proxy
            .to_fal(method.clone(), target)
            .json(&edit_input())
            .send()
            .await
            .unwrap();
        expect_error(response, *status, code).await;
    }
    // The same rules hold on the native routes.
    let response = proxy
        .native(Method::POST, "/queue/fal-ai/flux/dev")
        .json(&edit_input())
        .send()
        .await
        .unwrap();
    expect_error(response, 403, "endpoint_not_allowed").await;
    let response = proxy
        .native(
            Method::GET,
            "/queue/fal-ai/nano-banana-pro/requests/a%2Fb/status",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    assert!(fake.received().is_empty(), "refused requests reached fal");
}

#[tokio::test]
async fn webhooks_under_an_allowed_prefix_pass() {
    let (fake, origin) = start_mock().await;
    let proxy = start_proxy(&origin, |c| {
        c.fal.allowed_webhook_urls = vec!["https://hooks.example.com/fal/".into()];
    })
    .await;
    let target = format!(
        "{}?fal_webhook=https://hooks.example.com/fal/done",
        submit_url()
    );
    let response = proxy
        .to_fal(Method::POST, &target)
        .json(&edit_input())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let received = fake.received();
    assert!(
        received[0]
            .query
            .as_deref()
            .is_some_and(|q| q.contains("fal_webhook=https%3A%2F%2Fhooks.example.com%2Ffal%2Fdone"))
    );
}

#[tokio::test]
async fn clients_must_authenticate_and_their_key_never_reaches_fal() {
    let (fake, origin) = start_mock().await;
    let proxy = start_proxy(&origin, |_| {}).await;
    let call = |auth: Option<String>| {
        let mut r = http()
            .post(proxy.compat())
            .header("x-fal-target-url", submit_url())
            .json(&edit_input());
        if let Some(a) = auth {
            r = r.header("authorization", a);
        }
        r.send()
    };
    let missing = call(None).await.unwrap();
    let www = missing.headers().get("www-authenticate").cloned();
    expect_error(missing, 401, "unauthorized").await;
    assert!(www.is_some());
    for wrong in ["Bearer nope", "Key nope", "Basic dXNlcjpwYXNz", "Bearer"] {
        expect_error(
            call(Some(wrong.into())).await.unwrap(),
            401,
            "invalid_credentials",
        )
        .await;
    }
    assert!(fake.received().is_empty());
    for good in [
        format!("Bearer {}", proxy.client_key),
        format!("Key {}", proxy.other_key),
    ] {
        assert_eq!(call(Some(good)).await.unwrap().status(), 200);
    }
    for r in fake.received() {
        assert_eq!(
            r.headers["authorization"],
            format!("Key {FAL_KEY}").as_str()
        );
    }
}

#[tokio::test]
async fn anonymous_access_only_when_configured() {
    let (_fake, origin) = start_mock().await;
    let proxy = start_proxy(&origin, |c| c.auth.anonymous = true).await;
    let response = http()
        .post(proxy.compat())
        .header("x-fal-target-url", submit_url())
        .json(&edit_input())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    // A wrong key is still refused rather than treated as anonymous.
    let response = http()
        .post(proxy.compat())
        .header("x-fal-target-url", submit_url())
        .header("authorization", "Bearer wrong")
        .json(&edit_input())
        .send()
        .await
        .unwrap();
    expect_error(response, 401, "invalid_credentials").await;
}

#[tokio::test]
async fn cors_allows_configured_origins_and_refuses_others() {
    let (fake, origin) = start_mock().await;
    let proxy = start_proxy(&origin, |c| {
        c.cors.allowed_origins = vec![
            "https://app.example.com".into(),
            "https://*.preview.example.com".into(),
        ];
    })
    .await;
    for allowed in [
        "https://app.example.com",
        "https://pr-7.preview.example.com",
    ] {
        let preflight = http()
            .request(Method::OPTIONS, proxy.compat())
            .header("origin", allowed)
            .header("access-control-request-method", "POST")
            .header(
                "access-control-request-headers",
                "x-fal-target-url, authorization, content-type, x-fal-queue-priority, idempotency-key",
            )
            .send()
            .await
            .unwrap();
        assert!(preflight.status().is_success(), "{}", preflight.status());
        let h = preflight.headers();
        assert_eq!(h["access-control-allow-origin"], allowed);
        let allow_headers = h["access-control-allow-headers"]
            .to_str()
            .unwrap()
            .to_lowercase();
        for needed in [
            "x-fal-target-url",
            "authorization",
            "content-type",
            "x-fal-queue-priority",
            "idempotency-key",
        ] {
            assert!(allow_headers.contains(needed), "{allow_headers}");
        }
        assert!(
            h["access-control-allow-methods"]
                .to_str()
                .unwrap()
                .contains("POST")
        );

        let response = proxy
            .to_fal(Method::POST, &submit_url())
            .header("origin", allowed)
            .json(&edit_input())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let h = response.headers();
        assert_eq!(h["access-control-allow-origin"], allowed);
        let exposed = h["access-control-expose-headers"].to_str().unwrap();
        for needed in ["x-fal-request-id", "retry-after", "ratelimit"] {
            assert!(exposed.contains(needed), "{exposed}");
        }
    }
    let submits_before = fake.received().len();
    for refused in [
        "https://evil.example.com",
        "https://app.example.com.evil.com",
        "https://preview.example.com",
    ] {
        let preflight = http()
            .request(Method::OPTIONS, proxy.compat())
            .header("origin", refused)
            .header("access-control-request-method", "POST")
            .send()
            .await
            .unwrap();
        assert_eq!(preflight.status(), 403);
        assert!(
            preflight
                .headers()
                .keys()
                .all(|k| !k.as_str().starts_with("access-control-"))
        );
        let response = proxy
            .to_fal(Method::POST, &submit_url())
            .header("origin", refused)
            .json(&edit_input())
            .send()
            .await
            .unwrap();
        assert!(
            response
                .headers()
                .keys()
                .all(|k| !k.as_str().starts_with("access-control-"))
        );
        expect_error(response, 403, "origin_not_allowed").await;
    }
    assert_eq!(
        fake.received().len(),
        submits_before,
        "refused origins reached fal"
    );
}

#[tokio::test]
async fn debug_output_of_the_whole_state_holds_no_secret() {
    let (_fake, origin) = start_mock().await;
    let proxy = start_proxy(&origin, |_| {}).await;
    let debug = format!("{:?}", proxy.state);
    assert!(debug.contains("FalClient"), "{debug}");
    assert!(!debug.contains(FAL_KEY));
    assert!(!debug.contains("SECRET"));
    let hash = proxy.state.config.auth.api_keys[0].key_sha256.expose();
    assert!(!debug.contains(hash));
    assert!(!debug.contains(&proxy.client_key));
}
