//! Micro-benchmarks of fal-proxy's pure hot paths, on realistic inputs, through the crate's
//! public API:
//!
//! - `target_parse`: [`TargetRules::parse`] (the rules built from the embedded default config's
//!   endpoints) on a submit, a status (`?logs=1`), a result and a refused (wrong host) target URL;
//! - `validate`: the real compiled validator of `fal-ai/nano-banana-pro/edit` (embedded default
//!   config and schemas, compiled as `app::build` does) on the S2 body (the seed's example input,
//!   354 bytes, two https image URLs) and the S3 body (two 1.5 MB PNG-headed `data:` URIs, a
//!   4,000,224-byte body), the same bodies `bench/fake-fal/gen.py` writes;
//! - `headers`: `relay::forward_request_headers` on a browser's request headers and
//!   `relay::relay_response_headers` on fal's answer headers.
//!
//! Run: `cargo bench --bench micro` (add a filter such as `-- validate` to run some). `cargo test
//! --all-targets` (CI) runs each benchmark once as a test, in quick mode: the set-up assertions
//! run, nothing is timed and there are no timing assertions.
//!
//! Every fixture is built once, outside the timed loop; each benchmark first checks (untimed) that
//! its input takes the intended path, so a broken fixture cannot silently measure an error path.

// Bench set-up code, not a request path: a broken fixture should stop the run loudly.
#![allow(clippy::panic)]

use std::sync::LazyLock;

use base64::Engine as _;
use divan::counter::BytesCount;
use divan::{Bencher, black_box};
use fal_proxy::config::{self, Config, ConfigSource};
use fal_proxy::relay::{forward_request_headers, relay_response_headers};
use fal_proxy::target::{CallKind, Refusal, TargetRules};
use fal_proxy::validate::{EndpointValidator, Validators};
use http::{HeaderMap, HeaderName, HeaderValue, Method};

// The shipped binary's allocator (src/main.rs), so the allocating paths cost what they cost there.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    divan::main();
}

/// The endpoint whose bodies are validated (S2 and S3 submit to it).
const EDIT: &str = "fal-ai/nano-banana-pro/edit";
/// A fal request id as fal writes them (a UUID).
const REQUEST_ID: &str = "764cabcf-b745-4b3e-ae38-1200304cf45b";

/// The embedded default config (no file, no environment), as the tests start from it.
static CONFIG: LazyLock<Config> = LazyLock::new(|| {
    config::defaults().unwrap_or_else(|e| panic!("the embedded default config: {e}"))
});

/// The target rules `app::build` makes from the config's endpoints and webhook prefixes.
static RULES: LazyLock<TargetRules> = LazyLock::new(|| TargetRules::from_config(&CONFIG));

/// The compiled validators `app::build` makes from the config and the embedded schemas.
static VALIDATORS: LazyLock<Validators> = LazyLock::new(|| {
    let schemas = config::load_schemas(&CONFIG, &ConfigSource::Embedded)
        .unwrap_or_else(|e| panic!("the embedded schemas: {e}"));
    Validators::compile(&CONFIG, schemas).unwrap_or_else(|e| panic!("compiling validators: {e}"))
});

mod target_parse {
    use super::*;

    /// Parses `url` once untimed (it must be accepted as `kind`), then times parsing it.
    fn accepted(bencher: Bencher, method: Method, url: &str, kind: CallKind) {
        let rules = &*RULES;
        match rules.parse(&method, url) {
            Ok(target) => assert_eq!(target.kind, kind, "{url}"),
            Err(e) => panic!("{url} was refused: {e:?}"),
        }
        bencher.bench(|| rules.parse(black_box(&method), black_box(url)));
    }

    #[divan::bench]
    fn submit(bencher: Bencher) {
        let url = format!("https://queue.fal.run/{EDIT}");
        accepted(bencher, Method::POST, &url, CallKind::Submit);
    }

    #[divan::bench]
    fn status(bencher: Bencher) {
        let url = format!(
            "https://queue.fal.run/fal-ai/nano-banana-pro/requests/{REQUEST_ID}/status?logs=1"
        );
        accepted(bencher, Method::GET, &url, CallKind::Status);
    }

    #[divan::bench]
    fn result(bencher: Bencher) {
        let url = format!("https://queue.fal.run/fal-ai/nano-banana-pro/requests/{REQUEST_ID}");
        accepted(bencher, Method::GET, &url, CallKind::Result);
    }

