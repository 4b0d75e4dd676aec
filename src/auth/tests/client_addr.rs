//! The client address of anonymous requests: trusted and untrusted peers, forwarding chains,
//! RFC 7239, IPv6 keying, garbage.

use crate::auth::{anonymous_id, client_ip};
use axum::http::{HeaderMap, HeaderValue};
use ipnet::IpNet;
use proptest::prelude::*;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};

fn trusted() -> Vec<IpNet> {
    ["10.0.0.0/8", "fd00::/8", "192.0.2.1/32"]
        .iter()
        .map(|c| c.parse().unwrap())
        .collect()
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn sock(s: &str) -> SocketAddr {
    SocketAddr::new(ip(s), 4711)
}

fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (name, value) in pairs {
        h.append(*name, HeaderValue::from_str(value).unwrap());
    }
    h
}

/// The client address seen through a trusted proxy at 10.0.0.1.
fn via_proxy(pairs: &[(&'static str, &str)]) -> IpAddr {
    client_ip(sock("10.0.0.1"), &headers(pairs), &trusted())
}

#[test]
fn an_untrusted_peer_is_the_client_whatever_it_claims() {
    let h = headers(&[
        ("x-forwarded-for", "198.51.100.1"),
        ("forwarded", "for=198.51.100.2"),
    ]);
    assert_eq!(
        client_ip(sock("203.0.113.9"), &h, &trusted()),
        ip("203.0.113.9")
    );
    assert_eq!(client_ip(sock("10.0.0.1"), &h, &[]), ip("10.0.0.1"));
    assert_eq!(via_proxy(&[]), ip("10.0.0.1"));
}

#[test]
fn x_forwarded_for_is_walked_from_the_right_past_trusted_hops() {
    let cases = [
        ("198.51.100.1", "198.51.100.1"),
        ("6.6.6.6, 198.51.100.1", "198.51.100.1"),
        ("6.6.6.6, 198.51.100.1, 10.9.9.9, 192.0.2.1", "198.51.100.1"),
        ("10.0.0.9, 10.0.0.8", "10.0.0.9"),
        (" 198.51.100.1 ,10.0.0.8 ", "198.51.100.1"),
        ("198.51.100.1:8080", "198.51.100.1"),
        ("2001:db8::1", "2001:db8::1"),
        ("[2001:db8::1]", "2001:db8::1"),
        ("[2001:db8::1]:443", "2001:db8::1"),
        ("::ffff:198.51.100.1", "198.51.100.1"),
        // Garbage next to a trusted hop: that hop stands for the client.
        ("198.51.100.1, garbage, 10.0.0.3", "10.0.0.3"),
        ("198.51.100.1, unknown", "10.0.0.1"),
        ("", "10.0.0.1"),
        (",,,", "10.0.0.1"),
        ("fe80::1%eth0", "10.0.0.1"),
        ("198.51.100.1:99999", "10.0.0.1"),
        ("[2001:db8::1", "10.0.0.1"),
        ("1.2.3.4.5", "10.0.0.1"),
    ];
    for (xff, want) in cases {
        assert_eq!(via_proxy(&[("x-forwarded-for", xff)]), ip(want), "{xff}");
    }
}

#[test]
fn several_x_forwarded_for_lines_form_one_chain() {
    let got = via_proxy(&[
        ("x-forwarded-for", "6.6.6.6"),
        ("x-forwarded-for", "198.51.100.1, 10.0.0.2"),
    ]);
    assert_eq!(got, ip("198.51.100.1"));
    let got = via_proxy(&[
        ("x-forwarded-for", "198.51.100.1"),
        ("x-forwarded-for", "10.0.0.2"),
    ]);
    assert_eq!(got, ip("198.51.100.1"));
}

#[test]
fn forwarded_is_parsed_per_rfc_7239() {
    let cases = [
        ("for=192.0.2.60;proto=http;by=203.0.113.43", "192.0.2.60"),
        ("For=\"[2001:db8:cafe::17]:4711\"", "2001:db8:cafe::17"),
        ("for=\"198.51.100.3:1234\"", "198.51.100.3"),
        ("for=\"[2001:db8::5]\"", "2001:db8::5"),
        ("for=192.0.2.43, for=198.51.100.17", "198.51.100.17"),
        (
            "for=198.51.100.17, for=10.0.0.7;proto=https",
            "198.51.100.17",
        ),
        ("proto=https;for=198.51.100.4", "198.51.100.4"),
        ("for=198.51.100.5:_hidden", "198.51.100.5"),
        ("for=198.51.100.17, for=unknown", "10.0.0.1"),
        ("for=198.51.100.17, for=_hidden", "10.0.0.1"),
        ("for=198.51.100.17, proto=https", "10.0.0.1"),
        ("for=\"[2001:db8::5]:80", "10.0.0.1"),
        ("for=", "10.0.0.1"),
    ];
    for (value, want) in cases {
        assert_eq!(via_proxy(&[("forwarded", value)]), ip(want), "{value}");
    }
}

#[test]
fn an_open_quote_cannot_swallow_what_a_proxy_appended() {
    let got = via_proxy(&[("forwarded", "for=\"6.6.6.6, for=198.51.100.8")]);
    assert_eq!(got, ip("198.51.100.8"));
    let got = via_proxy(&[("x-forwarded-for", "\"6.6.6.6, 198.51.100.8")]);
    assert_eq!(got, ip("198.51.100.8"));
}

#[test]
fn x_forwarded_for_takes_precedence_over_forwarded() {
    let got = via_proxy(&[
        ("forwarded", "for=198.51.100.1"),
        ("x-forwarded-for", "198.51.100.2"),
    ]);
    assert_eq!(got, ip("198.51.100.2"));
}

#[test]
fn ipv4_mapped_peers_and_trusted_v6_proxies() {
    let h = headers(&[("x-forwarded-for", "198.51.100.1")]);
    assert_eq!(
        client_ip(sock("::ffff:10.0.0.1"), &h, &trusted()),
        ip("198.51.100.1")
    );
    assert_eq!(
        client_ip(sock("::ffff:203.0.113.1"), &h, &trusted()),
        ip("203.0.113.1")
    );
    assert_eq!(
        client_ip(sock("fd00::1"), &h, &trusted()),
        ip("198.51.100.1")
    );
    let mapped: Vec<IpNet> = vec!["::ffff:10.0.0.0/104".parse().unwrap()];
    assert_eq!(client_ip(sock("10.0.0.1"), &h, &mapped), ip("198.51.100.1"));
}

#[test]
fn a_header_that_is_not_text_is_garbage() {
    let mut h = HeaderMap::new();
    h.insert(
        "x-forwarded-for",
        HeaderValue::from_bytes(b"198.51.100.1, \xff").unwrap(),
    );
    assert_eq!(client_ip(sock("10.0.0.1"), &h, &trusted()), ip("10.0.0.1"));
}

#[test]
fn anonymous_ids_key_ipv6_by_its_64() {
    assert_eq!(anonymous_id(ip("203.0.113.7")), "ip:203.0.113.7");
    assert_eq!(
        anonymous_id(ip("2001:db8:1:2:3:4:5:6")),
        "ip:2001:db8:1:2::/64"
    );
    assert_eq!(
        anonymous_id(ip("2001:db8:1:2::ffff")),
        "ip:2001:db8:1:2::/64"
    );
    assert_eq!(anonymous_id(ip("::ffff:203.0.113.7")), "ip:203.0.113.7");
    assert_eq!(anonymous_id(ip("::1")), "ip:::/64");
}

fn header_text() -> impl Strategy<Value = String> {
    prop_oneof![
        "[ -~]{0,120}",
        "[0-9a-f:.,; \\[\\]\"=_forFOR]{0,120}",
        prop::collection::vec("(for=)?\"?\\[?[0-9a-f:.]{0,40}\\]?(:[0-9]{0,6})?\"?", 0..8)
            .prop_map(|parts| parts.join(", ")),
    ]
}

proptest! {
    #[test]
    fn never_panics_on_arbitrary_headers(xff in header_text(), fwd in header_text(), raw in prop::collection::vec(any::<u8>(), 0..80)) {
        let mut h = headers(&[("x-forwarded-for", &xff), ("forwarded", &fwd)]);
        if let Ok(v) = HeaderValue::from_bytes(&raw) {
            h.append("x-forwarded-for", v);
        }
        let got = client_ip(sock("10.0.0.1"), &h, &trusted());
        let _ = anonymous_id(got);
        h.remove("x-forwarded-for");
        let _ = client_ip(sock("10.0.0.1"), &h, &trusted());
    }

    #[test]
    fn an_untrusted_peers_headers_are_ignored(xff in header_text(), fwd in header_text(), a in any::<u32>()) {
        let peer = IpAddr::from(a.to_be_bytes());
        prop_assume!(!trusted().iter().any(|n| n.contains(&peer)));
        let h = headers(&[("x-forwarded-for", &xff), ("forwarded", &fwd)]);
        prop_assert_eq!(client_ip(SocketAddr::new(peer, 1), &h, &trusted()), peer);
    }

    #[test]
    fn whatever_a_client_prepends_the_proxys_entry_wins(prefix in header_text()) {
        let xff = format!("{prefix}, 198.51.100.7");
        prop_assert_eq!(via_proxy(&[("x-forwarded-for", &xff)]), ip("198.51.100.7"));
        let fwd = format!("{prefix}, for=\"[2001:db8::7]:1\"");
        prop_assert_eq!(via_proxy(&[("forwarded", &fwd)]), ip("2001:db8::7"));
    }

    #[test]
    fn one_ipv6_64_is_one_anonymous_client(prefix in any::<u64>(), a in any::<u64>(), b in any::<u64>()) {
        let addr = |iid: u64| IpAddr::V6(Ipv6Addr::from((u128::from(prefix) << 64) | u128::from(iid)));
        prop_assume!(prefix != 0); // ::ffff:0:0/96 is IPv4, keyed per address
        prop_assert_eq!(anonymous_id(addr(a)), anonymous_id(addr(b)));
    }
}
