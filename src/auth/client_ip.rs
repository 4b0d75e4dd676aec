//! Where an anonymous request comes from: pure functions over the socket peer and the
//! forwarding headers, used to key anonymous clients by address.
//!
//! Forwarding headers are believed only when the socket peer is a trusted proxy, and then only
//! as far as the chain of trusted proxies goes: the chain is walked from the right (the hop
//! nearest to us) and the first address that is not a trusted proxy is the client. A client
//! can prepend anything it likes to `X-Forwarded-For`, but it cannot change what our own
//! proxies appended after it.
//!
//! `X-Forwarded-For` is used when present; `Forwarded` (RFC 7239) only when it is not. A proxy
//! that writes only `Forwarded` should drop client-sent `X-Forwarded-For`.

use axum::http::{HeaderMap, HeaderName, header};
use ipnet::{IpNet, Ipv6Net};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

/// The most forwarding entries looked at; deeper chains stop at the last hop examined.
const MAX_HOPS: usize = 64;

/// The client address of a request: the socket peer, or, when the peer is a trusted proxy,
/// the rightmost address in `X-Forwarded-For` (or `Forwarded: for=`) that is not a trusted
/// proxy. IPv4-mapped IPv6 addresses come back as IPv4. Never fails: unusable headers leave
/// the nearest trusted hop as the answer.
pub fn client_ip(peer: SocketAddr, headers: &HeaderMap, trusted: &[IpNet]) -> IpAddr {
    let mut current = canonical(peer.ip());
    if !is_trusted(current, trusted) {
        return current;
    }
    let xff = HeaderName::from_static("x-forwarded-for");
    let entries: Vec<Option<IpAddr>> = if headers.contains_key(&xff) {
        hops(headers, &xff, parse_node)
    } else {
        hops(headers, &header::FORWARDED, forwarded_for)
    };
    for entry in entries.into_iter().rev().take(MAX_HOPS) {
        // An entry a trusted proxy wrote but that names no address (`unknown`, garbage): we
        // cannot tell who is behind it, so the nearest trusted hop stands for the client.
        let Some(ip) = entry else {
            return current;
        };
        current = canonical(ip);
        if !is_trusted(current, trusted) {
            return current;
        }
    }
    current
}

/// The key of an anonymous client: `ip:203.0.113.7`, or the /64 of an IPv6 address
/// (`ip:2001:db8:1:2::/64`), since one IPv6 subscriber usually holds a whole /64.
pub fn anonymous_id(ip: IpAddr) -> String {
    match canonical(ip) {
        IpAddr::V4(v4) => format!("ip:{v4}"),
        IpAddr::V6(v6) => match Ipv6Net::new(v6, 64) {
            Ok(net) => format!("ip:{}", net.trunc()),
            Err(_) => format!("ip:{v6}"),
        },
    }
}

/// IPv4-mapped IPv6 (`::ffff:192.0.2.1`) as plain IPv4; everything else unchanged.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        IpAddr::V4(_) => ip,
    }
}

fn is_trusted(ip: IpAddr, trusted: &[IpNet]) -> bool {
    trusted.iter().any(|net| match (net, ip) {
        // A v4 CIDR also covers v4-mapped v6 peers, which `canonical` has already unwrapped.
        (IpNet::V4(n), IpAddr::V4(a)) => n.contains(&a),
        (IpNet::V6(n), IpAddr::V6(a)) => n.contains(&a),
        (IpNet::V6(n), IpAddr::V4(a)) => n.contains(&a.to_ipv6_mapped()),
        (IpNet::V4(_), IpAddr::V6(_)) => false,
    })
}

/// Every comma-separated entry of every instance of `name`, left to right, each parsed with
/// `parse` (None for an entry that names no usable address, or a header that is not text).
///
/// Commas and semicolons split even inside quotes: a node never holds one, and a client must
/// not be able to open a quote that swallows the entries our proxies append after it. An
/// extension parameter with a quoted comma only makes its element unusable (the walk stops).
fn hops(
    headers: &HeaderMap,
    name: &HeaderName,
    parse: fn(&str) -> Option<IpAddr>,
) -> Vec<Option<IpAddr>> {
    let mut out = Vec::new();
    for value in headers.get_all(name) {
        match value.to_str() {
            Ok(text) => out.extend(text.split(',').map(parse)),
            Err(_) => out.push(None),
        }
    }
    out
}

/// The `for=` address of one RFC 7239 forwarded-element (`for=192.0.2.60;proto=https`).
fn forwarded_for(element: &str) -> Option<IpAddr> {
    element.split(';').find_map(|pair| {
        let (name, value) = pair.split_once('=')?;
        if !name.trim().eq_ignore_ascii_case("for") {
            return None;
        }
        let value = value.trim();
        let value = match value.strip_prefix('"') {
            Some(rest) => rest.strip_suffix('"')?,
            None => value,
        };
        parse_node(value)
    })
}

/// One node: `192.0.2.1`, `192.0.2.1:8080`, `2001:db8::1`, `[2001:db8::1]` or
/// `[2001:db8::1]:443`. Obfuscated names (`unknown`, `_hidden`) and zone ids give None.
fn parse_node(node: &str) -> Option<IpAddr> {
    let node = node.trim();
    if let Ok(ip) = node.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Some(rest) = node.strip_prefix('[') {
        let (inside, after) = rest.split_once(']')?;
        let port_ok = after.is_empty() || after.strip_prefix(':').is_some_and(is_port);
        return if port_ok {
            inside.parse::<std::net::Ipv6Addr>().ok().map(IpAddr::V6)
        } else {
            None
        };
    }
    let (host, port) = node.split_once(':')?;
    if !is_port(port) {
        return None;
    }
    host.parse::<Ipv4Addr>().ok().map(IpAddr::V4)
}

/// A port: digits only (RFC 7239 also allows obfuscated `_port`s, which say nothing).
fn is_port(port: &str) -> bool {
    port.parse::<u16>().is_ok() && port.bytes().all(|b| b.is_ascii_digit()) || port.starts_with('_')
}
