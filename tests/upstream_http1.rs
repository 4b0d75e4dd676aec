//! The proxy's own HTTP/1.1 client (`upstream::h1`, `upstream::frame`) against a fake fal that
//! answers from a script, byte for byte: every way an answer's body can be framed, informational
//! answers before the real one, connections fal ends, framing the proxy must refuse, and the
//! framing the client gets back.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use reqwest::Method;
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const STATUS_URL: &str = "https://queue.fal.run/fal-ai/nano-banana-pro/requests/req-1/status";
const BODY: &str = r#"{"status":"IN_QUEUE"}"#;

/// What the fake saw: per call, the connection it came on (numbered from 0) and its head.
type Seen = Arc<Mutex<Vec<(usize, String)>>>;

/// A fake fal that answers the n-th call it reads with `script[n]`, written as it is. After an
/// answer whose text ends in `<close>` (stripped), it closes the connection.
async fn scripted_fake(script: Vec<String>) -> (String, Seen) {
    let seen: Seen = Arc::default();
    let calls = seen.clone();
    let script = Arc::new(script);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        for connection in 0.. {
            let (mut socket, _) = listener.accept().await.unwrap();
            let (calls, script) = (calls.clone(), script.clone());
            tokio::spawn(async move {
                let mut pending = Vec::new();
                let mut buf = [0u8; 4096];
                loop {
                    let end = loop {
                        if let Some(at) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
                            break at + 4;
                        }
                        match socket.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => pending.extend_from_slice(&buf[..n]),
                        }
                    };
                    let head = String::from_utf8_lossy(&pending[..end]).into_owned();
                    pending.drain(..end);
                    let answer = {
                        let mut calls = calls.lock().unwrap();
                        calls.push((connection, head));
                        script[(calls.len() - 1).min(script.len() - 1)].clone()
                    };
                    let (answer, close) = match answer.strip_suffix("<close>") {
                        Some(answer) => (answer.to_owned(), true),
                        None => (answer, false),
                    };
                    if socket.write_all(answer.as_bytes()).await.is_err() || close {
                        return;
                    }
                }
            });
        }
    });
    (format!("http://{addr}"), seen)
}

fn with_length(extra_headers: &str) -> String {
    format!(
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n{extra_headers}content-length: {}\r\n\r\n{BODY}",
        BODY.len()
    )
}

fn chunked() -> String {
    let (a, b) = BODY.split_at(7);
    format!(
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n\
         {:x};ext=1\r\n{a}\r\n{:X}\r\n{b}\r\n0\r\nx-trailer: t\r\n\r\n",
        a.len(),
        b.len()
    )
}

async fn poll(proxy: &Proxy) -> reqwest::Response {
    proxy.to_fal(Method::GET, STATUS_URL).send().await.unwrap()
}

fn connections(seen: &Seen) -> Vec<usize> {
    seen.lock().unwrap().iter().map(|(c, _)| *c).collect()
}

#[tokio::test]
async fn every_body_framing_reaches_the_client_whole_and_the_connection_is_kept_when_it_may_be() {
    let script = vec![
        chunked(),
        format!(
            "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nlink: </a>\r\n\r\n{}",
            with_length("")
        ),
        format!("HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\r\n{BODY}<close>"),
        with_length("connection: close\r\n"),
        with_length(""),
        format!(
            "HTTP/1.0 200 OK\r\nconnection: keep-alive\r\ncontent-length: {}\r\n\r\n{BODY}",
            BODY.len()
        ),
        with_length(""),
    ];
    let (origin, seen) = scripted_fake(script).await;
    let proxy = start_proxy(&origin, |_| {}).await;
    proxy.own("req-1").await;
    for call in 0..7 {
        let response = poll(&proxy).await;
        assert_eq!(response.status(), 200, "call {call}");
        assert_eq!(response.text().await.unwrap(), BODY, "call {call}");
    }
    // Chunked and informational answers keep the connection; an answer that lasts until the
    // close, or says `connection: close`, ends it; HTTP/1.0 keeps it only when it says so.
    assert_eq!(connections(&seen), [0, 0, 0, 1, 2, 2, 2]);
    let heads = seen.lock().unwrap();
    let host = origin.trim_start_matches("http://");
    for (_, head) in heads.iter() {
        let head = head.to_ascii_lowercase();
        assert!(
            head.starts_with(
                "get /queue/fal-ai/nano-banana-pro/requests/req-1/status http/1.1\r\n"
            ),
            "{head}"
        );
        assert!(head.contains(&format!("\r\nhost: {host}\r\n")), "{head}");
        assert!(head.contains("\r\nauthorization: key "), "{head}");
        assert!(
            !head.contains("content-length"),
            "a GET carries no body: {head}"
        );
    }
}

