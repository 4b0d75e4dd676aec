//! Policy rules from `[[endpoints]]`, image URLs and data URIs.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};

use super::*;

fn one(result: Result<ValidatedInput, Vec<Violation>>) -> (Value, String) {
    let mut got = problems(result);
    assert_eq!(got.len(), 1, "{got:?}");
    got.remove(0)
}

fn field(name: &str, kind: &str) -> (Value, String) {
    (json!(["body", name]), kind.to_string())
}

fn url_at(index: usize, kind: &str) -> (Value, String) {
    (json!(["body", "image_urls", index]), kind.to_string())
}

fn with_urls(validators: &Validators, urls: &[&str]) -> Result<ValidatedInput, Vec<Violation>> {
    edit(validators, &edit_input(json!({ "image_urls": urls })))
}

fn data_uri(media: &str, bytes: usize) -> String {
    format!("data:{media};base64,{}", STANDARD.encode(vec![0x5a; bytes]))
}

#[test]
fn max_num_images() {
    let v = edit_with(|e| e.max_num_images = Some(2));
    assert!(edit(&v, &edit_input(json!({"num_images": 2}))).is_ok());
    let got = one(edit(&v, &edit_input(json!({"num_images": 3}))));
    assert_eq!(got, field("num_images", "policy_max_num_images"));
    // Beyond the schema's range the schema speaks, once.
    let got = one(edit(&v, &edit_input(json!({"num_images": 7}))));
    assert_eq!(got, field("num_images", "less_than_equal"));
}

#[test]
fn allowed_resolutions_judge_the_effective_value() {
    let v = edit_with(|e| e.allowed_resolutions = vec!["1K".into(), "2K".into()]);
    assert!(edit(&v, &edit_input(json!({"resolution": "2K"}))).is_ok());
    let got = violations(edit(&v, &edit_input(json!({"resolution": "4K"}))));
    assert_eq!(
        (json!(got[0].loc), got[0].kind.as_str()),
        (json!(["body", "resolution"]), "policy_resolution")
    );
    assert!(got[0].msg.contains("'1K' or '2K'"), "{}", got[0].msg);

    let only_2k = edit_with(|e| e.allowed_resolutions = vec!["2K".into()]);
    let got = violations(edit(&only_2k, &edit_input(json!({}))));
    assert_eq!(got[0].kind, "policy_resolution");
    assert!(
        got[0].msg.starts_with("The default resolution '1K'"),
        "{}",
        got[0].msg
    );
    // A value outside the schema's enum is the schema's problem, reported once.
    assert_eq!(
        one(edit(&only_2k, &edit_input(json!({"resolution": "8K"})))),
        field("resolution", "enum")
    );
}

#[test]
fn sync_mode_and_web_search_switches() {
    let shipped = shipped();
    let got = one(edit(&shipped, &edit_input(json!({"sync_mode": true}))));
    assert_eq!(got, field("sync_mode", "policy_sync_mode"));
    assert!(edit(&shipped, &edit_input(json!({"sync_mode": false}))).is_ok());
    let sync_ok = edit_with(|e| e.allow_sync_mode = true);
    assert!(
        edit(&sync_ok, &edit_input(json!({"sync_mode": true})))
            .unwrap()
            .sync_mode()
    );

    assert!(edit(&shipped, &edit_input(json!({"enable_web_search": true}))).is_ok());
    let no_search = edit_with(|e| e.allow_web_search = false);
    let got = one(edit(
        &no_search,
        &edit_input(json!({"enable_web_search": true})),
    ));
    assert_eq!(got, field("enable_web_search", "policy_web_search"));
    assert!(edit(&no_search, &edit_input(json!({}))).is_ok());
}

#[test]
fn max_image_urls() {
    let v = edit_with(|e| e.max_image_urls = Some(2));
    let ok = "https://cdn.example.com/a.png";
    assert!(with_urls(&v, &[ok, ok]).is_ok());
    assert_eq!(
        one(with_urls(&v, &[ok, ok, ok])),
        field("image_urls", "policy_max_image_urls")
    );
    // Too many and a bad one: both reported.
    let got = problems(with_urls(&v, &[ok, ok, "http://x.example/a"]));
    assert_eq!(
        got,
        [
            field("image_urls", "policy_max_image_urls"),
            url_at(2, "policy_image_url_scheme")
        ]
    );
}

