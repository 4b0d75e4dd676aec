//! Unit and property tests of the target rules.

use super::*;
use proptest::prelude::*;

fn rules() -> TargetRules {
    TargetRules::new(
        &[
            "fal-ai/nano-banana-pro/edit",
            "fal-ai/nano-banana-pro",
            "workflows/acme/flow",
        ],
        &["https://hooks.example.com/fal/"],
    )
}

fn ok(method: Method, url: &str) -> Target {
    rules()
        .parse(&method, url)
        .unwrap_or_else(|e| panic!("{url} refused: {e:?}"))
}

fn refused(method: Method, url: &str) -> TargetError {
    match rules().parse(&method, url) {
        Ok(t) => panic!("{url} accepted: {t:?}"),
        Err(e) => e,
    }
}

#[test]
fn submit_and_run_name_a_configured_endpoint_exactly() {
    let t = ok(
        Method::POST,
        "https://queue.fal.run/fal-ai/nano-banana-pro/edit",
    );
    assert_eq!(t.kind, CallKind::Submit);
    assert_eq!(t.endpoint.as_deref(), Some("fal-ai/nano-banana-pro/edit"));
    assert_eq!(t.path, "/fal-ai/nano-banana-pro/edit");
    assert_eq!(t.query, None);
    let t = ok(Method::POST, "https://fal.run/fal-ai/nano-banana-pro");
    assert_eq!((t.host, t.kind), (FalHost::Run, CallKind::Run));
    let t = ok(Method::POST, "https://queue.fal.run/workflows/acme/flow");
    assert_eq!(t.endpoint.as_deref(), Some("workflows/acme/flow"));

    for url in [
        "https://queue.fal.run/fal-ai/flux/dev",
        "https://queue.fal.run/fal-ai/nano-banana-pro/edit/more",
        "https://fal.run/fal-ai/nano-banana-pro/other",
    ] {
        let e = refused(Method::POST, url);
        assert_eq!(
            (e.refusal, e.code),
            (Refusal::Forbidden, "endpoint_not_allowed")
        );
    }
    assert_eq!(
        refused(Method::POST, "https://queue.fal.run/fal-ai").code,
        "invalid_target"
    );
}

#[test]
fn request_calls_in_both_url_forms() {
    let id = "0b7c1a4e-6f55-4d5b-9a39-5e2f1c0c7d11";
    let cases = [
        (
            Method::GET,
            format!("/requests/{id}/status"),
            CallKind::Status,
        ),
        (
            Method::GET,
            format!("/requests/{id}/status/stream"),
            CallKind::StatusStream,
        ),
        (Method::GET, format!("/requests/{id}"), CallKind::Result),
        (
            Method::PUT,
            format!("/requests/{id}/cancel"),
            CallKind::Cancel,
        ),
    ];
    for (method, tail, kind) in cases {
        for (app, endpoint) in [
            ("fal-ai/nano-banana-pro", "fal-ai/nano-banana-pro"),
            ("fal-ai/nano-banana-pro/edit", "fal-ai/nano-banana-pro/edit"),
        ] {
            let t = ok(
                method.clone(),
                &format!("https://queue.fal.run/{app}{tail}"),
            );
            assert_eq!(t.kind, kind);
            assert_eq!(t.request_id.as_deref(), Some(id));
            assert_eq!(t.endpoint.as_deref(), Some(endpoint));
        }
    }
    let t = ok(
        Method::GET,
        &format!("https://queue.fal.run/fal-ai/nano-banana-pro/requests/{id}/status?logs=1"),
    );
    assert_eq!(t.query.as_deref(), Some("logs=1"));
}

#[test]
fn request_calls_outside_the_allowlist_are_forbidden() {
    for url in [
        "https://queue.fal.run/fal-ai/flux/requests/abc/status",
        "https://queue.fal.run/fal-ai/nano-banana-pro/other/requests/abc",
    ] {
        assert_eq!(refused(Method::GET, url).code, "endpoint_not_allowed");
    }
    for url in [
        "https://queue.fal.run/fal-ai/nano-banana-pro/requests/a.b/status",
        "https://queue.fal.run/fal-ai/nano-banana-pro/requests/abc/logs",
        "https://queue.fal.run/fal-ai/nano-banana-pro/requests",
    ] {
        assert_eq!(
            refused(Method::GET, url).refusal,
            Refusal::BadRequest,
            "{url}"
        );
    }
}

