//! The proxy's connections to fal (`upstream::pool`), seen from a fake fal that records which
//! connection each call came on: keep-alive reuse, the idle limit, HTTP/2 sharing, and
//! connections fal closes while the proxy holds them idle.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use axum::Router;
use axum::extract::ConnectInfo;
use axum::routing::get;
use common::*;
use reqwest::Method;
use serde_json::json;
use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const STATUS_PATH: &str = "/queue/fal-ai/nano-banana-pro/requests/req-1/status";
const STATUS_URL: &str = "https://queue.fal.run/fal-ai/nano-banana-pro/requests/req-1/status";

/// A fake fal answering status polls, recording the peer address (one per connection) and
/// the `Host` header of every call.
async fn recording_fake() -> (String, Arc<Mutex<Vec<(SocketAddr, Option<String>)>>>) {
    let calls = Arc::new(Mutex::new(Vec::new()));
    let seen = calls.clone();
    let router = Router::new().route(
        STATUS_PATH,
        get(
            move |ConnectInfo(peer): ConnectInfo<SocketAddr>, request: axum::extract::Request| {
                let host = request
                    .headers()
                    .get("host")
                    .map(|v| v.to_str().unwrap().to_owned());
                seen.lock().unwrap().push((peer, host));
                async { axum::Json(json!({"status": "IN_QUEUE"})) }
            },
        ),
    );
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(
            listener,
            router.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
        .unwrap();
    });
    (format!("http://{addr}"), calls)
}

fn connections(calls: &Mutex<Vec<(SocketAddr, Option<String>)>>) -> usize {
    let calls = calls.lock().unwrap();
    calls
        .iter()
        .map(|(peer, _)| peer)
        .collect::<HashSet<_>>()
        .len()
}

async fn poll(proxy: &Proxy) {
    let response = proxy.to_fal(Method::GET, STATUS_URL).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.unwrap(), r#"{"status":"IN_QUEUE"}"#);
}

#[tokio::test]
async fn http1_calls_reuse_one_kept_alive_connection_and_name_the_host() {
    let (origin, calls) = recording_fake().await;
    let proxy = start_proxy(&origin, |_| {}).await;
    proxy.own("req-1").await;
    for _ in 0..10 {
        poll(&proxy).await;
    }
    assert_eq!(calls.lock().unwrap().len(), 10);
    assert_eq!(
        connections(&calls),
        1,
        "calls in sequence share a connection"
    );
    let host = origin.trim_start_matches("http://");
    for (_, seen) in calls.lock().unwrap().iter() {
        assert_eq!(seen.as_deref(), Some(host));
    }
}

#[tokio::test]
async fn with_no_idle_connections_allowed_each_call_has_its_own() {
    let (origin, calls) = recording_fake().await;
    let proxy = start_proxy(&origin, |c| c.fal.pool_max_idle_per_host = 0).await;
    proxy.own("req-1").await;
    for _ in 0..5 {
        poll(&proxy).await;
    }
    assert_eq!(connections(&calls), 5);
}

#[tokio::test]
async fn http2_calls_at_once_share_one_connection() {
    let (origin, calls) = recording_fake().await;
    let proxy = start_proxy(&origin, |c| c.fal.http2_prior_knowledge = true).await;
    proxy.own("req-1").await;
    let polls: Vec<_> = (0..16).map(|_| poll(&proxy)).collect();
    futures_util::future::join_all(polls).await;
    assert_eq!(calls.lock().unwrap().len(), 16);
    assert_eq!(connections(&calls), 1, "HTTP/2 calls share one connection");
}

/// A fake fal speaking HTTP/1.1 by hand: it answers one status poll per connection, keeping
/// it alive as far as the headers say, then closes it `close_after` later without reading
/// anything more. Returns its origin and the number of connections it accepted.
async fn closing_fake(close_after: Duration) -> (String, Arc<Mutex<usize>>) {
    let accepted = Arc::new(Mutex::new(0));
    let count = accepted.clone();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (mut socket, _) = listener.accept().await.unwrap();
            *count.lock().unwrap() += 1;
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match socket.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let body = r#"{"status":"IN_QUEUE"}"#;
                let answer = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
                    body.len()
                );
                socket.write_all(answer.as_bytes()).await.unwrap();
                tokio::time::sleep(close_after).await;
            });
        }
    });
    (format!("http://{addr}"), accepted)
}

