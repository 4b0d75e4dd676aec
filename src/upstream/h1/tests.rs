//! One connection to fal: where answers are read, and how much read room it keeps between
//! calls.

use super::*;
use http::{HeaderMap, Method};
use tokio::net::TcpListener;

/// A connection to a fake that answers its one call with a body of `len` bytes and then
/// waits for the connection to close.
async fn answering(len: usize) -> Conn {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.unwrap();
        let mut seen = Vec::new();
        while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
            let mut piece = [0u8; 1024];
            let n = socket.read(&mut piece).await.unwrap();
            assert!(n > 0, "the call ended before its head did");
            seen.extend_from_slice(&piece[..n]);
        }
        let head = format!("HTTP/1.1 200 OK\r\ncontent-length: {len}\r\n\r\n");
        socket.write_all(head.as_bytes()).await.unwrap();
        socket.write_all(&vec![b'x'; len]).await.unwrap();
        let _ = socket.read(&mut [0u8; 16]).await; // until the test drops the connection
    });
    let tcp = TcpStream::connect(addr).await.unwrap();
    Conn::new(MaybeHttpsStream::Http(TokioIo::new(tcp)))
}

/// Makes one call on `conn` and reads the whole answer; gives back the body (holding the
/// connection) and the number of body bytes read.
async fn call_and_read(conn: Conn) -> (Body, usize) {
    let headers = HeaderMap::new();
    let call = Call {
        method: &Method::GET,
        path: "/fal-ai/x/requests/1",
        own: &[],
        headers: &headers,
        body: &Bytes::new(),
    };
    let (_, mut body) = conn
        .call(call, &HeaderValue::from_static("fake"), |_| None)
        .await
        .unwrap();
    let mut read = 0;
    while let Some(piece) = std::future::poll_fn(|cx| body.poll_chunk(cx)).await {
        read += piece.unwrap().len();
    }
    (body, read)
}

#[tokio::test]
async fn a_connection_lets_a_large_answers_read_room_go_before_it_waits_in_the_pool() {
    let (mut body, read) = call_and_read(answering(LARGE).await).await;
    assert_eq!(read, LARGE);
    let conn = body.conn.as_ref().unwrap();
    assert_eq!(
        conn.grow,
        super::super::pool::READ_BUFFER,
        "read as a large answer"
    );
    let conn = body.take_reusable().expect("kept alive");
    assert_eq!(conn.buf.capacity(), 0);
    assert_eq!(conn.grow, FIRST_READ);
}

#[tokio::test]
async fn a_small_answer_lands_in_the_threads_buffer_and_the_idle_connection_holds_no_room() {
    let (mut body, read) = call_and_read(answering(700).await).await;
    assert_eq!(read, 700);
    let conn = body.conn.as_ref().unwrap();
    assert_eq!(conn.grow, FIRST_READ, "read as a small answer");
    let conn = body.take_reusable().expect("kept alive");
    assert_eq!(
        conn.buf.capacity(),
        0,
        "the next answer goes through the landing buffer"
    );
    // Answers around the landing buffer's size are read whole too, whichever way the reads
    // fall between it and the connection's own buffer.
    for len in [
        landing::SIZE - 40,
        landing::SIZE,
        landing::SIZE + 1,
        3 * landing::SIZE,
    ] {
        let (_, read) = call_and_read(answering(len).await).await;
        assert_eq!(read, len);
    }
}

/// A body large enough that some read fills the room it was given.
const LARGE: usize = 1024 * 1024;