    #[divan::bench]
    fn refused_host(bencher: Bencher) {
        let rules = &*RULES;
        let method = Method::POST;
        let url = format!("https://queue.fal.example.com/{EDIT}");
        match rules.parse(&method, &url) {
            Ok(target) => panic!("{url} was accepted: {target:?}"),
            Err(e) => assert_eq!(
                (e.refusal, e.code),
                (Refusal::Forbidden, "target_host_not_allowed"),
                "{url}: {e:?}"
            ),
        }
        bencher.bench(|| rules.parse(black_box(&method), black_box(&url)));
    }
}

mod validate {
    use super::*;

    /// The seed's example input's image URLs (gen.py's `seed`).
    const HTTPS_IMAGES: [&str; 2] = [
        "https://storage.googleapis.com/falserverless/example_inputs/nano-banana-edit-input.png",
        "https://storage.googleapis.com/falserverless/example_inputs/nano-banana-edit-input-2.png",
    ];

    /// The edit input with these `image_urls`, byte for byte as gen.py writes it (compact JSON,
    /// keys in the seed's order). The URLs need no JSON escaping.
    fn body(image_urls: &[String]) -> Vec<u8> {
        let urls: Vec<String> = image_urls.iter().map(|u| format!("\"{u}\"")).collect();
        format!(
            concat!(
                r#"{{"prompt":"make a photo of the man driving the car down the california coastline","#,
                r#""image_urls":[{}],"num_images":1,"aspect_ratio":"auto","output_format":"png","#,
                r#""resolution":"1K"}}"#
            ),
            urls.join(",")
        )
        .into_bytes()
    }

    /// `len` bytes of a fake photo: the PNG signature, then incompressible xorshift bytes.
    fn png_bytes(len: usize, seed: u64) -> Vec<u8> {
        let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
        let mut state = seed | 1;
        while out.len() < len {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            out.extend_from_slice(&state.to_le_bytes());
        }
        out.truncate(len);
        out
    }

    /// S2: the seed's example input (354 bytes).
    static S2: LazyLock<Vec<u8>> = LazyLock::new(|| {
        let body = body(&HTTPS_IMAGES.map(String::from));
        assert_eq!(body.len(), 354, "S2 body size (gen.py's bodies/s2.json)");
        body
    });

    /// S3: the same input with two 1.5 MB images as canonical standard-base64 data URIs.
    static S3: LazyLock<Vec<u8>> = LazyLock::new(|| {
        let uris: Vec<String> = (1..=2)
            .map(|seed| {
                let b64 =
                    base64::engine::general_purpose::STANDARD.encode(png_bytes(1_500_000, seed));
                format!("data:image/png;base64,{b64}")
            })
            .collect();
        let body = body(&uris);
        assert_eq!(
            body.len(),
            4_000_224,
            "S3 body size (gen.py's bodies/s3.json)"
        );
        body
    });

    /// Validates `body` once untimed (it must be accepted), then times validating it.
    fn accepted(bencher: Bencher, body: &[u8]) {
        let validator: &EndpointValidator = VALIDATORS
            .get(EDIT)
            .unwrap_or_else(|| panic!("no validator for {EDIT} in the default config"));
        if let Err(violations) = validator.validate(body) {
            panic!("the body was refused: {violations:?}");
        }
        bencher
            .counter(BytesCount::of_slice(body))
            .bench(|| validator.validate(black_box(body)));
    }

    #[divan::bench]
    fn s2_seed_input(bencher: Bencher) {
        accepted(bencher, &S2);
    }

    #[divan::bench(sample_count = 20)]
    fn s3_two_data_uris(bencher: Bencher) {
        accepted(bencher, &S3);
    }
}

mod headers {
    use super::*;

    fn header_map(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::with_capacity(pairs.len());
        for (name, value) in pairs {
            map.append(
                HeaderName::from_static(name),
                HeaderValue::from_static(value),
            );
        }
        map
    }