#[tokio::test]
async fn a_connection_fal_closed_while_idle_is_not_used_again() {
    let (origin, accepted) = closing_fake(Duration::ZERO).await;
    let proxy = start_proxy(&origin, |_| {}).await;
    proxy.own("req-1").await;
    for _ in 0..5 {
        poll(&proxy).await;
        // Let the close reach the proxy's idle socket, as it would between real calls.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(*accepted.lock().unwrap(), 5);
}

#[tokio::test]
async fn a_poll_on_a_connection_fal_closes_under_it_is_retried_on_a_new_one() {
    // The pooled connection still looks open when the next poll is written to it; fal then
    // closes it without answering. A read is safe to repeat, so the client sees no error.
    let (origin, accepted) = closing_fake(Duration::from_millis(100)).await;
    let proxy = start_proxy(&origin, |_| {}).await;
    proxy.own("req-1").await;
    for _ in 0..3 {
        poll(&proxy).await;
    }
    assert!(*accepted.lock().unwrap() >= 3);
}

#[tokio::test]
async fn an_http2_connection_fal_shuts_down_is_replaced() {
    // A fake speaking HTTP/2 (prior knowledge) that answers one call per connection and then
    // shuts the connection down gracefully (GOAWAY), as a server being redeployed does.
    use hyper::server::conn::http2;
    use hyper_util::rt::{TokioExecutor, TokioIo};
    let (accepted, closed) = (Arc::new(Mutex::new(0)), Arc::new(Mutex::new(0)));
    let (count, ended) = (accepted.clone(), closed.clone());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let origin = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        loop {
            let (socket, _) = listener.accept().await.unwrap();
            *count.lock().unwrap() += 1;
            let ended = ended.clone();
            tokio::spawn(async move {
                let (answered, done) = tokio::sync::oneshot::channel::<()>();
                let answered = Mutex::new(Some(answered));
                let service = hyper::service::service_fn(move |_request| {
                    if let Some(answered) = answered.lock().unwrap().take() {
                        let _ = answered.send(());
                    }
                    async {
                        Ok::<_, std::convert::Infallible>(hyper::Response::new(
                            http_body_util::Full::new(bytes::Bytes::from_static(
                                br#"{"status":"IN_QUEUE"}"#,
                            )),
                        ))
                    }
                });
                let connection = http2::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(socket), service);
                tokio::pin!(connection);
                tokio::select! {
                    _ = connection.as_mut() => return,
                    _ = done => {}
                }
                connection.as_mut().graceful_shutdown();
                let _ = connection.await;
                *ended.lock().unwrap() += 1;
            });
        }
    });
    let proxy = start_proxy(&origin, |c| c.fal.http2_prior_knowledge = true).await;
    proxy.own("req-1").await;
    for n in 1..=4 {
        poll(&proxy).await;
        // A call made while the shutdown is under way may still be served on the old
        // connection (hyper's first GOAWAY keeps every stream): wait until it has closed.
        let gone = eventually(5.0, || *closed.lock().unwrap() == n).await;
        assert!(gone, "the fake closed connection {n}");
    }
    assert_eq!(*accepted.lock().unwrap(), 4, "one connection per call");
}

#[tokio::test]
async fn over_http2_a_large_submit_reaches_fal_whole_with_its_length() {
    // 3 MB of body: far more than HTTP/2's first 64 KB window, so it goes out as fal's flow
    // control lets it.
    let (fake, origin) = start_mock().await;
    let proxy = start_proxy(&origin, |c| c.fal.http2_prior_knowledge = true).await;
    let mut input = edit_input();
    let image = base64::Engine::encode(
        &base64::engine::general_purpose::STANDARD,
        vec![7u8; 3 * 1024 * 1024],
    );
    input["image_urls"] = json!([format!("data:image/png;base64,{image}")]);
    let sent = serde_json::to_vec(&input).unwrap();
    let response = proxy.submit(&input).await;
    assert_eq!(response.status(), 200);
    let received = fake.received();
    assert_eq!(received.len(), 1);
    assert_eq!(&received[0].body[..], &sent[..], "the body arrived whole");
    let length = received[0].headers.get("content-length").unwrap();
    assert_eq!(length.to_str().unwrap(), sent.len().to_string());
}

/// A fake fal speaking HTTP/2 (prior knowledge) with the `h2` crate: on its first connection it
/// refuses every stream (`REFUSED_STREAM`: not processed, RFC 9113 section 8.7); later ones
/// read each submit whole and answer it. Returns its origin, the connections accepted, and the
/// submits answered.
async fn refusing_h2_fake() -> (String, Arc<Mutex<usize>>, Arc<Mutex<usize>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let origin = format!("http://{}", listener.local_addr().unwrap());
    let (accepted, answered) = (Arc::new(Mutex::new(0)), Arc::new(Mutex::new(0)));
    let (count, answers) = (accepted.clone(), answered.clone());
    tokio::spawn(async move {
        loop {
            let (socket, _) = listener.accept().await.unwrap();
            let refuse = {
                let mut count = count.lock().unwrap();
                *count += 1;
                *count == 1
            };
            let answers = answers.clone();
            tokio::spawn(async move {
                let mut conn = h2::server::handshake(socket).await.unwrap();
                while let Some(Ok((request, mut respond))) = conn.accept().await {
                    if refuse {
                        respond.send_reset(h2::Reason::REFUSED_STREAM);
                        continue;
                    }
                    let answers = answers.clone();
                    tokio::spawn(async move {
                        let mut body = request.into_body();
                        while let Some(chunk) = body.data().await {
                            let chunk = chunk.unwrap();
                            let _ = body.flow_control().release_capacity(chunk.len());
                        }
                        *answers.lock().unwrap() += 1;
                        let head = http::Response::builder()
                            .header("content-type", "application/json")
                            .body(())
                            .unwrap();
                        let mut send = respond.send_response(head, false).unwrap();
                        let answer = json!({
                            "request_id": "req-h2",
                            "status": "IN_QUEUE",
                            "response_url": "https://queue.fal.run/fal-ai/nano-banana-pro/requests/req-h2",
                            "status_url": "https://queue.fal.run/fal-ai/nano-banana-pro/requests/req-h2/status",
                            "cancel_url": "https://queue.fal.run/fal-ai/nano-banana-pro/requests/req-h2/cancel",
                        });
                        send.send_data(answer.to_string().into(), true).unwrap();
                    });
                }
            });
        }
    });
    (origin, accepted, answered)
}

#[tokio::test]
async fn a_submit_fal_refused_unprocessed_is_sent_again_on_a_new_http2_connection() {
    // Submits are never retried once fal may have seen them; a refused stream fal has not
    // processed, so it goes on once more.
    let (origin, accepted, answered) = refusing_h2_fake().await;
    let proxy = start_proxy(&origin, |c| c.fal.http2_prior_knowledge = true).await;
    let response = proxy.submit_edit().await;
    let status = response.status();
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["request_id"], "req-h2");
    assert_eq!(*accepted.lock().unwrap(), 2, "a second connection");
    assert_eq!(*answered.lock().unwrap(), 1, "one submit processed");
}
