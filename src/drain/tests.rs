use super::*;
use crate::test_support::within_5s;
use axum::Router;
use axum::routing::get;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// `connections` client sockets to a server (`/` answers at once, `/slow` after 300 ms) whose
/// connections `drain` watches.
async fn serve(drain: &Drain, connections: usize) -> Vec<TcpStream> {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let clients = {
        let mut clients = Vec::new();
        for _ in 0..connections {
            clients.push(TcpStream::connect(addr));
        }
        clients
    };
    let app = Router::new().route("/", get(|| async { "hi" })).route(
        "/slow",
        get(|| async {
            tokio::time::sleep(Duration::from_millis(300)).await;
            "done"
        }),
    );
    let mut streams = Vec::new();
    for client in clients {
        let client = client.await.unwrap();
        let (server_side, _) = listener.accept().await.unwrap();
        let connection = auto::Builder::new(TokioExecutor::new())
            .serve_connection_with_upgrades(
                TokioIo::new(server_side),
                TowerToHyperService::new(app.clone()),
            )
            .into_owned();
        tokio::spawn(drain.watch(Graceful::new(connection, drain.signal())));
        streams.push(client);
    }
    streams
}

/// Sends `GET path` and reads until the connection closes or `until` appears.
async fn get_on(stream: &mut TcpStream, path: &str, until: &str) -> String {
    let request = format!("GET {path} HTTP/1.1\r\nhost: x\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        let n = stream.read(&mut buf).await.unwrap();
        seen.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&seen);
        if n == 0 || text.contains(until) {
            return text.into_owned();
        }
    }
}

/// `connections` sockets that have each had one answer and sit idle, keep-alive.
async fn idle(drain: &Drain, connections: usize) -> Vec<TcpStream> {
    let mut streams = serve(drain, connections).await;
    for stream in &mut streams {
        assert!(get_on(stream, "/", "hi").await.contains("200 OK"));
    }
    streams
}

#[tokio::test]
async fn idle_connections_close_and_in_flight_requests_finish() {
    let drain = Drain::default();
    let mut streams = idle(&drain, 3).await;
    // One starts a slow request; then the drain begins.
    let mut slow = streams.pop().unwrap();
    let slow = tokio::spawn(async move { get_on(&mut slow, "/slow", "done").await });
    tokio::time::sleep(Duration::from_millis(50)).await;
    within_5s(drain.all()).await;
    let answer = slow.await.unwrap();
    assert!(
        answer.contains("200 OK") && answer.contains("done"),
        "{answer}"
    );
    // The idle ones were closed (end of stream).
    for stream in &mut streams {
        let mut buf = [0u8; 16];
        assert_eq!(within_5s(stream.read(&mut buf)).await.unwrap(), 0);
    }
}

#[tokio::test]
async fn a_drain_with_no_connections_ends_at_once() {
    within_5s(Drain::default().all()).await;
}

#[tokio::test]
async fn a_closed_connection_leaves_its_table() {
    let drain = Drain::default();
    let mut streams = idle(&drain, 2).await;
    assert_eq!(drain.shared.wakers().len(), 2);
    drop(streams.pop());
    within_5s(async {
        while drain.shared.wakers().len() != 1 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
}
