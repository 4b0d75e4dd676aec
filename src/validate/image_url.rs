//! `https://` image URLs: the shape this proxy lets through to fal, and the optional host
//! allowlist. Pure; hand-written rather than a URL crate so the rules are exactly these.

/// One entry of `image_url_hosts`, prepared once at start-up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum HostRule {
    /// `cdn.example.com`: this host only (lowercase).
    Exact(String),
    /// `*.example.com`: any subdomain; holds `.example.com` (lowercase).
    Subdomains(String),
}

impl HostRule {
    /// Parses a configured entry (already checked by config validation).
    pub(super) fn parse(entry: &str) -> Self {
        let lower = entry.trim_end_matches('.').to_ascii_lowercase();
        match lower.strip_prefix('*') {
            Some(suffix) if suffix.starts_with('.') => Self::Subdomains(suffix.to_string()),
            _ => Self::Exact(lower),
        }
    }

    fn matches(&self, host: &str) -> bool {
        match self {
            Self::Exact(exact) => host.eq_ignore_ascii_case(exact),
            Self::Subdomains(suffix) => {
                host.len() > suffix.len()
                    && host.is_char_boundary(host.len() - suffix.len())
                    && host[host.len() - suffix.len()..].eq_ignore_ascii_case(suffix)
            }
        }
    }
}

/// Why an image URL was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum UrlError {
    /// Neither `https://` nor `data:`; carries whether it was plain `http://`.
    Scheme {
        /// The URL started with `http://`.
        plain_http: bool,
    },
    /// `user[:password]@` before the host.
    Userinfo,
    /// Malformed: no host, bad host or port, whitespace, control characters, backslashes.
    Invalid(&'static str),
    /// The host is not on the allowlist (carries the host, lowercase).
    HostNotAllowed(String),
}

/// Does `url` start with `scheme` (which ends in `:` or `://`), ignoring ASCII case?
pub(super) fn has_scheme(url: &[u8], scheme: &[u8]) -> bool {
    url.len() >= scheme.len() && url[..scheme.len()].eq_ignore_ascii_case(scheme)
}

/// Checks an image URL that is not a data URI: `https://host[:port][/path][?query][#fragment]`,
/// no userinfo, an ASCII host name or an IP literal, and, when `allowed` is not empty, a host
/// on the allowlist.
pub(super) fn check(url: &str, allowed: &[HostRule]) -> Result<(), UrlError> {
    if !has_scheme(url.as_bytes(), b"https://") {
        return Err(UrlError::Scheme {
            plain_http: has_scheme(url.as_bytes(), b"http://"),
        });
    }
    if url
        .bytes()
        .any(|b| b.is_ascii_control() || b == b' ' || b == b'\\' || b == 0x7f)
    {
        return Err(UrlError::Invalid(
            "An image URL must not contain spaces, backslashes or control characters",
        ));
    }
    let rest = &url["https://".len()..];
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..end];
    if authority.contains('@') {
        return Err(UrlError::Userinfo);
    }
    let host = split_port(authority)?;
    if host.is_empty() {
        return Err(UrlError::Invalid("An image URL must name a host"));
    }
    if !valid_host(host) {
        return Err(UrlError::Invalid(
            "The host of an image URL must be an ASCII host name (punycode for international names) or an IP address",
        ));
    }
    let bare = host.strip_suffix('.').unwrap_or(host);
    if !allowed.is_empty() && !allowed.iter().any(|rule| rule.matches(bare)) {
        return Err(UrlError::HostNotAllowed(bare.to_ascii_lowercase()));
    }
    Ok(())
}