#[test]
fn image_urls_must_be_https_without_userinfo() {
    let v = shipped();
    let cases = [
        ("http://cdn.example.com/a.png", "policy_image_url_scheme"),
        ("ftp://cdn.example.com/a.png", "policy_image_url_scheme"),
        ("file:///etc/passwd", "policy_image_url_scheme"),
        ("cdn.example.com/a.png", "policy_image_url_scheme"),
        (
            "https://user:pw@cdn.example.com/a.png",
            "policy_image_url_userinfo",
        ),
        ("https:///a.png", "policy_image_url_invalid"),
        (
            "https://cdn.example.com/a b.png",
            "policy_image_url_invalid",
        ),
    ];
    for (url, kind) in cases {
        let got = one(with_urls(&v, &["https://ok.example/a.png", url]));
        assert_eq!(got, url_at(1, kind), "{url}");
    }
}

#[test]
fn image_url_host_allowlist() {
    let v = edit_with(|e| e.image_url_hosts = vec!["cdn.example.com".into(), "*.fal.media".into()]);
    assert!(with_urls(&v, &["https://cdn.example.com/a", "https://v3.fal.media/b"]).is_ok());
    let got = violations(with_urls(&v, &["https://evil.example.net/a"]));
    assert_eq!(got[0].kind, "policy_image_url_host");
    assert!(got[0].msg.contains("'evil.example.net'") && got[0].msg.contains("'*.fal.media'"));
    assert_eq!(
        one(with_urls(&v, &["https://fal.media/a"])),
        url_at(0, "policy_image_url_host")
    );
    // Data URIs are not hosts: the allowlist does not apply to them.
    assert!(with_urls(&v, &[&data_uri("image/png", 10)]).is_ok());
}

#[test]
fn data_uris() {
    let v = shipped();
    assert!(
        with_urls(
            &v,
            &[&data_uri("image/png", 100), &data_uri("image/jpeg", 3)]
        )
        .is_ok()
    );
    let cases = [
        (data_uri("text/plain", 10), "policy_data_uri_media_type"),
        (
            data_uri("application/octet-stream", 10),
            "policy_data_uri_media_type",
        ),
        (
            "data:image/png,rawbytes".to_string(),
            "policy_data_uri_invalid",
        ),
        (
            "data:image/png;base64".to_string(),
            "policy_data_uri_invalid",
        ),
        (
            "data:image/png;base64,iVBO$w0K".to_string(),
            "policy_data_uri_base64",
        ),
        (
            "data:image/png;base64,iVBORw0KGgo".to_string(),
            "policy_data_uri_base64",
        ),
        (
            "data:image/png;base64,iVBORw0KGg=".to_string(),
            "policy_data_uri_base64",
        ),
        (
            "data:image/png;base64,iVBORw0KGh==".to_string(),
            "policy_data_uri_base64",
        ),
        (
            "data:image/png;base64,iVBORw0K=Ggo".to_string(),
            "policy_data_uri_base64",
        ),
        (
            "data:image/png;base64,iVBO Rw0K".to_string(),
            "policy_data_uri_base64",
        ),
        (
            "data:image/png;base64,iVBO-w0K".to_string(),
            "policy_data_uri_base64",
        ),
        (
            "data:image/png;base64,".to_string(),
            "policy_data_uri_base64",
        ),
    ];
    for (uri, kind) in cases {
        assert_eq!(one(with_urls(&v, &[&uri])), url_at(0, kind), "{uri}");
    }
}

#[test]
fn data_uri_size_cap_and_switch() {
    let v = edit_with(|e| e.max_data_uri_bytes = 1000);
    assert!(with_urls(&v, &[&data_uri("image/png", 1000)]).is_ok());
    let got = violations(with_urls(&v, &[&data_uri("image/png", 1001)]));
    assert_eq!(got[0].kind, "policy_data_uri_too_large");
    assert_eq!(
        got[0].msg,
        "The image in this data URI is 1001 bytes, over the limit of 1000 bytes"
    );

    let off = edit_with(|e| e.allow_data_uris = false);
    let got = one(with_urls(
        &off,
        &["https://a.example/x", &data_uri("image/png", 10)],
    ));
    assert_eq!(got, url_at(1, "policy_data_uri_not_allowed"));
}

#[test]
fn big_data_uri_body_is_accepted() {
    // The benchmark's shape: two ~2 MB images in one ~4 MB body.
    let v = shipped();
    let a = data_uri("image/png", 1_500_000);
    let b = data_uri("image/webp", 1_500_000);
    let body = serde_json::to_vec(&edit_input(json!({ "image_urls": [a, b] }))).unwrap();
    assert!(body.len() > 4_000_000);
    let validator = v.get(EDIT_ID).unwrap();
    assert!(
        validator.image_placeholders,
        "the shipped schema lets the data URIs stay in the body"
    );
    let input = validator.validate(&body).unwrap();
    assert_eq!(input.image_count, 2);
    assert!(!input.input.contains_key("image_urls"));
}
