use super::*;
use proptest::prelude::*;

fn all(name: &[u8]) -> Option<HeaderName> {
    HeaderName::from_bytes(name).ok()
}

fn head_of(method: &Method, raw: &str) -> Result<Head, FrameError> {
    let mut buf = BytesMut::from(raw);
    parse_head(&mut buf, 64 * 1024, method, all).map(Option::unwrap)
}

fn head(raw: &str) -> Head {
    head_of(&Method::GET, raw).unwrap()
}

fn encoded(method: Method, headers: &[(&str, &str)], body_len: usize) -> String {
    let mut map = HeaderMap::new();
    for (k, v) in headers {
        map.append(
            HeaderName::from_bytes(k.as_bytes()).unwrap(),
            HeaderValue::from_str(v).unwrap(),
        );
    }
    let mut out = Vec::new();
    let host = HeaderValue::from_static("fal.example:9000");
    encode_head(&mut out, &method, "/a/b?x=1", &host, &[], &map, body_len);
    String::from_utf8(out).unwrap()
}

#[test]
fn the_proxys_own_headers_come_first_and_replace_the_clients() {
    let mut map = HeaderMap::new();
    map.append(header::USER_AGENT, HeaderValue::from_static("browser"));
    map.append(header::ACCEPT, HeaderValue::from_static("*/*"));
    let own = [
        (header::AUTHORIZATION, HeaderValue::from_static("Key k")),
        (header::USER_AGENT, HeaderValue::from_static("fal-proxy")),
    ];
    let mut out = Vec::new();
    let host = HeaderValue::from_static("fal.example");
    encode_head(&mut out, &Method::GET, "/s", &host, &own, &map, 0);
    assert_eq!(
        String::from_utf8(out).unwrap(),
        "GET /s HTTP/1.1\r\nhost: fal.example\r\nauthorization: Key k\r\n\
         user-agent: fal-proxy\r\naccept: */*\r\n\r\n"
    );
}

#[test]
fn a_read_has_no_content_length_and_a_submit_always_has_one() {
    assert_eq!(
        encoded(Method::GET, &[("authorization", "Key k")], 0),
        "GET /a/b?x=1 HTTP/1.1\r\nhost: fal.example:9000\r\nauthorization: Key k\r\n\r\n"
    );
    assert_eq!(
        encoded(Method::POST, &[], 0),
        "POST /a/b?x=1 HTTP/1.1\r\nhost: fal.example:9000\r\ncontent-length: 0\r\n\r\n"
    );
    assert_eq!(
        encoded(Method::PUT, &[("content-type", "application/json")], 12),
        "PUT /a/b?x=1 HTTP/1.1\r\nhost: fal.example:9000\r\ncontent-type: application/json\r\ncontent-length: 12\r\n\r\n"
    );
}

#[test]
fn framing_and_hop_by_hop_headers_are_this_layers_own() {
    let text = encoded(
        Method::POST,
        &[
            ("content-length", "999"),
            ("transfer-encoding", "chunked"),
            ("connection", "close"),
            ("host", "evil.example"),
            ("te", "trailers"),
            ("x-fal-queue-priority", "low"),
        ],
        3,
    );
    assert_eq!(
        text,
        "POST /a/b?x=1 HTTP/1.1\r\nhost: fal.example:9000\r\nx-fal-queue-priority: low\r\ncontent-length: 3\r\n\r\n"
    );
}

#[test]
fn a_head_is_read_once_it_has_all_arrived_and_leaves_the_body() {
    let raw = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nX-A: 1\r\nX-A: 2\r\nContent-Length: 2\r\n\r\n{}";
    for cut in 0..raw.len() - 2 {
        let mut buf = BytesMut::from(&raw[..cut]);
        assert!(
            parse_head(&mut buf, 1024, &Method::GET, all)
                .unwrap()
                .is_none(),
            "cut at {cut}"
        );
        assert_eq!(buf.len(), cut, "nothing taken while partial");
    }
    let mut buf = BytesMut::from(raw);
    let head = parse_head(&mut buf, 1024, &Method::GET, all)
        .unwrap()
        .unwrap();
    assert_eq!(head.status, StatusCode::OK);
    assert_eq!(head.framing, Framing::Length(2));
    assert!(head.keep_alive);
    assert_eq!(head.headers["content-type"], "application/json");
    let values: Vec<_> = head.headers.get_all("x-a").iter().collect();
    assert_eq!(values, ["1", "2"]);
    assert_eq!(&buf[..], b"{}");
}