/// Splits `host[:port]` (or `[v6][:port]`), checking the port; returns the host.
fn split_port(authority: &str) -> Result<&str, UrlError> {
    let (host, port) = if authority.starts_with('[') {
        match authority.find(']') {
            Some(close) => {
                let after = &authority[close + 1..];
                let port = match after.strip_prefix(':') {
                    Some(port) => Some(port),
                    None if after.is_empty() => None,
                    None => return Err(UrlError::Invalid("Malformed IPv6 host in the image URL")),
                };
                (&authority[..=close], port)
            }
            None => return Err(UrlError::Invalid("Malformed IPv6 host in the image URL")),
        }
    } else {
        match authority.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        }
    };
    if let Some(port) = port
        && (port.is_empty()
            || port.len() > 5
            || !port.bytes().all(|b| b.is_ascii_digit())
            || port.parse::<u32>().map_or(true, |p| p > 65_535))
    {
        return Err(UrlError::Invalid(
            "The port of an image URL must be a number up to 65535",
        ));
    }
    Ok(host)
}

/// An ASCII host name (letters, digits, `-`, `.`; no empty labels) or a bracketed IPv6 literal.
fn valid_host(host: &str) -> bool {
    if let Some(inner) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        return inner.parse::<std::net::Ipv6Addr>().is_ok();
    }
    let bare = host.strip_suffix('.').unwrap_or(host);
    !bare.is_empty()
        && bare.len() <= 253
        && bare.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    fn rules(entries: &[&str]) -> Vec<HostRule> {
        entries.iter().map(|e| HostRule::parse(e)).collect()
    }

    #[test]
    fn accepts_ordinary_https_urls() {
        for url in [
            "https://cdn.example.com/a.png",
            "HTTPS://CDN.example.com",
            "https://cdn.example.com:8443/a.png?x=1#y",
            "https://[::1]:443/x",
            "https://203.0.113.7/x",
            "https://example.com./x",
            "https://v3.fal.media/files/x_y/z.png",
        ] {
            assert_eq!(check(url, &[]), Ok(()), "{url}");
        }
    }

    #[test]
    fn refuses_other_schemes_and_malformed_urls() {
        assert_eq!(
            check("http://example.com/a.png", &[]),
            Err(UrlError::Scheme { plain_http: true })
        );
        for url in [
            "ftp://x/y",
            "file:///etc/passwd",
            "javascript:alert(1)",
            "//x/y",
            "x",
        ] {
            assert_eq!(
                check(url, &[]),
                Err(UrlError::Scheme { plain_http: false }),
                "{url}"
            );
        }
        assert_eq!(
            check("https://u:p@example.com/", &[]),
            Err(UrlError::Userinfo)
        );
        assert_eq!(check("https://u@example.com", &[]), Err(UrlError::Userinfo));
        for url in [
            "https://",
            "https:///path",
            "https://:443/x",
            "https://exa mple.com/",
            "https://example.com\\@evil.com/",
            "https://exämple.com/",
            "https://a..b/",
            "https://example.com:99999/",
            "https://example.com:/",
            "https://example.com:8a/",
            "https://[::1/",
            "https://[zz]/",
            "https://%65xample.com/",
        ] {
            assert!(
                matches!(check(url, &[]), Err(UrlError::Invalid(_))),
                "{url}"
            );
        }
    }

    #[test]
    fn host_allowlist() {
        let allowed = rules(&["cdn.example.com", "*.fal.media"]);
        assert_eq!(check("https://cdn.example.com/a", &allowed), Ok(()));
        assert_eq!(check("https://CDN.Example.com./a", &allowed), Ok(()));
        assert_eq!(check("https://v3.fal.media/a", &allowed), Ok(()));
        assert_eq!(check("https://a.b.fal.media/a", &allowed), Ok(()));
        for (url, host) in [
            ("https://fal.media/a", "fal.media"),
            ("https://evilfal.media/a", "evilfal.media"),
            ("https://x.cdn.example.com/a", "x.cdn.example.com"),
            (
                "https://cdn.example.com.evil.net/a",
                "cdn.example.com.evil.net",
            ),
        ] {
            assert_eq!(
                check(url, &allowed),
                Err(UrlError::HostNotAllowed(host.into())),
                "{url}"
            );
        }
    }
}