#[test]
fn only_https_on_the_three_hosts_without_userinfo_port_or_ip() {
    let path = "/fal-ai/nano-banana-pro/edit";
    let cases = [
        (format!("http://queue.fal.run{path}"), "target_not_https"),
        (format!("ftp://queue.fal.run{path}"), "target_not_https"),
        (
            format!("https://user:pw@queue.fal.run{path}"),
            "target_userinfo",
        ),
        (format!("https://queue.fal.run:8443{path}"), "target_port"),
        (format!("https://queue.fal.run:{path}"), "target_port"),
        (format!("https://127.0.0.1{path}"), "target_ip_literal"),
        (format!("https://[::1]{path}"), "target_ip_literal"),
        (format!("https://evil.com{path}"), "target_host_not_allowed"),
        (
            format!("https://queue.fal.run.evil.com{path}"),
            "target_host_not_allowed",
        ),
        (
            format!("https://queue.fal.run.{path}"),
            "target_host_not_allowed",
        ),
        (path.to_string(), "invalid_target"),
        ("garbage".to_string(), "invalid_target"),
        (String::new(), "invalid_target"),
        (
            format!("https://queue.fal.run{path}#frag"),
            "invalid_target",
        ),
    ];
    for (url, code) in cases {
        assert_eq!(refused(Method::POST, &url).code, code, "{url}");
    }
    // Case-insensitive host and scheme, explicit :443.
    ok(Method::POST, &format!("HTTPS://Queue.FAL.run:443{path}"));
}

#[test]
fn traversal_encoding_and_odd_characters_are_refused() {
    for url in [
        "https://queue.fal.run/fal-ai/../nano-banana-pro/edit",
        "https://queue.fal.run/fal-ai/./nano-banana-pro/edit",
        "https://queue.fal.run/fal-ai/%2e%2e/nano-banana-pro/edit",
        "https://queue.fal.run/fal-ai%2Fnano-banana-pro/edit",
        "https://queue.fal.run/fal-ai/nano-banana-pro%2fedit",
        "https://queue.fal.run/fal-ai/nano-banana-pro/edit;x",
        "https://queue.fal.run/fal-ai/nano-banana-pro/edit\\..",
        "https://queue.fal.run/fal-ai/nano banana/edit",
        "https://queue.fal.run/fal-ai/nano-banana-pro/edit\u{0}",
        "https://queue.fal.run/fal-ai/nano-banana-pro/edit\r\nx: y",
        "https://queue.fal.run/fal-ai/nänö/edit",
    ] {
        assert_eq!(
            refused(Method::POST, url).refusal,
            Refusal::BadRequest,
            "{url:?}"
        );
    }
    // Repeated and trailing slashes are folded.
    let t = ok(
        Method::POST,
        "https://queue.fal.run//fal-ai//nano-banana-pro/edit/",
    );
    assert_eq!(t.path, "/fal-ai/nano-banana-pro/edit");
}

#[test]
fn methods_other_than_the_calls_own_are_refused() {
    let e = refused(
        Method::GET,
        "https://queue.fal.run/fal-ai/nano-banana-pro/edit",
    );
    assert_eq!(e.refusal, Refusal::MethodNotAllowed);
    for m in [Method::DELETE, Method::PATCH, Method::TRACE, Method::POST] {
        let e = refused(
            m,
            "https://queue.fal.run/fal-ai/nano-banana-pro/requests/abc/status",
        );
        assert_eq!(e.refusal, Refusal::MethodNotAllowed);
    }
}

#[test]
fn rest_host_allows_only_storage_initiation_with_cdn_v3() {
    for (path, kind) in [
        ("initiate", CallKind::UploadInitiate),
        ("initiate-multipart", CallKind::UploadInitiateMultipart),
        ("complete-multipart", CallKind::UploadCompleteMultipart),
    ] {
        let t = ok(
            Method::POST,
            &format!("https://rest.fal.ai/storage/upload/{path}?storage_type=fal-cdn-v3"),
        );
        assert_eq!(t.kind, kind);
        assert_eq!(t.query.as_deref(), Some("storage_type=fal-cdn-v3"));
    }
    for url in [
        "https://rest.fal.ai/storage/upload/initiate",
        "https://rest.fal.ai/storage/upload/initiate?storage_type=gcs",
        "https://rest.fal.ai/keys",
        "https://rest.fal.ai/storage/upload",
    ] {
        assert_eq!(
            refused(Method::POST, url).refusal,
            Refusal::Forbidden,
            "{url}"
        );
    }
}