#[test]
fn a_bad_or_endless_head_is_an_error() {
    let mut buf = BytesMut::from("HTTP/1.1 2000 OK\r\n\r\n");
    assert!(matches!(
        parse_head(&mut buf, 1024, &Method::GET, all),
        Err(FrameError::Head(_))
    ));
    let mut buf = BytesMut::from("NOT HTTP\r\n\r\n");
    assert!(parse_head(&mut buf, 1024, &Method::GET, all).is_err());
    let mut long = String::from("HTTP/1.1 200 OK\r\n");
    while long.len() < 2000 {
        long.push_str("x-pad: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n");
    }
    let mut buf = BytesMut::from(long.as_str());
    assert_eq!(
        parse_head(&mut buf, 1024, &Method::GET, all).unwrap_err(),
        FrameError::HeadTooLong(1024)
    );
    let mut many = String::from("HTTP/1.1 200 OK\r\n");
    for i in 0..=MAX_HEADERS {
        many.push_str(&format!("x-{i}: v\r\n"));
    }
    many.push_str("\r\n");
    let mut buf = BytesMut::from(many.as_str());
    assert!(parse_head(&mut buf, 1 << 20, &Method::GET, all).is_err());
}

#[test]
fn the_body_framing_follows_rfc_9112() {
    let at = |raw: &str| head_of(&Method::GET, raw).map(|h| h.framing);
    assert_eq!(
        at("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n"),
        Ok(Framing::Length(10))
    );
    assert_eq!(
        at("HTTP/1.1 200 OK\r\nContent-Length: 10, 10\r\ncontent-length: 10\r\n\r\n"),
        Ok(Framing::Length(10))
    );
    assert_eq!(
        at("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, Chunked\r\n\r\n"),
        Ok(Framing::Chunked)
    );
    assert_eq!(
        at("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n"),
        Ok(Framing::Close)
    );
    assert_eq!(at("HTTP/1.1 200 OK\r\n\r\n"), Ok(Framing::Close));
    assert_eq!(
        at("HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n"),
        Ok(Framing::Empty)
    );
    assert_eq!(at("HTTP/1.1 304 Not Modified\r\n\r\n"), Ok(Framing::Empty));
    assert_eq!(at("HTTP/1.1 100 Continue\r\n\r\n"), Ok(Framing::Empty));
    let answer = "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n";
    assert_eq!(
        head_of(&Method::HEAD, answer).unwrap().framing,
        Framing::Empty
    );
    for bad in [
        "HTTP/1.1 200 OK\r\nContent-Length: 10\r\nContent-Length: 11\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 1, 2\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: \r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
    ] {
        assert!(matches!(at(bad), Err(FrameError::Framing(_))), "{bad:?}");
    }
}

#[test]
fn keep_alive_is_the_default_of_http_1_1_only() {
    let keeps = |raw: &str| head(raw).keep_alive;
    assert!(keeps("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"));
    assert!(!keeps(
        "HTTP/1.1 200 OK\r\nConnection: Keep-Alive, CLOSE\r\nContent-Length: 0\r\n\r\n"
    ));
    assert!(!keeps("HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n"));
    assert!(keeps(
        "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n"
    ));
    // A body that lasts until the connection closes leaves nothing to keep.
    assert!(!keeps("HTTP/1.1 200 OK\r\n\r\n"));
}

#[test]
fn only_the_headers_the_caller_keeps_are_made_into_the_map() {
    let raw = "HTTP/1.1 200 OK\r\nServer: nginx\r\nContent-Type: application/json\r\nSet-Cookie: a=b\r\nX-Fal-Request-Id: 1\r\nContent-Length: 2\r\n\r\n{}";
    let mut buf = BytesMut::from(raw);
    let head = parse_head(&mut buf, 1024, &Method::GET, crate::relay::relayed_name)
        .unwrap()
        .unwrap();
    let names: Vec<_> = head.headers.keys().map(HeaderName::as_str).collect();
    assert_eq!(names, ["content-type", "x-fal-request-id"]);
    // The framing headers are read whether kept or not.
    assert_eq!(head.framing, Framing::Length(2));
    assert_eq!(&buf[..], b"{}");
}

/// Feeds `wire` to a fresh decoder in pieces of `piece` bytes: the body read, and what was left.
fn decode(framing: Framing, wire: &[u8], piece: usize) -> Result<(Vec<u8>, Vec<u8>), FrameError> {
    let mut decoder = Decoder::new(framing);
    let mut buf = BytesMut::new();
    let mut body = Vec::new();
    let mut fed = 0;
    loop {
        match decoder.step(&mut buf)? {
            Step::Data(data) => {
                assert!(!data.is_empty());
                body.extend_from_slice(&data);
            }
            Step::End => return Ok((body, buf.to_vec())),
            Step::More if fed < wire.len() => {
                let to = (fed + piece).min(wire.len());
                buf.extend_from_slice(&wire[fed..to]);
                fed = to;
            }
            Step::More => {
                decoder.eof()?;
                return Ok((body, buf.to_vec()));
            }
        }
    }
}

