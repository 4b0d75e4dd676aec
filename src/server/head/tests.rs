use super::*;
use proptest::prelude::*;

fn shape(raw: &[u8]) -> (Shape, Vec<(HeaderName, Range<usize>)>) {
    let mut headers = Vec::new();
    let shape = classify(raw, &mut headers);
    (shape, headers)
}

#[test]
fn a_plain_get_is_read_with_its_headers_in_place() {
    let raw = b"GET /api/fal/proxy?x=1 HTTP/1.1\r\nHost: a\r\nX-Fal-Target-Url: https://q/x\r\nConnection: keep-alive\r\n\r\nGET /next";
    let (shape, headers) = shape(raw);
    let Shape::Plain(plain) = shape else {
        panic!("{shape:?}")
    };
    assert_eq!(plain.method, Method::GET);
    assert_eq!(&raw[plain.target.clone()], b"/api/fal/proxy?x=1");
    assert_eq!(plain.body_len, 0);
    assert_eq!(
        &raw[plain.head_len..],
        b"GET /next",
        "the next request is left alone"
    );
    let seen: Vec<(&str, &[u8])> = headers
        .iter()
        .map(|(name, value)| (name.as_str(), &raw[value.clone()]))
        .collect();
    assert_eq!(
        seen,
        [
            ("host", &b"a"[..]),
            ("x-fal-target-url", b"https://q/x"),
            ("connection", b"keep-alive"),
        ]
    );
}

#[test]
fn a_post_with_a_length_counts_its_body() {
    let raw = b"POST / HTTP/1.1\r\ncontent-LENGTH: 5\r\n\r\nhel";
    let Shape::Plain(plain) = shape(raw).0 else {
        panic!()
    };
    assert_eq!((&plain.method, plain.body_len), (&Method::POST, 5));
    assert_eq!(
        plain.len(),
        raw.len() + 2,
        "two bytes of the body are still to come"
    );
}

#[test]
fn an_unfinished_head_waits_until_it_is_too_long() {
    assert_eq!(shape(b"").0, Shape::Partial);
    assert_eq!(shape(b"GET / HTTP/1.1\r\nhost: a\r\n").0, Shape::Partial);
    let mut long = b"GET / HTTP/1.1\r\nx-a: ".to_vec();
    long.resize(MAX_HEAD + 1, b'a');
    assert_eq!(shape(&long).0, Shape::HandOff);
}

#[test]
fn anything_not_plain_goes_to_hyper() {
    let cases: &[&[u8]] = &[
        b"GET / HTTP/1.0\r\n\r\n",
        b"HEAD / HTTP/1.1\r\n\r\n",
        b"CONNECT a:443 HTTP/1.1\r\n\r\n",
        b"TRACE / HTTP/1.1\r\n\r\n",
        b"GET http://a/ HTTP/1.1\r\n\r\n",
        b"OPTIONS * HTTP/1.1\r\n\r\n",
        b"POST / HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\n",
        b"POST / HTTP/1.1\r\nTransfer-Encoding: identity\r\ncontent-length: 1\r\n\r\nx",
        b"POST / HTTP/1.1\r\ncontent-length: 1\r\ncontent-length: 1\r\n\r\nx",
        b"POST / HTTP/1.1\r\ncontent-length: +1\r\n\r\nx",
        b"POST / HTTP/1.1\r\ncontent-length: 1,1\r\n\r\nx",
        b"POST / HTTP/1.1\r\ncontent-length: \r\n\r\n",
        b"POST / HTTP/1.1\r\ncontent-length: 99999999999999999999999\r\n\r\n",
        b"POST / HTTP/1.1\r\ncontent-length: 65537\r\n\r\n",
        b"POST / HTTP/1.1\r\nexpect: 100-continue\r\ncontent-length: 1\r\n\r\n",
        b"GET / HTTP/1.1\r\nupgrade: h2c\r\nconnection: upgrade\r\n\r\n",
        b"GET / HTTP/1.1\r\nconnection: close\r\n\r\n",
        b"GET / HTTP/1.1\r\nconnection: keep-alive, te\r\n\r\n",
        b"GET / HTTP/1.1\r\nTE: trailers\r\n\r\n",
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
        b"GET / HTTP/1.1\r\nbad header\r\n\r\n",
        b"GET  / HTTP/1.1\r\n\r\n",
    ];
    for raw in cases {
        assert_eq!(
            shape(raw).0,
            Shape::HandOff,
            "{}",
            String::from_utf8_lossy(raw)
        );
    }
    let mut many = b"GET / HTTP/1.1\r\n".to_vec();
    for i in 0..=MAX_HEADERS {
        many.extend_from_slice(format!("x-{i}: v\r\n").as_bytes());
    }
    many.extend_from_slice(b"\r\n");
    assert_eq!(shape(&many).0, Shape::HandOff, "too many headers");
}

