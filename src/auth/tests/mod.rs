//! Tests of client identity: API keys, JWTs (HS256 and JWKS-served keys), client addresses.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod api_keys;
mod client_addr;
mod hs256;
mod jwks_keys;
mod jwks_server;

use axum::http::{HeaderMap, HeaderValue, header};
use base64::Engine;
use jsonwebtoken::{EncodingKey, Header};
use serde_json::{Value, json};
use std::net::SocketAddr;

use super::{Authenticator, Principal};
use crate::config::{Config, JwtConfig, Secret};
use crate::error::ApiError;

pub(super) const ISSUER: &str = "https://id.example.com/";
pub(super) const AUDIENCE: &str = "fal-proxy";
pub(super) const SECRET: &str = "test-secret-0123456789abcdef-0123456789";

/// The default configuration plus a `pro` plan.
pub(super) fn config() -> Config {
    let mut config = crate::config::defaults().unwrap();
    let pro = config.plans["default"].clone();
    config.plans.insert("pro".into(), pro);
    config
}

/// JWT settings accepting `algorithms`, with the test secret and no JWKS.
pub(super) fn jwt_config(algorithms: &[&str]) -> JwtConfig {
    JwtConfig {
        algorithms: algorithms.iter().map(|a| a.to_string()).collect(),
        hs256_secret: Some(Secret::new(SECRET)),
        hs256_secret_file: None,
        jwks_url: None,
        jwks_cache_secs: 3600.0,
        jwks_min_refresh_secs: 30.0,
        issuer: ISSUER.into(),
        audience: AUDIENCE.into(),
        leeway_secs: 5,
        client_id_claim: "sub".into(),
        plan_claim: "plan".into(),
        default_plan: "default".into(),
    }
}

/// An authenticator accepting HS256 tokens signed with [`SECRET`].
pub(super) fn hs256_auth() -> Authenticator {
    let mut config = config();
    config.auth.jwt = Some(jwt_config(&["HS256"]));
    Authenticator::new(&config, false).unwrap()
}

pub(super) fn now() -> u64 {
    jsonwebtoken::get_current_timestamp()
}

/// Valid claims for `sub`, expiring in ten minutes.
pub(super) fn claims(sub: &str) -> Value {
    json!({ "sub": sub, "iss": ISSUER, "aud": AUDIENCE, "exp": now() + 600, "iat": now() })
}

/// Signs `claims` with `key` under `header`.
pub(super) fn sign(header: &Header, claims: &Value, key: &EncodingKey) -> String {
    jsonwebtoken::encode(header, claims, key).unwrap()
}

/// An HS256 token over `claims` signed with [`SECRET`].
pub(super) fn hs256(claims: &Value) -> String {
    sign(
        &Header::default(),
        claims,
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
}

/// Base64url without padding, as JWTs and JWKs use.
pub(super) fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// Headers carrying `Authorization: Bearer <credential>`.
pub(super) fn bearer(credential: &str) -> HeaderMap {
    with_authorization(&format!("Bearer {credential}"))
}

/// Headers carrying `Authorization: <value>`.
pub(super) fn with_authorization(value: &str) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(header::AUTHORIZATION, HeaderValue::from_str(value).unwrap());
    headers
}

/// A socket peer from the documentation range.
pub(super) fn peer() -> SocketAddr {
    SocketAddr::from(([203, 0, 113, 7], 50_000))
}

/// Authenticates a bearer `token`.
pub(super) async fn check(auth: &Authenticator, token: &str) -> Result<Principal, ApiError> {
    auth.authenticate(&bearer(token), peer()).await
}

/// Asserts that `token` is refused with 401 `code` and a message containing `fragment`, and
/// that the message quotes no part of the token.
pub(super) async fn refused(auth: &Authenticator, token: &str, code: &str, fragment: &str) {
    let error = check(auth, token).await.unwrap_err();
    let message = error.to_string();
    assert_eq!(error.status(), 401, "{message}");
    assert_eq!(error.code(), code, "{message}");
    assert!(message.contains(fragment), "`{message}` lacks `{fragment}`");
    for segment in token.split('.').filter(|s| s.len() > 8) {
        assert!(!message.contains(segment), "`{message}` quotes the token");
    }
}