#[test]
fn query_parameters_are_checked_per_call() {
    let base = "https://queue.fal.run/fal-ai/nano-banana-pro/edit";
    let t = ok(
        Method::POST,
        &format!("{base}?fal_webhook=https%3A%2F%2Fhooks.example.com%2Ffal%2Fdone"),
    );
    assert_eq!(
        t.query.as_deref(),
        Some("fal_webhook=https%3A%2F%2Fhooks.example.com%2Ffal%2Fdone")
    );
    for hook in [
        "https://evil.com/x",
        "https://hooks.example.com.evil.com/fal/",
        "http://hooks.example.com/fal/x",
        "https://hooks.example.com/other",
    ] {
        let url = format!("{base}?fal_webhook={hook}");
        assert_eq!(
            refused(Method::POST, &url).code,
            "webhook_not_allowed",
            "{hook}"
        );
    }
    assert_eq!(
        refused(Method::POST, &format!("{base}?x=1")).code,
        "target_query"
    );
    assert_eq!(
        refused(
            Method::GET,
            "https://queue.fal.run/fal-ai/nano-banana-pro/requests/abc/status?logs=2"
        )
        .code,
        "target_query"
    );
    assert_eq!(
        refused(
            Method::GET,
            "https://queue.fal.run/fal-ai/nano-banana-pro/requests/abc/status?logs=1&logs=0"
        )
        .code,
        "target_query"
    );
}

#[test]
fn without_webhook_prefixes_every_webhook_is_refused() {
    let rules = TargetRules::new(&["fal-ai/nano-banana-pro/edit"], &[]);
    let e = rules
        .parse(
            &Method::POST,
            "https://queue.fal.run/fal-ai/nano-banana-pro/edit?fal_webhook=https://a.com/",
        )
        .unwrap_err();
    assert_eq!(e.code, "webhook_not_allowed");
}

#[test]
fn upstream_url_maps_the_host_to_the_configured_base() {
    let t = ok(
        Method::GET,
        "https://queue.fal.run/fal-ai/nano-banana-pro/requests/abc/status?logs=1",
    );
    assert_eq!(
        t.upstream_url("http://127.0.0.1:9000/queue"),
        "http://127.0.0.1:9000/queue/fal-ai/nano-banana-pro/requests/abc/status?logs=1"
    );
    assert_eq!(
        t.fal_url(),
        "https://queue.fal.run/fal-ai/nano-banana-pro/requests/abc/status?logs=1"
    );
}