#[test]
fn the_common_methods_are_plain() {
    for method in ["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"] {
        let raw = format!("{method} / HTTP/1.1\r\n\r\n");
        let Shape::Plain(plain) = shape(raw.as_bytes()).0 else {
            panic!("{method}")
        };
        assert_eq!(plain.method.as_str(), method);
    }
}

#[test]
fn an_answer_head_has_its_framing_date_and_closing_decided_here() {
    let mut headers = http::HeaderMap::new();
    headers.insert("content-type", "application/json".parse().unwrap());
    headers.insert("content-length", "999".parse().unwrap());
    headers.insert("transfer-encoding", "chunked".parse().unwrap());
    let mut out = Vec::new();
    let close = encode_head(
        &mut out,
        StatusCode::OK,
        &headers,
        Framing::Length(12),
        b"Wed, 25 Nov 2026 00:00:00 GMT",
        false,
    );
    assert!(!close);
    assert_eq!(
        String::from_utf8(out).unwrap(),
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 12\r\n\
         date: Wed, 25 Nov 2026 00:00:00 GMT\r\n\r\n"
    );

    headers.clear();
    headers.insert("date", "then".parse().unwrap());
    headers.insert("connection", "Keep-Alive, CLOSE".parse().unwrap());
    let mut out = Vec::new();
    let close = encode_head(
        &mut out,
        StatusCode::from_u16(599).unwrap(),
        &headers,
        Framing::Chunked,
        b"now",
        false,
    );
    assert!(close, "the answer asked to close");
    assert_eq!(
        String::from_utf8(out).unwrap(),
        "HTTP/1.1 599 \r\ndate: then\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n"
    );

    let mut out = Vec::new();
    assert!(encode_head(
        &mut out,
        StatusCode::NO_CONTENT,
        &http::HeaderMap::new(),
        Framing::None,
        b"now",
        true,
    ));
    assert_eq!(
        String::from_utf8(out).unwrap(),
        "HTTP/1.1 204 No Content\r\nconnection: close\r\ndate: now\r\n\r\n"
    );
}

#[test]
fn bodiless_statuses_have_no_framing() {
    assert_eq!(Framing::of(StatusCode::NO_CONTENT, Some(0)), Framing::None);
    assert_eq!(Framing::of(StatusCode::NOT_MODIFIED, None), Framing::None);
    assert_eq!(Framing::of(StatusCode::CONTINUE, None), Framing::None);
    assert_eq!(Framing::of(StatusCode::OK, Some(7)), Framing::Length(7));
    assert_eq!(Framing::of(StatusCode::OK, None), Framing::Chunked);
}

proptest! {
    #[test]
    fn chunk_lines_are_lowercase_hex(len in any::<usize>()) {
        let mut line = [0u8; 18];
        let want = format!("{len:x}\r\n");
        prop_assert_eq!(chunk_line(len, &mut line), want.as_bytes());
    }

    #[test]
    fn any_bytes_are_classified_without_panicking(raw in proptest::collection::vec(any::<u8>(), 0..300)) {
        let (shape, headers) = shape(&raw);
        if let Shape::Plain(plain) = shape {
            prop_assert!(plain.head_len <= raw.len());
            prop_assert!(plain.target.end <= plain.head_len);
            for (_, value) in headers {
                prop_assert!(value.end <= plain.head_len);
            }
        }
    }

    #[test]
    fn plain_requests_read_back_as_written(
        fields in proptest::collection::vec(("x-[a-z0-9-]{1,12}", "[ -~]{0,40}"), 0..10),
        path in "/[a-zA-Z0-9/_.~-]{0,40}",
        body in proptest::collection::vec(any::<u8>(), 0..64),
    ) {
        let mut raw = format!("POST {path} HTTP/1.1\r\n").into_bytes();
        for (name, value) in &fields {
            raw.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
        }
        raw.extend_from_slice(format!("content-length: {}\r\n\r\n", body.len()).as_bytes());
        raw.extend_from_slice(&body);
        let (shape, headers) = shape(&raw);
        let Shape::Plain(plain) = shape else {
            return Err(TestCaseError::fail(format!("{shape:?}")));
        };
        prop_assert_eq!(plain.len(), raw.len());
        prop_assert_eq!(&raw[plain.target.clone()], path.as_bytes());
        prop_assert_eq!(headers.len(), fields.len() + 1);
        for ((name, value), (want_name, want_value)) in headers.iter().zip(&fields) {
            prop_assert_eq!(name.as_str(), want_name.as_str());
            // A value's surrounding spaces are not part of it.
            prop_assert_eq!(&raw[value.clone()], want_value.trim_matches(' ').as_bytes());
        }
    }
}
