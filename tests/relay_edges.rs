//! The relay under edge conditions, against small scripted fakes of fal: streaming without
//! buffering, fal's status codes passing through, retries, timeouts, refused connections,
//! header filtering and the protective limits.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bytes::Bytes;
use common::*;
use futures_util::StreamExt;
use reqwest::Method;
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Notify;

const STATUS_PATH: &str = "/queue/fal-ai/nano-banana-pro/requests/req-1/status";
const STATUS_URL: &str = "https://queue.fal.run/fal-ai/nano-banana-pro/requests/req-1/status";
const RESULT_URL: &str = "https://queue.fal.run/fal-ai/nano-banana-pro/requests/req-1";

#[tokio::test]
async fn sse_events_are_relayed_while_upstream_is_still_open() {
    // The fake sends one event, then holds the stream open until the test has received that
    // event through the proxy. A buffering proxy would deadlock here (and the test time out).
    let (release, fake) = gated_sse_fake();
    let origin = serve_router(fake).await;
    let proxy = start_proxy(&origin, |_| {}).await;
    proxy.own("req-1").await;
    let response = proxy
        .to_fal(Method::GET, &format!("{STATUS_URL}/stream"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let mut stream = response.bytes_stream();
    let first = tokio::time::timeout(Duration::from_secs(10), stream.next())
        .await
        .expect("the first event must arrive while upstream is still open")
        .unwrap()
        .unwrap();
    assert!(String::from_utf8_lossy(&first).contains("IN_PROGRESS"));
    release.notify_one();
    let mut rest = Vec::new();
    while let Some(chunk) = stream.next().await {
        rest.extend_from_slice(&chunk.unwrap());
    }
    assert!(String::from_utf8_lossy(&rest).contains("COMPLETED"));
}

/// A fake whose status stream sends `IN_PROGRESS`, then waits for the returned gate before it
/// sends `COMPLETED` and ends.
fn gated_sse_fake() -> (Arc<Notify>, Router) {
    let release = Arc::new(Notify::new());
    let gate = release.clone();
    let fake = Router::new().route(
        &format!("{STATUS_PATH}/stream"),
        get(move || {
            let gate = gate.clone();
            async move {
                Response::builder()
                    .header("content-type", "text/event-stream")
                    .body(Body::from_stream(async_stream(gate)))
                    .unwrap()
            }
        }),
    );
    (release, fake)
}

fn async_stream(
    gate: Arc<Notify>,
) -> impl futures_util::Stream<Item = Result<Bytes, std::io::Error>> + Send {
    futures_util::stream::unfold(0u8, move |step| {
        let gate = gate.clone();
        async move {
            match step {
                0 => Some((
                    Ok(Bytes::from_static(
                        b"data: {\"status\":\"IN_PROGRESS\"}\n\n",
                    )),
                    1,
                )),
                1 => {
                    gate.notified().await;
                    Some((
                        Ok(Bytes::from_static(b"data: {\"status\":\"COMPLETED\"}\n\n")),
                        2,
                    ))
                }
                _ => None,
            }
        }
    })
}

#[tokio::test]
async fn a_large_result_is_streamed_through_not_buffered() {
    large_result_streams_through(false).await;
}

#[tokio::test]
async fn over_http2_a_large_result_is_streamed_through_not_buffered() {
    // More than the stream's flow-control window: fal goes on only as the proxy takes data.
    large_result_streams_through(true).await;
}

async fn large_result_streams_through(http2: bool) {
    // 6 MiB in 64 KiB chunks; the second half is held back until the client has the first byte.
    let release = Arc::new(Notify::new());
    let gate = release.clone();
    let chunk = Bytes::from(vec![b'x'; 64 * 1024]);
    let fake = Router::new().route(
        "/queue/fal-ai/nano-banana-pro/requests/req-1",
        get(move || {
            let gate = gate.clone();
            let chunk = chunk.clone();
            async move {
                let body = futures_util::stream::unfold(0usize, move |i| {
                    let gate = gate.clone();
                    let chunk = chunk.clone();
                    async move {
                        if i == 48 {
                            gate.notified().await;
                        }
                        (i < 96).then(|| (Ok::<_, std::io::Error>(chunk), i + 1))
                    }
                });
                Response::builder()
                    .header("content-type", "application/json")
                    .body(Body::from_stream(body))
                    .unwrap()
            }
        }),
    );
    let origin = serve_router(fake).await;
    let proxy = start_proxy(&origin, |c| c.fal.http2_prior_knowledge = http2).await;
    proxy.own("req-1").await;
    let response = proxy.to_fal(Method::GET, RESULT_URL).send().await.unwrap();
    assert_eq!(response.status(), 200, "{:?}", response.headers());
    let mut stream = response.bytes_stream();
    let mut total = 0usize;
    let first = tokio::time::timeout(Duration::from_secs(10), stream.next())
        .await
        .expect("bytes must flow before the upstream body ends")
        .unwrap()
        .unwrap();
    total += first.len();
    release.notify_one();
    while let Some(chunk) = stream.next().await {
        total += chunk.unwrap().len();
    }
    assert_eq!(total, 96 * 64 * 1024);
}

#[tokio::test]
async fn fal_status_codes_and_bodies_pass_through_unchanged() {
    for (status, body) in [
        (400u16, json!({"detail": "bad request"})),
        (401u16, json!({"detail": "Invalid key"})),
        (404u16, json!({"detail": "Not found"})),
        (
            422u16,
            json!({"detail": [{"loc": ["body", "prompt"], "msg": "too short", "type": "string_too_short"}]}),
        ),
    ] {
        let answer = body.clone();
        let fake = Router::new().route(
            &format!("/queue/{EDIT}"),
            post(move || {
                let answer = answer.clone();
                async move { (StatusCode::from_u16(status).unwrap(), axum::Json(answer)) }
            }),
        );
        let origin = serve_router(fake).await;
        let proxy = start_proxy(&origin, |_| {}).await;
        proxy.own("req-1").await;
        let response = proxy.submit_edit().await;
        assert_eq!(response.status().as_u16(), status);
        let got: Value = response.json().await.unwrap();
        assert_eq!(got, body);
    }
}

fn counting_status_fake(
    fail_first: usize,
    failure: StatusCode,
) -> (Router, Arc<AtomicUsize>, Arc<AtomicUsize>) {
    let gets = Arc::new(AtomicUsize::new(0));
    let posts = Arc::new(AtomicUsize::new(0));
    let (g, p) = (gets.clone(), posts.clone());
    let router = Router::new()
        .route(
            STATUS_PATH,
            get(move || {
                let n = g.fetch_add(1, Ordering::SeqCst);
                async move {
                    if n < fail_first {
                        failure.into_response()
                    } else {
                        axum::Json(json!({"status": "IN_QUEUE", "queue_position": 0}))
                            .into_response()
                    }
                }
            }),
        )
        .route(
            &format!("/queue/{EDIT}"),
            post(move || {
                p.fetch_add(1, Ordering::SeqCst);
                async move { failure }
            }),
        );
    (router, gets, posts)
}

#[tokio::test]
async fn idempotent_reads_are_retried_on_5xx_and_submits_never() {
    let (fake, gets, posts) = counting_status_fake(2, StatusCode::SERVICE_UNAVAILABLE);
    let origin = serve_router(fake).await;
    let proxy = start_proxy(&origin, |c| c.fal.retries = 2).await;
    proxy.own("req-1").await;
    let response = proxy.to_fal(Method::GET, STATUS_URL).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(gets.load(Ordering::SeqCst), 3);

    let response = proxy.submit_edit().await;
    assert_eq!(response.status(), 503);
    assert_eq!(
        posts.load(Ordering::SeqCst),
        1,
        "a submit must never be retried"
    );
}

#[tokio::test]
async fn retries_are_bounded_and_the_last_upstream_answer_is_relayed() {
    let (fake, gets, _) = counting_status_fake(100, StatusCode::BAD_GATEWAY);
    let origin = serve_router(fake).await;
    let proxy = start_proxy(&origin, |c| c.fal.retries = 1).await;
    proxy.own("req-1").await;
    let response = proxy.to_fal(Method::GET, STATUS_URL).send().await.unwrap();
    assert_eq!(response.status(), 502);
    assert_eq!(gets.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn an_upstream_timeout_is_504_json() {
    let fake = Router::new().route(
        STATUS_PATH,
        get(|| async {
            tokio::time::sleep(Duration::from_secs(20)).await;
            "late"
        }),
    );
    let origin = serve_router(fake).await;
    let proxy = start_proxy(&origin, |c| {
        c.fal.request_timeout_secs = 0.3;
        c.fal.retries = 0;
    })
    .await;
    proxy.own("req-1").await;
    let response = proxy.to_fal(Method::GET, STATUS_URL).send().await.unwrap();
    expect_error(response, 504, "upstream_timeout").await;
}

/// A body whose first chunk comes at once and whose rest never does.
fn stalled_body(first: &'static [u8]) -> Body {
    Body::from_stream(futures_util::stream::unfold(0u8, move |step| async move {
        if step > 0 {
            tokio::time::sleep(Duration::from_secs(20)).await;
        }
        Some((Ok::<_, std::io::Error>(Bytes::from_static(first)), step + 1))
    }))
}

#[tokio::test]
async fn the_time_limit_covers_the_answer_body_too() {
    let fake = Router::new()
        .route(
            &format!("/queue/{EDIT}"),
            post(|| async { stalled_body(br#"{"request_id":"#) }),
        )
        .route(STATUS_PATH, get(|| async { stalled_body(b"{") }));
    let origin = serve_router(fake).await;
    let proxy = start_proxy(&origin, |c| {
        c.fal.request_timeout_secs = 0.3;
        c.fal.retries = 0;
    })
    .await;
    // A submit's answer is read whole: the client gets 504 JSON, in about the time limit.
    let started = std::time::Instant::now();
    let response = proxy.submit_edit().await;
    expect_error(response, 504, "upstream_timeout").await;
    assert!(started.elapsed() < Duration::from_secs(10));
    // A read is streamed: its head has gone out, so the body is cut at the time limit.
    proxy.own("req-1").await;
    let response = proxy.to_fal(Method::GET, STATUS_URL).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let body = tokio::time::timeout(Duration::from_secs(10), response.bytes())
        .await
        .expect("the body must end at the time limit");
    assert!(body.is_err(), "a cut body must not look complete");
}

#[tokio::test]
async fn a_refused_connection_is_502_json_without_internal_details() {
    // A socket bound but never listening holds the port (no parallel test can take it) and
    // refuses every connection.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let port = socket.local_addr().unwrap().port();
    let proxy = start_proxy(&format!("http://127.0.0.1:{port}"), |c| c.fal.retries = 1).await;
    proxy.own("req-1").await;
    let response = proxy.to_fal(Method::GET, STATUS_URL).send().await.unwrap();
    let body = expect_error(response, 502, "upstream_unreachable").await;
    assert!(!body.to_string().contains(&port.to_string()));
    let response = proxy.submit_edit().await;
    expect_error(response, 502, "upstream_unreachable").await;
}

/// Over HTTP/1.1 (our own connection) and HTTP/2 (hyper's, as to the real fal by ALPN) alike.
#[tokio::test]
async fn response_headers_are_filtered_and_cookies_never_relayed() {
    let fake = Router::new().route(
        STATUS_PATH,
        get(|| async {
            let mut h = HeaderMap::new();
            h.append("set-cookie", "session=abc; HttpOnly".parse().unwrap());
            h.append("set-cookie", "other=def".parse().unwrap());
            h.insert("x-fal-request-id", "req-1".parse().unwrap());
            h.append("x-fal-billable-units", "1".parse().unwrap());
            h.append("x-fal-billable-units", "2".parse().unwrap());
            h.insert("server", "upstream/1.0".parse().unwrap());
            h.insert("x-internal-debug", "secret-ish".parse().unwrap());
            h.insert("cache-control", "no-store".parse().unwrap());
            (h, axum::Json(json!({"status": "IN_QUEUE"})))
        }),
    );
    let origin = serve_router(fake).await;
    for http2 in [false, true] {
        let proxy = start_proxy(&origin, |c| c.fal.http2_prior_knowledge = http2).await;
        proxy.own("req-1").await;
        let response = proxy
            .to_fal(Method::GET, STATUS_URL)
            .header("cookie", "mine=1")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let h = response.headers();
        assert_eq!(h["x-fal-request-id"], "req-1", "http2: {http2}");
        let units: Vec<_> = h.get_all("x-fal-billable-units").iter().collect();
        assert_eq!(units, ["1", "2"], "http2: {http2}");
        assert_eq!(h["cache-control"], "no-store", "http2: {http2}");
        assert!(h.get("set-cookie").is_none(), "http2: {http2}");
        assert!(h.get("x-internal-debug").is_none(), "http2: {http2}");
        assert!(h.get("server").is_none(), "http2: {http2}");
        assert!(h.get("x-fal-proxy-request-id").is_some(), "http2: {http2}");
    }
}

#[tokio::test]
async fn protective_limits_answer_in_json() {
    let (fake, origin) = start_mock().await;
    let proxy = start_proxy(&origin, |c| {
        c.server.max_body_bytes = 64 * 1024;
        c.server.body_read_timeout_secs = 0.5;
    })
    .await;
    proxy.own("req-1").await;

    // Too large: 413, nothing forwarded.
    let big = json!({"prompt": "x".repeat(100 * 1024), "image_urls": []});
    let response = proxy.submit(&big).await;
    expect_error(response, 413, "payload_too_large").await;

    // A body that stops arriving: 408 once the silence exceeds the read timeout.
    let mut socket = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
    let head = format!(
        "POST /api/fal/proxy HTTP/1.1\r\nhost: x\r\nx-fal-target-url: {}\r\nauthorization: Bearer {}\r\ncontent-type: application/json\r\ncontent-length: 1000\r\n\r\n{{\"prompt\":",
        submit_url(),
        proxy.client_key
    );
    socket.write_all(head.as_bytes()).await.unwrap();
    let mut answer = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(10), socket.read(&mut answer))
        .await
        .expect("the proxy must answer a stalled body")
        .unwrap();
    let answer = String::from_utf8_lossy(&answer[..n]);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("body_timeout"), "{answer}");

    // Wrong methods and unknown routes: JSON too.
    for method in [Method::DELETE, Method::PATCH, Method::TRACE] {
        let response = proxy.to_fal(method, &submit_url()).send().await.unwrap();
        expect_error(response, 405, "method_not_allowed").await;
    }
    let response = http()
        .get(format!("{}/nope", proxy.url))
        .send()
        .await
        .unwrap();
    expect_error(response, 404, "not_found").await;
    let response = http()
        .post(proxy.compat())
        .header("authorization", format!("Bearer {}", proxy.client_key))
        .send()
        .await
        .unwrap();
    expect_error(response, 400, "missing_target_url").await;
    // A submit that is not JSON-typed.
    let response = proxy
        .to_fal(Method::POST, &submit_url())
        .header("content-type", "text/plain")
        .body(edit_input().to_string())
        .send()
        .await
        .unwrap();
    expect_error(response, 415, "unsupported_media_type").await;

    assert!(fake.received().is_empty(), "nothing may reach fal");
}

#[tokio::test]
async fn headers_that_never_finish_are_cut_off() {
    let (_fake, origin) = start_mock().await;
    let proxy = start_proxy(&origin, |c| c.server.header_read_timeout_secs = 0.5).await;
    proxy.own("req-1").await;
    let mut socket = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
    socket
        .write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 1024];
    // The server closes the connection (read returns 0, or an error) instead of waiting forever.
    let read = tokio::time::timeout(Duration::from_secs(10), socket.read(&mut buf))
        .await
        .expect("the connection must be closed");
    if let Ok(n) = read {
        let text = String::from_utf8_lossy(&buf[..n]);
        assert!(n == 0 || text.starts_with("HTTP/1.1 408"), "{text}");
    }
}

#[tokio::test]
async fn health_and_readiness() {
    let (_fake, origin) = start_mock().await;
    let proxy = start_proxy(&origin, |_| {}).await;
    proxy.own("req-1").await;
    let r = http()
        .get(format!("{}/healthz", proxy.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = http()
        .get(format!("{}/readyz", proxy.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    proxy.state.draining.store(true, Ordering::Relaxed);
    let r = http()
        .get(format!("{}/readyz", proxy.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
}

#[tokio::test]
async fn requests_beyond_the_concurrency_cap_are_shed_with_503_while_a_stream_is_open() {
    let (release, fake) = gated_sse_fake();
    let origin = serve_router(fake).await;
    let proxy = start_proxy(&origin, |c| c.server.max_concurrent_requests = 1).await;
    proxy.own("req-1").await;
    let response = proxy
        .to_fal(Method::GET, &format!("{STATUS_URL}/stream"))
        .send()
        .await
        .unwrap();
    let mut stream = response.bytes_stream();
    stream.next().await.unwrap().unwrap();
    // The open stream holds the only permit.
    let shed = http()
        .get(format!("{}/healthz", proxy.url))
        .send()
        .await
        .unwrap();
    assert!(shed.headers().contains_key("retry-after"));
    expect_error(shed, 503, "overloaded").await;
    release.notify_one();
    while let Some(chunk) = stream.next().await {
        chunk.unwrap();
    }
    drop(stream);
    // Once the stream has ended the permit is back.
    let mut ok = false;
    for _ in 0..100 {
        let r = http()
            .get(format!("{}/healthz", proxy.url))
            .send()
            .await
            .unwrap();
        if r.status() == 200 {
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(ok, "the permit was not released after the stream ended");
}

#[tokio::test]
async fn with_prior_knowledge_the_upstream_is_spoken_to_in_http2() {
    let versions = Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = versions.clone();
    let fake = Router::new().route(
        STATUS_PATH,
        get(move |request: axum::extract::Request| {
            seen.lock().unwrap().push(request.version());
            async { axum::Json(json!({"status": "IN_QUEUE"})) }
        }),
    );
    let origin = serve_router(fake).await;
    let proxy = start_proxy(&origin, |c| c.fal.http2_prior_knowledge = true).await;
    proxy.own("req-1").await;
    for _ in 0..3 {
        let response = proxy.to_fal(Method::GET, STATUS_URL).send().await.unwrap();
        assert_eq!(response.status(), 200);
    }
    assert_eq!(
        *versions.lock().unwrap(),
        vec![axum::http::Version::HTTP_2; 3]
    );
}