#[test]
fn endpoint_id_syntax() {
    assert!(is_valid_endpoint_id("fal-ai/nano-banana-pro/edit"));
    assert!(is_valid_endpoint_id("workflows/acme/flow"));
    for bad in [
        "fal-ai",
        "workflows/acme",
        "a//b",
        "a/../b",
        "a/b/requests",
        "a/b c",
        "",
    ] {
        assert!(!is_valid_endpoint_id(bad), "{bad}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// No input makes the parser panic, and whatever it accepts obeys every rule.
    #[test]
    fn accepted_targets_always_obey_the_rules(raw in ".{0,200}", m in 0..5usize) {
        let method = [Method::GET, Method::POST, Method::PUT, Method::DELETE, Method::PATCH][m].clone();
        if let Ok(t) = rules().parse(&method, &raw) {
            prop_assert!(raw.to_ascii_lowercase().starts_with("https://"));
            prop_assert!(!t.path.contains(".."));
            prop_assert!(!t.path.contains('%'));
            prop_assert!(!t.path.contains("//"));
            prop_assert_eq!(t.kind.method(), method);
        }
    }

    /// URL-shaped inputs built from fal-ish pieces: same guarantees, and a host is always fal's.
    #[test]
    fn fal_shaped_inputs(
        scheme in prop::sample::select(vec!["https", "http", "HTTPS"]),
        host in prop::sample::select(vec!["queue.fal.run", "fal.run", "rest.fal.ai", "queue.fal.run:443", "queue.fal.run:80", "a@queue.fal.run", "1.2.3.4", "evil.run"]),
        segs in prop::collection::vec(prop::sample::select(vec!["fal-ai", "nano-banana-pro", "edit", "requests", "abc", "status", "stream", "cancel", "..", ".", "%2e", "", "storage", "upload", "initiate"]), 0..7),
        query in prop::sample::select(vec!["", "?logs=1", "?storage_type=fal-cdn-v3", "?fal_webhook=https://hooks.example.com/fal/x", "?a=b"]),
        m in 0..3usize,
    ) {
        let method = [Method::GET, Method::POST, Method::PUT][m].clone();
        let raw = format!("{scheme}://{host}/{}{query}", segs.join("/"));
        if let Ok(t) = rules().parse(&method, &raw) {
            prop_assert!(scheme.eq_ignore_ascii_case("https"));
            prop_assert!(!host.contains('@') && !host.ends_with(":80"));
            prop_assert!(!segs.iter().any(|s| *s == ".." || *s == "." || s.contains('%')));
            if t.kind.spends() || t.kind.is_request_call() {
                prop_assert!(t.endpoint.is_some());
            }
        }
    }

    /// Every well-formed request call on an allowed endpoint is accepted with its id intact.
    #[test]
    fn valid_request_ids_round_trip(id in "[A-Za-z0-9_-]{1,128}") {
        let url = format!("https://queue.fal.run/fal-ai/nano-banana-pro/requests/{id}/status");
        let t = rules().parse(&Method::GET, &url).unwrap();
        prop_assert_eq!(t.request_id.as_deref(), Some(id.as_str()));
    }
}

/// The path rules written the plain way (several passes), as a model for the one-pass
/// `normalise_path`: same segments, same refusal (code and message) for every input.
fn model_normalise_path(raw: &str) -> Result<Vec<&str>, TargetError> {
    if !raw.starts_with('/') {
        return Err(no_path());
    }
    if raw.contains('%') {
        return Err(percent_encoded());
    }
    let allowed = |c: char| c.is_ascii_alphanumeric() || "-._~/".contains(c);
    if let Some(c) = raw.chars().find(|&c| !allowed(c)) {
        return Err(path_character(c));
    }
    let segments: Vec<&str> = raw.split('/').filter(|s| !s.is_empty()).collect();
    match segments.iter().any(|s| *s == "." || *s == "..") {
        true => Err(dot_segments()),
        false if segments.is_empty() => Err(no_path()),
        false => Ok(segments),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    #[test]
    fn one_pass_path_rules_match_the_model(
        raw in prop_oneof![
            ".{0,40}",
            "/[a-z./~_%-]{0,40}",
            prop::collection::vec(prop::sample::select(vec!["", ".", "..", "a", "b-c", "~x", "é", " ", "%2e", "x.y"]), 0..6)
                .prop_map(|s| format!("/{}", s.join("/"))),
        ],
    ) {
        prop_assert_eq!(normalise_path(&raw), model_normalise_path(&raw));
    }
}

/// The whole-URL rules written the plain way (a pass per rule), as a model for `split_url`:
/// same split, same refusal (code and message) for every input.
fn model_split_url(raw: &str) -> Result<(FalHost, &str, Option<&str>), TargetError> {
    if raw.len() > MAX_TARGET_LEN {
        return Err(bad("invalid_target", "the target URL is too long"));
    }
    if let Some(at) = raw.bytes().position(|b| !b.is_ascii_graphic()) {
        let c = raw[at..].chars().next().unwrap_or_default();
        return Err(bad(
            "invalid_target",
            format!("the target URL contains a forbidden character {c:?}"),
        ));
    }
    if raw.contains('\\') {
        return Err(bad("invalid_target", "the target URL contains a backslash"));
    }
    let (scheme, rest) = raw.split_once("://").ok_or_else(|| {
        bad(
            "invalid_target",
            "the target must be an absolute https:// URL on a fal host",
        )
    })?;
    if !scheme.eq_ignore_ascii_case("https") {
        return Err(bad("target_not_https", "only https:// targets are allowed"));
    }
    if rest.contains('#') {
        return Err(bad(
            "invalid_target",
            "the target URL may not have a fragment",
        ));
    }
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, path_and_query) = rest.split_at(authority_end);
    let host = judge_authority(authority)?;
    Ok(match path_and_query.split_once('?') {
        Some((p, q)) => (host, p, Some(q)),
        None => (host, path_and_query, None),
    })
}

/// `app_of` written with an iterator, as a model.
fn model_app_of(endpoint: &str) -> &str {
    let len = app_len(endpoint.split('/').next());
    match endpoint.match_indices('/').nth(len - 1) {
        Some((i, _)) => &endpoint[..i],
        None => endpoint,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    #[test]
    fn one_pass_url_rules_match_the_model(
        raw in prop_oneof![
            ".{0,60}",
            "[hHtTpPsS]{0,6}:?/{0,3}[a-z.@:\\[\\]0-9]{0,20}[/?#\\\\ ]{0,2}[a-z/?=#]{0,20}",
            (
                prop::sample::select(vec!["https://", "HTTPS://", "http://", "https:/", "hxxps://", "", "https://https://"]),
                prop::sample::select(vec!["queue.fal.run", "fal.run", "rest.fal.ai", "QUEUE.fal.run", "queue.fal.run:443", "fal.run:8443", "u@fal.run", "[::1]", "10.0.0.1", "", "queue.fal.run."]),
                prop::sample::select(vec!["", "/", "/fal-ai/x", "/a?b=c", "?q", "/a#f", "/a\\b", "/a b", "/é"]),
            ).prop_map(|(s, h, p)| format!("{s}{h}{p}")),
        ],
    ) {
        prop_assert_eq!(split_url(&raw), model_split_url(&raw));
    }

    #[test]
    fn app_of_matches_the_model(
        segs in prop::collection::vec(prop::sample::select(vec!["workflows", "comfy", "fal-ai", "x", ""]), 0..6),
    ) {
        let endpoint = segs.join("/");
        prop_assert_eq!(app_of(&endpoint), model_app_of(&endpoint));
    }
}
