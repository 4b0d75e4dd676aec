//! Clients over real HTTP: identities (JWT, anonymous by IP), plans, rate limits, jobs in
//! flight, ownership, idempotent submits, budgets, `/v1/me`, and a store that survives a
//! restart. Every store-dependent test runs against both `memory` and `sqlite`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use axum::Router;
use axum::routing::post;
use common::*;
use fal_proxy::config::{Config, JwtConfig, RateConfig, Secret, StoreBackend};
use reqwest::Method;
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// The store a test body runs against, with the folder its SQLite file would go in.
struct Store {
    backend: StoreBackend,
    dir: tempfile::TempDir,
}

impl Store {
    fn new(backend: StoreBackend) -> Self {
        Self {
            backend,
            dir: temp_dir("clients"),
        }
    }

    fn apply(&self, config: &mut Config) {
        config.store.backend = self.backend;
        config.store.data_dir = self.dir.path().to_owned();
    }
}

/// Runs a test body against both store backends.
macro_rules! both_stores {
    ($name:ident, $body:ident) => {
        mod $name {
            use super::*;
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn memory() {
                $body(Store::new(StoreBackend::Memory)).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                $body(Store::new(StoreBackend::Sqlite)).await;
            }
        }
    };
}

async fn submit(proxy: &Proxy, key: &str) -> reqwest::Response {
    http()
        .post(proxy.compat())
        .header("x-fal-target-url", submit_url())
        .header("authorization", format!("Bearer {key}"))
        .json(&edit_input())
        .send()
        .await
        .unwrap()
}

async fn json_body(r: reqwest::Response) -> Value {
    r.json().await.unwrap()
}

fn tight(per_minute: f64, burst: u32) -> RateConfig {
    RateConfig { per_minute, burst }
}

// ---------------------------------------------------------------- ownership

async fn ownership_is_private_on_both_routes(store: Store) {
    let (fake, origin) = start_mock().await;
    let proxy = start_proxy(&origin, |c| store.apply(c)).await;
    let submitted = json_body(submit(&proxy, &proxy.client_key).await).await;
    let id = submitted["request_id"].as_str().unwrap().to_owned();
    let status = format!("https://queue.fal.run/fal-ai/nano-banana-pro/requests/{id}/status");
    let native = format!("/queue/fal-ai/nano-banana-pro/requests/{id}");
    let before = fake.received().len();
    // The other client sees nothing on either route, for every kind of request call.
    for (method, target) in [
        (Method::GET, status.clone()),
        (Method::GET, format!("{status}/stream")),
        (
            Method::GET,
            format!("https://queue.fal.run/fal-ai/nano-banana-pro/requests/{id}"),
        ),
        (
            Method::PUT,
            format!("https://queue.fal.run/fal-ai/nano-banana-pro/requests/{id}/cancel"),
        ),
    ] {
        let r = http()
            .request(method, proxy.compat())
            .header("x-fal-target-url", target)
            .header("authorization", format!("Key {}", proxy.other_key))
            .send()
            .await
            .unwrap();
        expect_error(r, 404, "request_not_found").await;
    }
    for (method, path) in [
        (Method::GET, format!("{native}/status")),
        (Method::GET, native.clone()),
        (Method::PUT, format!("{native}/cancel")),
    ] {
        let r = http()
            .request(method, format!("{}{path}", proxy.url))
            .header("authorization", format!("Bearer {}", proxy.other_key))
            .send()
            .await
            .unwrap();
        expect_error(r, 404, "request_not_found").await;
    }
    // An id the proxy never issued is a 404 too, even for a valid client.
    let r = proxy
        .to_fal(
            Method::GET,
            "https://queue.fal.run/fal-ai/nano-banana-pro/requests/never-issued/status",
        )
        .send()
        .await
        .unwrap();
    expect_error(r, 404, "request_not_found").await;
    // Through another allowed app's URL: 404 as well.
    assert_eq!(fake.received().len(), before, "foreign reads reached fal");
    // The owner reads it.
    let r = proxy.to_fal(Method::GET, &status).send().await.unwrap();
    assert_eq!(r.status(), 200);
}
both_stores!(ownership, ownership_is_private_on_both_routes);