#[test]
fn a_length_body_stops_at_its_length() {
    assert_eq!(
        decode(Framing::Length(5), b"hello, next", 3),
        Ok((b"hello".to_vec(), b",".to_vec()))
    );
    assert_eq!(decode(Framing::Length(0), b"next", 3), Ok((vec![], vec![])));
    assert!(matches!(
        decode(Framing::Length(9), b"short", 2),
        Err(FrameError::Framing(_))
    ));
    assert_eq!(
        decode(Framing::Close, b"all of it", 4),
        Ok((b"all of it".to_vec(), vec![]))
    );
}

#[test]
fn a_chunked_body_leaves_what_follows_it() {
    let wire = b"5;name=value\r\nhello\r\n7 \r\n, world\r\n0\r\nx-trailer: 1\r\n\r\nNEXT";
    let (body, rest) = decode(Framing::Chunked, wire, wire.len()).unwrap();
    assert_eq!(body, b"hello, world");
    assert_eq!(rest, b"NEXT");
    for piece in 1..wire.len() {
        let (body, _) = decode(Framing::Chunked, wire, piece).unwrap();
        assert_eq!(body, b"hello, world", "piece {piece}");
    }
}

#[test]
fn a_malformed_chunked_body_is_an_error() {
    let cases: [(&[u8], FrameError); 6] = [
        (
            b"x\r\nhello\r\n0\r\n\r\n",
            FrameError::Chunk("bad chunk size"),
        ),
        (
            b"5\r\nhelloXX0\r\n\r\n",
            FrameError::Chunk("chunk data not followed by CRLF"),
        ),
        (
            b"5\nhello\r\n0\r\n\r\n",
            FrameError::Chunk("line not ended by CRLF"),
        ),
        (
            b"5 junk\r\nhello\r\n0\r\n\r\n",
            FrameError::Chunk("bad chunk size"),
        ),
        (b"ffffffffffffffff\r\n", FrameError::Chunk("bad chunk size")),
        (
            b"5\r\nhel",
            FrameError::Framing("connection closed before the body's end"),
        ),
    ];
    for (wire, error) in cases {
        assert_eq!(decode(Framing::Chunked, wire, 2), Err(error), "{wire:?}");
    }
    let endless = vec![b'1'; MAX_CHUNK_LINE + 10];
    assert_eq!(
        decode(Framing::Chunked, &endless, 512),
        Err(FrameError::Chunk("chunk-size line too long"))
    );
    let mut trailers = b"0\r\n".to_vec();
    while trailers.len() < MAX_TRAILERS + 100 {
        trailers.extend_from_slice(b"x-t: aaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n");
    }
    assert_eq!(
        decode(Framing::Chunked, &trailers, 1000),
        Err(FrameError::Chunk("trailers too long"))
    );
}

proptest! {
    /// Any body, cut into any chunks, sent in any pieces, comes out whole, and what follows
    /// the body stays in the buffer.
    #[test]
    fn chunked_bodies_round_trip(
        body in proptest::collection::vec(any::<u8>(), 0..2000),
        cuts in proptest::collection::vec(1usize..300, 1..20),
        piece in 1usize..200,
        ext in any::<bool>(),
    ) {
        let mut wire = Vec::new();
        let mut at = 0;
        let mut cut = cuts.iter().cycle();
        while at < body.len() {
            let n = (*cut.next().unwrap()).min(body.len() - at);
            wire.extend_from_slice(format!("{n:X}{}\r\n", if ext { ";a=b" } else { "" }).as_bytes());
            wire.extend_from_slice(&body[at..at + n]);
            wire.extend_from_slice(b"\r\n");
            at += n;
        }
        wire.extend_from_slice(b"0\r\n\r\nHTTP/1.1");
        let (out, rest) = decode(Framing::Chunked, &wire, piece).unwrap();
        prop_assert_eq!(out, body);
        // What follows arrives in the same pieces: some of it may not have been read yet.
        prop_assert!(b"HTTP/1.1".starts_with(&rest));
    }

    /// Random bytes never panic the decoders.
    #[test]
    fn garbage_never_panics(wire in proptest::collection::vec(any::<u8>(), 0..600), piece in 1usize..64) {
        let _ = decode(Framing::Chunked, &wire, piece);
        let _ = decode(Framing::Length(300), &wire, piece);
        let mut buf = BytesMut::from(&wire[..]);
        let _ = parse_head(&mut buf, 512, &Method::GET, all);
    }
}

proptest! {
    /// A length is digits only: no sign, spaces, list or hex (the server's plain-request check
    /// reads `Content-Length` with it too).
    #[test]
    fn lengths_are_plain_decimals(text in "[0-9+ ,a-f-]{0,22}") {
        let digits = text.bytes().all(|b| b.is_ascii_digit());
        let expected = if !text.is_empty() && text.len() <= 19 && digits {
            text.parse::<u64>().ok()
        } else {
            None
        };
        prop_assert_eq!(parse_decimal(text.as_bytes()), expected);
    }
}
