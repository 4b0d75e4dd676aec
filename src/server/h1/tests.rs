//! The connection loop over real sockets: what it serves itself, what it hands to hyper, and
//! hyper's rules it keeps.

use super::super::{ServeOptions, serve as serve_listener};
use super::*;
use crate::test_support::within_5s;
use axum::Router;
use axum::routing::{get, post};
use futures_util::stream;
use std::convert::Infallible;
use std::net::SocketAddr;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};

/// Releases `/later`'s first piece.
static LATER: tokio::sync::Notify = tokio::sync::Notify::const_new();

/// The routes under test; `/hold` waits forever and reports on `dropped` when cancelled.
fn app(dropped: mpsc::UnboundedSender<()>) -> Router {
    struct Report(mpsc::UnboundedSender<()>);
    impl Drop for Report {
        fn drop(&mut self) {
            let _ = self.0.send(());
        }
    }
    Router::new()
        .route("/", get(|| async { "hi" }).head(|| async { "hi" }))
        .route(
            "/echo",
            post(|request: Request| async move {
                let body = request.into_body().collect().await.unwrap().to_bytes();
                format!("{} bytes", body.len())
            }),
        )
        .route(
            "/stream",
            get(|| async {
                // More pieces than one write takes, all ready at once.
                let parts = (1..=10).map(|n| Ok::<_, Infallible>(Bytes::from("x".repeat(n))));
                Body::from_stream(stream::iter(parts))
            }),
        )
        .route(
            "/later",
            get(|| async {
                // The first piece comes when the test says so.
                let later = stream::once(async {
                    LATER.notified().await;
                    Ok::<_, Infallible>(Bytes::from("event"))
                });
                Body::from_stream(later)
            }),
        )
        .route(
            "/close",
            get(|| async { ([(http::header::CONNECTION, "close")], "bye") }),
        )
        .route(
            "/hold",
            get(move || {
                let report = Report(dropped.clone());
                async move {
                    std::future::pending::<()>().await;
                    drop(report);
                }
            }),
        )
}

/// A server on 127.0.0.1:0 with a 300 ms header-read timeout; dropping the sender drains it.
async fn start() -> (SocketAddr, oneshot::Sender<()>, mpsc::UnboundedReceiver<()>) {
    start_with(Duration::from_millis(300)).await
}

/// [`start`] with another header-read timeout.
async fn start_with(
    header_read_timeout: Duration,
) -> (SocketAddr, oneshot::Sender<()>, mpsc::UnboundedReceiver<()>) {
    let _ = rustls::crypto::ring::default_provider().install_default(); // for reqwest
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (dropped, reports) = mpsc::unbounded_channel();
    let (stop, stopped) = oneshot::channel::<()>();
    let options = ServeOptions {
        header_read_timeout,
        grace: Duration::from_secs(30),
    };
    tokio::spawn(serve_listener(listener, app(dropped), options, async {
        let _ = stopped.await;
    }));
    (addr, stop, reports)
}

/// Writes `raw`, then reads until what arrived ends with `last` or the server closes the
/// connection.
async fn exchange(stream: &mut TcpStream, raw: &[u8], last: &str) -> String {
    stream.write_all(raw).await.unwrap();
    read_until(stream, last).await
}

/// Connects, then [`exchange`]s `raw` for what arrives up to `last`.
async fn open(addr: SocketAddr, raw: &[u8], last: &str) -> (TcpStream, String) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let text = exchange(&mut stream, raw, last).await;
    (stream, text)
}

async fn read_until(stream: &mut TcpStream, last: &str) -> String {
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    within_5s(async {
        loop {
            let n = stream.read(&mut buf).await.unwrap_or(0);
            seen.extend_from_slice(&buf[..n]);
            if n == 0 || String::from_utf8_lossy(&seen).ends_with(last) {
                break;
            }
        }
    })
    .await;
    String::from_utf8_lossy(&seen).into_owned()
}

/// Whether the server closes `stream` within 5 s (reading nothing more).
async fn closed(stream: &mut TcpStream) -> bool {
    let mut buf = [0u8; 64];
    matches!(
        tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf)).await,
        Ok(Ok(0) | Err(_))
    )
}