#[tokio::test]
async fn the_client_gets_fal_length_as_content_length_and_chunks_otherwise() {
    let (origin, _) = scripted_fake(vec![with_length(""), chunked()]).await;
    let proxy = start_proxy(&origin, |_| {}).await;
    proxy.own("req-1").await;

    let response = poll(&proxy).await;
    assert_eq!(response.headers()["content-length"], BODY.len().to_string());
    assert!(response.headers().get("transfer-encoding").is_none());
    assert_eq!(response.text().await.unwrap(), BODY);

    let response = poll(&proxy).await;
    assert!(response.headers().get("content-length").is_none());
    assert_eq!(response.headers()["transfer-encoding"], "chunked");
    assert!(response.headers().get("x-trailer").is_none());
    assert_eq!(response.text().await.unwrap(), BODY);
}

#[tokio::test]
async fn only_relayed_headers_come_back() {
    let answer = with_length(
        "server: fake\r\nset-cookie: a=b\r\nx-fal-request-id: abc\r\nx-fal-target-url: https://evil\r\nETag: \"1\"\r\n",
    );
    let (origin, _) = scripted_fake(vec![answer]).await;
    let proxy = start_proxy(&origin, |_| {}).await;
    proxy.own("req-1").await;
    let response = poll(&proxy).await;
    let headers = response.headers();
    assert_eq!(headers["x-fal-request-id"], "abc");
    assert_eq!(headers["etag"], "\"1\"");
    assert_eq!(headers["content-type"], "application/json");
    for dropped in ["server", "set-cookie", "x-fal-target-url"] {
        assert!(
            headers.get(dropped).is_none(),
            "{dropped} must not be relayed"
        );
    }
}

#[tokio::test]
async fn answers_the_proxy_cannot_frame_safely_are_a_502_and_end_the_connection() {
    let bad = [
        "HTTP/1.1 200 OK\r\ncontent-length: 5\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n"
            .to_owned(),
        "HTTP/1.1 200 OK\r\ncontent-length: 5\r\ncontent-length: 6\r\n\r\nhello!".to_owned(),
        "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n".to_owned(),
        "HTTP/1.1 200 OK\r\ncontent-length: 50\r\n\r\nshort<close>".to_owned(),
        "HTTP/1.1 101 Switching Protocols\r\nupgrade: x\r\n\r\n".to_owned(),
        "NOT HTTP AT ALL\r\n\r\n".to_owned(),
    ];
    for answer in bad {
        let (origin, seen) = scripted_fake(vec![answer.clone(), with_length("")]).await;
        let proxy = start_proxy(&origin, |c| c.fal.retries = 0).await;
        proxy.own("req-1").await;
        match proxy.to_fal(Method::GET, STATUS_URL).send().await {
            // The head was fine and already on its way: the body broke off, and so does the
            // client's answer (never a whole, wrong one).
            Err(_) => {}
            Ok(response) if response.status() == 200 => {
                let text = response.text().await.unwrap_or_default();
                assert_ne!(text, BODY, "{answer:?}");
            }
            Ok(response) => {
                assert_eq!(response.status(), 502, "{answer:?}");
                let error: serde_json::Value = response.json().await.unwrap();
                assert_eq!(error["code"], "upstream_unreachable", "{error}");
            }
        }
        // The next call works, on a new connection.
        let response = poll(&proxy).await;
        assert_eq!(response.text().await.unwrap(), BODY, "after {answer:?}");
        assert_eq!(connections(&seen), [0, 1], "after {answer:?}");
    }
}