// ---------------------------------------------------------------- rate limits

#[tokio::test]
async fn rate_limits_answer_429_with_the_ietf_headers_and_nothing_upstream() {
    let (fake, origin) = start_mock().await;
    let proxy = start_proxy(&origin, |c| {
        c.plans.get_mut("default").unwrap().submit = tight(1.0, 2);
    })
    .await;
    for _ in 0..2 {
        let r = submit(&proxy, &proxy.client_key).await;
        assert_eq!(r.status(), 200);
        let h = r.headers();
        assert!(
            h["ratelimit"]
                .to_str()
                .unwrap()
                .starts_with("\"submit\";r="),
            "{h:?}"
        );
        assert_eq!(h["ratelimit-policy"], "\"submit\";q=2;w=120");
    }
    let submits = fake.received().len();
    let r = submit(&proxy, &proxy.client_key).await;
    let retry_after: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry_after), "{retry_after}");
    assert_eq!(
        r.headers()["ratelimit"],
        format!("\"submit\";r=0;t={}", 120).as_str()
    );
    assert!(r.headers().contains_key("ratelimit-policy"));
    expect_error(r, 429, "rate_limited").await;
    assert_eq!(
        fake.received().len(),
        submits,
        "a limited submit reached fal"
    );
    // Limits are per client: the other client still submits.
    assert_eq!(submit(&proxy, &proxy.other_key).await.status(), 200);
    // Polls are a separate class.
    let r = proxy.native(Method::GET, "/v1/me").send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        r.headers()["ratelimit"]
            .to_str()
            .unwrap()
            .starts_with("\"poll\"")
    );
}

#[tokio::test]
async fn the_global_submit_limit_spans_all_clients() {
    let (_fake, origin) = start_mock().await;
    let proxy = start_proxy(&origin, |c| c.limits.global_submit = tight(1.0, 3)).await;
    let keys = [proxy.client_key.clone(), proxy.other_key.clone()];
    let mut statuses = Vec::new();
    for i in 0..5 {
        statuses.push(submit(&proxy, &keys[i % 2]).await.status().as_u16());
    }
    assert_eq!(statuses, [200, 200, 200, 429, 429]);
}