#[tokio::test]
async fn pipelined_requests_are_answered_in_order_on_one_connection() {
    let (addr, _stop, _) = start().await;
    let (mut stream, text) = open(
        addr,
        b"GET / HTTP/1.1\r\nhost: x\r\n\r\nPOST /echo HTTP/1.1\r\nhost: x\r\ncontent-length: 3\r\n\r\nabcGET /close HTTP/1.1\r\nhost: x\r\n\r\n",
        "bye",
    )
    .await;
    let hi = text.find("\r\n\r\nhi").unwrap();
    let echo = text.find("3 bytes").unwrap();
    let bye = text.find("bye").unwrap();
    assert!(hi < echo && echo < bye, "{text}");
    assert_eq!(text.matches("HTTP/1.1 200 OK").count(), 3, "{text}");
    assert!(text.contains("content-length: 2\r\n"), "{text}");
    assert!(text.contains("date: "), "{text}");
    assert!(
        text.contains("connection: close\r\n"),
        "the handler's Connection: close is kept: {text}"
    );
    assert!(
        closed(&mut stream).await,
        "and the connection closes after it"
    );
}

#[tokio::test]
async fn requests_split_across_reads_and_many_connections_at_once_are_each_answered_right() {
    let (addr, _stop, _) = start().await;
    // A head and body in several pieces, the next request arriving with the last piece.
    let mut stream = TcpStream::connect(addr).await.unwrap();
    for piece in [
        &b"POST /echo HTT"[..],
        b"P/1.1\r\nhost: x\r\ncontent-le",
        b"ngth: 5\r\n\r\nab",
        b"cdeGET / HTTP/1.1\r\nhost: x\r\n\r\n",
    ] {
        stream.write_all(piece).await.unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let text = read_until(&mut stream, "hi").await;
    assert!(text.contains("5 bytes"), "{text}");
    assert_eq!(text.matches("HTTP/1.1 200 OK").count(), 2, "{text}");
    // Connections of one thread share its landing buffer: interleaved, each gets its own body.
    let mut streams = Vec::new();
    for i in 0..16 {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let body = "y".repeat(i + 1);
        let raw = format!(
            "POST /echo HTTP/1.1\r\nhost: x\r\ncontent-length: {}\r\n\r\n{body}",
            i + 1
        );
        stream.write_all(raw.as_bytes()).await.unwrap();
        streams.push(stream);
    }
    for (i, stream) in streams.iter_mut().enumerate() {
        let text = read_until(stream, "bytes").await;
        assert!(text.contains(&format!("{} bytes", i + 1)), "{i}: {text}");
    }
}

#[tokio::test]
async fn requests_that_are_not_plain_are_served_by_hyper_from_then_on() {
    let (addr, _stop, _) = start().await;
    // Plain first, then chunked: hyper takes over mid-connection with the bytes already read.
    let (mut stream, text) = open(
        addr,
        b"GET / HTTP/1.1\r\nhost: x\r\n\r\nPOST /echo HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n4\r\nabcd\r\n0\r\n\r\n",
        "4 bytes",
    )
    .await;
    assert!(text.contains("\r\n\r\nhi"), "{text}");
    // Still served (by hyper now), including a request that would have been plain.
    let text = exchange(&mut stream, b"GET / HTTP/1.1\r\nhost: x\r\n\r\n", "hi").await;
    assert!(text.starts_with("HTTP/1.1 200 OK"), "{text}");

    // Expect: 100-continue gets its interim answer.
    let (mut stream, text) = open(
        addr,
        b"POST /echo HTTP/1.1\r\nhost: x\r\nexpect: 100-continue\r\ncontent-length: 2\r\n\r\n",
        "100 Continue\r\n\r\n",
    )
    .await;
    assert!(text.starts_with("HTTP/1.1 100 Continue"), "{text}");
    let text = exchange(&mut stream, b"ok", "2 bytes").await;
    assert!(text.starts_with("HTTP/1.1 200 OK"), "{text}");

    // HTTP/1.0, HEAD, and a body that arrives after its head.
    for (raw, want) in [
        (&b"GET / HTTP/1.0\r\n\r\n"[..], "HTTP/1.0 200 OK"),
        (b"HEAD / HTTP/1.1\r\nhost: x\r\n\r\n", "content-length: 2"),
        (
            b"POST /echo HTTP/1.1\r\nhost: x\r\ncontent-length: 5\r\n\r\nab",
            "HTTP/1.1 200 OK",
        ),
    ] {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream.write_all(raw).await.unwrap();
        if raw.ends_with(b"ab") {
            tokio::time::sleep(Duration::from_millis(50)).await;
            stream.write_all(b"cde").await.unwrap();
        }
        let mut buf = vec![0u8; 4096];
        let n = within_5s(stream.read(&mut buf)).await.unwrap();
        let text = String::from_utf8_lossy(&buf[..n]);
        assert!(text.contains(want), "{text}");
        if raw.starts_with(b"HEAD") {
            assert!(!text.contains("hi"), "no body for HEAD: {text}");
        }
        if raw.ends_with(b"ab") {
            let text = if text.contains("5 bytes") {
                text.into_owned()
            } else {
                read_until(&mut stream, "5 bytes").await
            };
            assert!(text.contains("5 bytes"), "{text}");
        }
    }
}

#[tokio::test]
async fn malformed_heads_get_hypers_400() {
    let (addr, _stop, _) = start().await;
    let (_stream, text) = open(addr, b"GET / HTTP/1.1\r\nbad header\r\n\r\n", "\r\n\r\n").await;
    assert!(text.starts_with("HTTP/1.1 400"), "{text}");
}

#[tokio::test]
async fn http2_with_prior_knowledge_is_served() {
    let (addr, _stop, _) = start().await;
    let client = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    for _ in 0..2 {
        let response = client.get(format!("http://{addr}/")).send().await.unwrap();
        assert_eq!(response.version(), http::Version::HTTP_2);
        assert_eq!(response.text().await.unwrap(), "hi");
    }
}

#[tokio::test]
async fn answers_of_unknown_length_are_chunked() {
    let (addr, _stop, _) = start().await;
    let (_stream, text) = open(
        addr,
        b"GET /stream HTTP/1.1\r\nhost: x\r\n\r\n",
        "0\r\n\r\n",
    )
    .await;
    assert!(text.contains("transfer-encoding: chunked\r\n"), "{text}");
    assert!(!text.contains("content-length"), "{text}");
    let chunks: String = (1..=10)
        .map(|n| format!("{n:x}\r\n{}\r\n", "x".repeat(n)))
        .collect();
    assert!(
        text.ends_with(&format!("\r\n\r\n{chunks}0\r\n\r\n")),
        "{text}"
    );
    let response = reqwest::get(format!("http://{addr}/stream")).await.unwrap();
    assert_eq!(response.text().await.unwrap().len(), 55);
}

#[tokio::test]
async fn a_streams_head_is_not_held_back_until_its_first_piece() {
    let (addr, _stop, _) = start().await;
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(b"GET /later HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    // Waits (at most 5 s) for the head while the first piece is still held.
    let head = read_until(&mut stream, "\r\n\r\n").await;
    assert!(head.starts_with("HTTP/1.1 200 OK"), "{head}");
    LATER.notify_one();
    let rest = read_until(&mut stream, "0\r\n\r\n").await;
    assert_eq!(rest, "5\r\nevent\r\n0\r\n\r\n");
}

#[tokio::test]
async fn a_client_that_leaves_has_its_answer_dropped() {
    let (addr, _stop, mut dropped) = start().await;
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(b"GET /hold HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(dropped.try_recv().is_err(), "still answering");
    drop(stream);
    within_5s(dropped.recv()).await.unwrap();
}

#[tokio::test]
async fn a_head_that_never_finishes_is_cut_off_and_idle_connections_too() {
    let (addr, _stop, _) = start().await;
    let mut slow = TcpStream::connect(addr).await.unwrap();
    slow.write_all(b"GET / HTTP/1.1\r\nhost").await.unwrap();
    let mut idle = TcpStream::connect(addr).await.unwrap();
    exchange(&mut idle, b"GET / HTTP/1.1\r\nhost: x\r\n\r\n", "hi").await;
    assert!(closed(&mut slow).await);
    assert!(
        closed(&mut idle).await,
        "hyper's rule: the timeout also ends idle waits"
    );
}

#[tokio::test]
async fn draining_closes_idle_connections_and_busy_ones_after_their_answer() {
    // A timeout far beyond the test: only draining can close these.
    let (addr, stop, _) = start_with(Duration::from_secs(60)).await;
    let mut idle = TcpStream::connect(addr).await.unwrap();
    exchange(&mut idle, b"GET / HTTP/1.1\r\nhost: x\r\n\r\n", "hi").await;
    let mut busy = TcpStream::connect(addr).await.unwrap();
    // Half a head: the connection is not idle, so draining lets it finish its request.
    busy.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    drop(stop);
    assert!(closed(&mut idle).await);
    let text = exchange(&mut busy, b"host: x\r\n\r\n", "hi").await;
    assert!(text.contains("connection: close\r\n"), "{text}");
    assert!(closed(&mut busy).await);
}

#[tokio::test]
async fn a_target_the_parser_passes_but_a_uri_cannot_hold_gets_a_json_400() {
    let (addr, _stop, _) = start().await;
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let text = exchange(&mut stream, b"GET /a<b> HTTP/1.1\r\nhost: x\r\n\r\n", "}").await;
    assert!(text.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{text}");
    assert!(text.contains("connection: close\r\n"), "{text}");
    assert!(text.contains("\"malformed_request\""), "{text}");
    assert!(closed(&mut stream).await);
}