#[tokio::test]
async fn a_small_answer_is_read_whole_first_so_one_that_breaks_off_is_a_clean_502() {
    // Up to 64 KB with a length, the answer is read before the client's head goes out.
    let cut = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 40\r\n\r\n{\"status\":<close>";
    let (origin, _) = scripted_fake(vec![cut.to_owned(), with_length("")]).await;
    let proxy = start_proxy(&origin, |c| c.fal.retries = 0).await;
    proxy.own("req-1").await;
    let response = poll(&proxy).await;
    assert_eq!(response.status(), 502);
    let error: serde_json::Value = response.json().await.unwrap();
    assert_eq!(error["code"], "upstream_unreachable", "{error}");
    assert_eq!(poll(&proxy).await.text().await.unwrap(), BODY);

    // A larger one streams through as it arrives: it is cut off (never a clean error that
    // would claim fal answered nothing, never a whole-looking answer).
    let large = 200 * 1024;
    let cut = format!(
        "HTTP/1.1 200 OK\r\ncontent-length: {large}\r\n\r\n{}<close>",
        "x".repeat(100 * 1024)
    );
    let (origin, _) = scripted_fake(vec![cut]).await;
    let proxy = start_proxy(&origin, |c| c.fal.retries = 0).await;
    proxy.own("req-1").await;
    match proxy.to_fal(Method::GET, STATUS_URL).send().await {
        Err(_) => {} // cut before its head went out
        Ok(response) => {
            assert_eq!(response.status(), 200);
            let body = response.bytes().await;
            assert!(body.is_err(), "a cut body must not look complete");
        }
    }
}

#[tokio::test]
async fn a_submit_body_is_sent_with_its_length_whole() {
    let submit = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{}",
        SUBMIT_ANSWER.len(),
        SUBMIT_ANSWER
    );
    let (origin, seen) = scripted_fake(vec![submit]).await;
    let proxy = start_proxy(&origin, |_| {}).await;
    let response = proxy.submit_edit().await;
    assert_eq!(response.status(), 200);
    let heads = seen.lock().unwrap();
    let head = heads[0].1.to_ascii_lowercase();
    assert!(
        head.starts_with("post /queue/fal-ai/nano-banana-pro/edit http/1.1\r\n"),
        "{head}"
    );
    let length: usize = head
        .split("\r\n")
        .find_map(|line| line.strip_prefix("content-length: "))
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(length, serde_json::to_vec(&edit_input()).unwrap().len());
    assert!(!head.contains("transfer-encoding"), "{head}");
}

const SUBMIT_ANSWER: &str = r#"{"request_id":"req-9","status":"IN_QUEUE"}"#;

#[tokio::test]
async fn large_answers_arrive_whole_over_many_reads() {
    // ~1 MB of JSON: many reads of the connection, the buffer grown past its first 8 KB.
    let big = format!(r#"{{"images":["{}"]}}"#, "a".repeat(1 << 20));
    let small = with_length("");
    let with_length = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{big}",
        big.len()
    );
    let mut chunked = String::from("HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n");
    for piece in big.as_bytes().chunks(50_000) {
        chunked.push_str(&format!("{:x}\r\n", piece.len()));
        chunked.push_str(std::str::from_utf8(piece).unwrap());
        chunked.push_str("\r\n");
    }
    chunked.push_str("0\r\n\r\n");
    let (origin, seen) = scripted_fake(vec![with_length, chunked, small]).await;
    let proxy = start_proxy(&origin, |_| {}).await;
    proxy.own("req-1").await;
    for _ in 0..2 {
        let response = poll(&proxy).await;
        assert_eq!(response.status(), 200);
        assert!(
            response.text().await.unwrap() == big,
            "the body arrives whole"
        );
    }
    // And the connection is still in step for a small answer after the large ones.
    assert_eq!(poll(&proxy).await.text().await.unwrap(), BODY);
    assert_eq!(connections(&seen), [0, 0, 0]);
}