/// The status of an anonymous submit from `xff` (as `X-Forwarded-For`): on the native route, or
/// with `x-fal-target-url` on the compat route (served without the router, so it learns its
/// peer another way).
async fn anonymous_submit(proxy_url: &str, compat: bool, xff: &str) -> u16 {
    let request = if compat {
        http()
            .post(format!("{proxy_url}/api/fal/proxy"))
            .header("x-fal-target-url", submit_url())
    } else {
        http().post(format!("{proxy_url}/queue/{EDIT}"))
    };
    request
        .header("x-forwarded-for", xff)
        .json(&edit_input())
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
async fn anonymous_clients_are_told_apart_by_ip_behind_trusted_proxies_only() {
    let (_fake, origin) = start_mock().await;
    // Trusted: the loopback peer is a reverse proxy, so X-Forwarded-For names the client.
    let trusted = start_proxy(&origin, |c| {
        c.auth.anonymous = true;
        c.network.trusted_proxies = vec!["127.0.0.0/8".into()];
        c.plans.get_mut("anonymous").unwrap().submit = tight(1.0, 1);
    })
    .await;
    // Each client has its own limit of one submit; IPv6 clients share one per /64.
    for (xff, expected) in [
        ("203.0.113.7", 200),
        ("203.0.113.7", 429),
        ("203.0.113.8", 200),
        ("2001:db8:1:2::1", 200),
        ("2001:db8:1:2::ffff", 429),
        ("2001:db8:1:3::1", 200),
    ] {
        assert_eq!(
            anonymous_submit(&trusted.url, false, xff).await,
            expected,
            "{xff}"
        );
    }
    // The compat route knows its peer too: the same client shares its limit across routes,
    // and a new one gets its own.
    for (xff, expected) in [
        ("203.0.113.7", 429),
        ("203.0.113.9", 200),
        ("203.0.113.9", 429),
    ] {
        let status = anonymous_submit(&trusted.url, true, xff).await;
        assert_eq!(status, expected, "compat {xff}");
    }
    let me: Value = http()
        .get(format!("{}/v1/me", trusted.url))
        .header("x-forwarded-for", "198.51.100.4")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(me["client_id"], "ip:198.51.100.4");
    assert_eq!(me["plan"], "anonymous");

    // Untrusted: the header is ignored, every request is the socket peer.
    let untrusted = start_proxy(&origin, |c| {
        c.auth.anonymous = true;
        c.plans.get_mut("anonymous").unwrap().submit = tight(1.0, 1);
    })
    .await;
    for (xff, expected) in [("203.0.113.7", 200), ("203.0.113.99", 429)] {
        assert_eq!(
            anonymous_submit(&untrusted.url, false, xff).await,
            expected,
            "{xff}"
        );
    }
    let status = anonymous_submit(&untrusted.url, true, "203.0.113.100").await;
    assert_eq!(
        status, 429,
        "compat: the socket peer, whatever the header says"
    );
}

// ---------------------------------------------------------------- jobs in flight

async fn jobs_in_flight_are_capped_until_seen_completed(store: Store) {
    let (_fake, origin) = start_mock_with(0.2, 0.3).await;
    let proxy = start_proxy(&origin, |c| {
        store.apply(c);
        c.plans.get_mut("default").unwrap().max_jobs_in_flight = 1;
    })
    .await;
    let first = json_body(submit(&proxy, &proxy.client_key).await).await;
    let r = submit(&proxy, &proxy.client_key).await;
    assert!(r.headers().contains_key("retry-after"));
    expect_error(r, 429, "too_many_jobs").await;
    // Another client is not affected.
    assert_eq!(submit(&proxy, &proxy.other_key).await.status(), 200);
    // Once the owner has seen the job completed (through the stream), it no longer counts.
    let stream = proxy
        .to_fal(
            Method::GET,
            &format!("{}/stream", first["status_url"].as_str().unwrap()),
        )
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(stream.contains("COMPLETED"));
    let mut admitted = false;
    for _ in 0..50 {
        if submit(&proxy, &proxy.client_key).await.status() == 200 {
            admitted = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(admitted, "a completed job still counted as in flight");
}
both_stores!(in_flight, jobs_in_flight_are_capped_until_seen_completed);

// ---------------------------------------------------------------- idempotency

async fn idempotent_submits_happen_at_most_once(store: Store) {
    let (fake, origin) = start_mock().await;
    let proxy = start_proxy(&origin, |c| {
        store.apply(c);
        c.plans.get_mut("default").unwrap().daily_budget_usd = Some(100.0);
    })
    .await;
    let send = |body: Value, key: &'static str| {
        proxy
            .native(Method::POST, &format!("/queue/{EDIT}"))
            .header("idempotency-key", key)
            .json(&body)
            .send()
    };
    let first = send(edit_input(), "order-42").await.unwrap();
    assert_eq!(first.status(), 200);
    assert!(first.headers().get("idempotency-replayed").is_none());
    let first: Value = first.json().await.unwrap();
    let submits = fake
        .received()
        .iter()
        .filter(|r| r.method == Method::POST)
        .count();
    assert_eq!(submits, 1);

    let again = send(edit_input(), "order-42").await.unwrap();
    assert_eq!(again.status(), 200);
    assert_eq!(again.headers()["idempotency-replayed"], "true");
    let again: Value = again.json().await.unwrap();
    assert_eq!(again["request_id"], first["request_id"]);
    assert_eq!(
        again["status_url"], first["status_url"],
        "replays are shaped for the route"
    );
    let submits = fake
        .received()
        .iter()
        .filter(|r| r.method == Method::POST)
        .count();
    assert_eq!(submits, 1, "a replay reached fal");
    let me = proxy.me().await;
    assert_eq!(
        me["budget"]["daily"]["used_usd"], 0.15,
        "a replay was charged: {me}"
    );

    let other = with_prompt("a different prompt for the same key");
    let r = send(other, "order-42").await.unwrap();
    expect_error(r, 422, "idempotency_key_reused").await;
    // The same key from another client is another record.
    let r = http()
        .post(format!("{}/queue/{EDIT}", proxy.url))
        .header("authorization", format!("Bearer {}", proxy.other_key))
        .header("idempotency-key", "order-42")
        .json(&edit_input())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers().get("idempotency-replayed").is_none());
}
both_stores!(idempotency, idempotent_submits_happen_at_most_once);

fn with_prompt(prompt: &str) -> Value {
    let mut input = edit_input();
    input["prompt"] = json!(prompt);
    input
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idempotent_repeat_while_the_first_is_in_flight_is_409() {
    // A fake whose submit answers only when released.
    let release = Arc::new(tokio::sync::Notify::new());
    let gate = release.clone();
    let fake = Router::new().route(
        &format!("/queue/{EDIT}"),
        post(move || {
            let gate = gate.clone();
            async move {
                gate.notified().await;
                axum::Json(json!({"request_id": "slow-1", "status": "IN_QUEUE"}))
            }
        }),
    );
    let origin = serve_router(fake).await;
    let proxy = start_proxy(&origin, |_| {}).await;
    let first = tokio::spawn(
        proxy
            .to_fal(Method::POST, &submit_url())
            .header("idempotency-key", "k1")
            .json(&edit_input())
            .send(),
    );
    let mut conflict = None;
    for _ in 0..100 {
        let r = proxy
            .to_fal(Method::POST, &submit_url())
            .header("idempotency-key", "k1")
            .json(&edit_input())
            .send()
            .await
            .unwrap();
        if r.status() == 409 {
            conflict = Some(r);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    expect_error(
        conflict.expect("no 409 while in flight"),
        409,
        "idempotency_in_flight",
    )
    .await;
    release.notify_one();
    assert_eq!(first.await.unwrap().unwrap().status(), 200);
}

// ---------------------------------------------------------------- budgets

async fn parallel_submits_against_a_budget_admit_exactly_what_it_covers(store: Store) {
    let (fake, origin) = start_mock().await;
    let proxy = start_proxy(&origin, |c| {
        store.apply(c);
        // 3 images at $0.15: 7 parallel submits, exactly 3 fit.
        c.plans.get_mut("default").unwrap().daily_budget_usd = Some(0.45);
    })
    .await;
    let proxy = Arc::new(proxy);
    let mut tasks = Vec::new();
    for _ in 0..7 {
        let proxy = proxy.clone();
        tasks.push(tokio::spawn(async move {
            submit(&proxy, &proxy.client_key).await
        }));
    }
    let mut ok = 0;
    let mut refused = Vec::new();
    for t in tasks {
        let r = t.await.unwrap();
        match r.status().as_u16() {
            200 => ok += 1,
            402 => refused.push(r),
            s => panic!("unexpected {s}"),
        }
    }
    assert_eq!(ok, 3);
    assert_eq!(refused.len(), 4);
    let body = expect_error(refused.pop().unwrap(), 402, "budget_exceeded").await;
    assert_eq!(body["budget"]["period"], "daily");
    assert_eq!(body["budget"]["remaining_usd"], 0.0);
    assert_eq!(body["budget"]["limit_usd"], 0.45);
    assert!(body["budget"]["resets_at"].as_i64().unwrap() > 0);
    let submits = fake
        .received()
        .iter()
        .filter(|r| r.method == Method::POST)
        .count();
    assert_eq!(submits, 3, "refused submits reached fal");
}
both_stores!(
    budget,
    parallel_submits_against_a_budget_admit_exactly_what_it_covers
);

async fn a_submit_fal_rejects_gives_its_reservation_back(store: Store) {
    let calls = Arc::new(AtomicUsize::new(0));
    let seen = calls.clone();
    let fake = Router::new().route(
        &format!("/queue/{EDIT}"),
        post(move || {
            let n = seen.fetch_add(1, Ordering::SeqCst);
            async move {
                if n == 0 {
                    (axum::http::StatusCode::UNPROCESSABLE_ENTITY, axum::Json(json!({"detail": [{"loc": ["body", "prompt"], "msg": "fal says no", "type": "value_error"}]})))
                } else {
                    (axum::http::StatusCode::OK, axum::Json(json!({"request_id": format!("r-{n}"), "status": "IN_QUEUE"})))
                }
            }
        }),
    );
    let origin = serve_router(fake).await;
    let proxy = start_proxy(&origin, |c| {
        store.apply(c);
        c.plans.get_mut("default").unwrap().daily_budget_usd = Some(0.15);
    })
    .await;
    let r = submit(&proxy, &proxy.client_key).await;
    assert_eq!(r.status(), 422, "fal's own 422 passes through");
    // The budget was released: one job still fits.
    assert_eq!(submit(&proxy, &proxy.client_key).await.status(), 200);
    expect_error(
        submit(&proxy, &proxy.client_key).await,
        402,
        "budget_exceeded",
    )
    .await;
}
both_stores!(refund, a_submit_fal_rejects_gives_its_reservation_back);

#[tokio::test]
async fn the_price_table_prices_4k_and_web_search() {
    let (_fake, origin) = start_mock().await;
    let proxy = start_proxy(&origin, |c| {
        c.plans.get_mut("default").unwrap().daily_budget_usd = Some(10.0);
    })
    .await;
    let mut input = edit_input();
    input["resolution"] = json!("4K");
    input["num_images"] = json!(2);
    input["enable_web_search"] = json!(true);
    let r = proxy.submit(&input).await;
    assert_eq!(r.status(), 200);
    let me = proxy.me().await;
    // 2 x $0.30 + $0.015
    assert_eq!(me["budget"]["daily"]["used_usd"], 0.615, "{me}");
}

// ---------------------------------------------------------------- /v1/me

#[tokio::test]
async fn me_tells_a_client_its_plan_limits_budget_and_jobs() {
    let (_fake, origin) = start_mock_with(5.0, 5.0).await;
    let proxy = start_proxy(&origin, |c| {
        let plan = c.plans.get_mut("default").unwrap();
        plan.daily_budget_usd = Some(1.0);
        plan.monthly_budget_usd = Some(20.0);
        plan.max_jobs_in_flight = 3;
    })
    .await;
    assert_eq!(submit(&proxy, &proxy.client_key).await.status(), 200);
    let me = proxy.me().await;
    assert_eq!(me["client_id"], "web");
    assert_eq!(me["kind"], "api_key");
    assert_eq!(me["plan"], "default");
    assert_eq!(me["jobs_in_flight"], 1);
    assert_eq!(me["limits"]["max_jobs_in_flight"], 3);
    assert!(me["limits"]["submit"]["per_minute"].is_number());
    let daily = &me["budget"]["daily"];
    assert_eq!(daily["limit_usd"], 1.0);
    assert_eq!(daily["used_usd"], 0.15);
    assert_eq!(daily["remaining_usd"], 0.85);
    assert_eq!(daily["images_left"], 5);
    assert!(daily["resets_at"].as_i64().unwrap() > 0);
    assert_eq!(me["budget"]["monthly"]["remaining_usd"], 19.85);
    let r = http()
        .get(format!("{}/v1/me", proxy.url))
        .send()
        .await
        .unwrap();
    expect_error(r, 401, "unauthorized").await;
}

// ---------------------------------------------------------------- JWT end to end

#[tokio::test]
async fn jwt_clients_get_their_plan_from_a_claim() {
    use jsonwebtoken::{EncodingKey, Header, encode};
    let (_fake, origin) = start_mock().await;
    let secret = "a-test-hs256-secret-of-decent-length";
    let proxy = start_proxy(&origin, |c| {
        c.auth.jwt = Some(JwtConfig {
            algorithms: vec!["HS256".into()],
            hs256_secret: Some(Secret::new(secret)),
            hs256_secret_file: None,
            jwks_url: None,
            jwks_cache_secs: 3600.0,
            jwks_min_refresh_secs: 30.0,
            issuer: "https://login.example.com/".into(),
            audience: "fal-proxy".into(),
            leeway_secs: 5,
            client_id_claim: "sub".into(),
            plan_claim: "plan".into(),
            default_plan: "default".into(),
        });
        let mut pro = c.plans["default"].clone();
        pro.daily_budget_usd = Some(99.0);
        c.plans.insert("pro".into(), pro);
    })
    .await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let token = |claims: Value| {
        encode(
            &Header::default(),
            &claims,
            &EncodingKey::from_secret(secret.as_bytes()),
        )
        .unwrap()
    };
    let good = token(
        json!({"sub": "user-17", "plan": "pro", "iss": "https://login.example.com/", "aud": "fal-proxy", "exp": now + 600}),
    );
    for scheme in ["Bearer", "Key"] {
        let me: Value = http()
            .get(format!("{}/v1/me", proxy.url))
            .header("authorization", format!("{scheme} {good}"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(me["client_id"], "jwt:user-17", "JWT ids are namespaced");
        assert_eq!(me["kind"], "jwt");
        assert_eq!(me["plan"], "pro");
        assert_eq!(me["budget"]["daily"]["limit_usd"], 99.0);
    }
    let r = http()
        .post(proxy.compat())
        .header("x-fal-target-url", submit_url())
        .header("authorization", format!("Key {good}"))
        .json(&edit_input())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let expired = token(
        json!({"sub": "user-17", "iss": "https://login.example.com/", "aud": "fal-proxy", "exp": now - 600}),
    );
    let wrong_aud = token(
        json!({"sub": "user-17", "iss": "https://login.example.com/", "aud": "other", "exp": now + 600}),
    );
    for bad in [expired, wrong_aud] {
        let r = http()
            .get(format!("{}/v1/me", proxy.url))
            .header("authorization", format!("Bearer {bad}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401);
        assert!(!r.text().await.unwrap().contains(&bad));
    }
}

// ---------------------------------------------------------------- restart

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_is_lost_across_a_restart_on_the_same_data_file() {
    let (fake, origin) = start_mock().await;
    let dir = temp_dir("clients-restart");
    let (mut config, web, mobile) = test_config(&origin);
    config.store.backend = StoreBackend::Sqlite;
    config.store.data_dir = dir.path().to_owned();
    config.plans.get_mut("default").unwrap().daily_budget_usd = Some(10.0);
    let first = start_proxy_with(config.clone(), web.clone(), mobile.clone()).await;
    let submitted: Value = first
        .native(Method::POST, &format!("/queue/{EDIT}"))
        .header("idempotency-key", "restart-1")
        .json(&edit_input())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = submitted["request_id"].as_str().unwrap().to_owned();
    drop(first);
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;

    let second = start_proxy_with(config, web.clone(), mobile).await;
    let r = second
        .native(
            Method::GET,
            &format!("/queue/fal-ai/nano-banana-pro/requests/{id}/status"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "the job's owner was forgotten");
    let me = second.me().await;
    assert_eq!(me["budget"]["daily"]["used_usd"], 0.15, "{me}");
    let submits = fake
        .received()
        .iter()
        .filter(|r| r.method == Method::POST)
        .count();
    let replay = second
        .native(Method::POST, &format!("/queue/{EDIT}"))
        .header("idempotency-key", "restart-1")
        .json(&edit_input())
        .send()
        .await
        .unwrap();
    assert_eq!(replay.headers()["idempotency-replayed"], "true");
    let replay: Value = replay.json().await.unwrap();
    assert_eq!(replay["request_id"], id.as_str());
    assert_eq!(
        fake.received()
            .iter()
            .filter(|r| r.method == Method::POST)
            .count(),
        submits
    );
}