    /// A browser's compat-route submit, as it reaches the proxy behind a load balancer.
    static BROWSER_REQUEST: LazyLock<HeaderMap> = LazyLock::new(|| {
        header_map(&[
            ("host", "app.example.com"),
            ("connection", "keep-alive"),
            ("content-length", "354"),
            ("content-type", "application/json"),
            ("accept", "application/json"),
            ("accept-encoding", "gzip, deflate, br, zstd"),
            ("accept-language", "en-US,en;q=0.9,fr;q=0.8"),
            (
                "user-agent",
                "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
            ),
            ("origin", "https://app.example.com"),
            ("referer", "https://app.example.com/editor"),
            (
                "authorization",
                "Bearer eyJhbGciOiJFUzI1NiIsInR5cCI6IkpXVCIsImtpZCI6ImFwcC0xIn0.eyJzdWIiOiJ1c2VyXzEyMyIsImlzcyI6Imh0dHBzOi8vYXV0aC5leGFtcGxlLmNvbSIsImV4cCI6MTg5MzQ1NjAwMH0.c2lnbmF0dXJlLW5vdC1jaGVja2VkLWluLXRoaXMtYmVuY2htYXJr",
            ),
            (
                "x-fal-target-url",
                "https://queue.fal.run/fal-ai/nano-banana-pro/edit",
            ),
            (
                "cookie",
                "session=9f8e7d6c5b4a39281706f5e4d3c2b1a0; _ga=GA1.1.123456789.1732400000; theme=dark",
            ),
            (
                "sec-ch-ua",
                "\"Google Chrome\";v=\"131\", \"Chromium\";v=\"131\", \"Not_A Brand\";v=\"24\"",
            ),
            ("sec-ch-ua-mobile", "?0"),
            ("sec-ch-ua-platform", "\"macOS\""),
            ("sec-fetch-site", "same-origin"),
            ("sec-fetch-mode", "cors"),
            ("sec-fetch-dest", "empty"),
            ("x-forwarded-for", "203.0.113.7, 10.0.3.12"),
            ("x-forwarded-proto", "https"),
        ])
    });

    /// fal's answer to a status poll.
    static FAL_RESPONSE: LazyLock<HeaderMap> = LazyLock::new(|| {
        header_map(&[
            ("date", "Mon, 24 Nov 2026 03:52:27 GMT"),
            ("content-type", "application/json"),
            ("content-length", "406"),
            ("connection", "keep-alive"),
            ("server", "cloudflare"),
            ("vary", "Accept-Encoding"),
            ("cache-control", "no-store"),
            (
                "strict-transport-security",
                "max-age=31536000; includeSubDomains",
            ),
            ("x-fal-request-id", "764cabcf-b745-4b3e-ae38-1200304cf45b"),
            ("x-fal-queue-position", "0"),
            ("x-fal-billable-units", "1"),
            ("x-request-id", "0b7c3f4e2d1a4b5c9e8f7a6b5c4d3e2f"),
            (
                "set-cookie",
                "__cf_bm=Zm9vYmFyYmF6.1732420347-1.0.1.1-abcdef; path=/; expires=Mon, 24-Nov-26 04:22:27 GMT; domain=.fal.run; HttpOnly; Secure; SameSite=None",
            ),
            ("cf-cache-status", "DYNAMIC"),
            ("cf-ray", "8e7a1b2c3d4e5f60-CDG"),
            ("alt-svc", "h3=\":443\"; ma=86400"),
        ])
    });

    #[divan::bench]
    fn forward_request(bencher: Bencher) {
        let incoming = &*BROWSER_REQUEST;
        let forwarded = forward_request_headers(incoming);
        assert!(forwarded.contains_key("content-type"), "{forwarded:?}");
        for private in [
            "authorization",
            "cookie",
            "x-fal-target-url",
            "x-forwarded-for",
        ] {
            assert!(!forwarded.contains_key(private), "{private} forwarded");
        }
        bencher.bench(|| forward_request_headers(black_box(incoming)));
    }

    #[divan::bench]
    fn relay_response(bencher: Bencher) {
        let upstream = &*FAL_RESPONSE;
        let relayed = relay_response_headers(upstream.clone());
        for kept in ["content-type", "x-fal-request-id"] {
            assert!(relayed.contains_key(kept), "{kept} not relayed");
        }
        for dropped in ["set-cookie", "content-length", "connection"] {
            assert!(!relayed.contains_key(dropped), "{dropped} relayed");
        }
        // The map is taken by value: each run gets its own copy, made outside the timing.
        bencher
            .with_inputs(|| upstream.clone())
            .bench_values(|upstream| relay_response_headers(black_box(upstream)));
    }
}
