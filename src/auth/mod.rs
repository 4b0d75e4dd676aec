//! Who is calling: a client API key (hashed, compared in constant time), a JWT from the app's
//! own identity provider, or an anonymous client keyed by its address. Every caller resolves to
//! a plan (a named set of limits).
//!
//! Clients send `Authorization: Bearer <credential>` or `Authorization: Key <credential>` (the
//! latter is what `@fal-ai/client` sends when an app sets `credentials`). A credential shaped
//! like a JWT (three base64url segments) is verified as a JWT when `auth.jwt` is configured;
//! anything else is an API key. The header is consumed here and never forwarded upstream.
//!
//! Principal ids are namespaced so that one kind of caller can never pose as another: API keys
//! use their configured id, JWTs `jwt:<client id claim>`, anonymous clients `ip:<address>`.

mod api_key;
mod client_ip;
mod jwks;
mod jwt;
mod key_set;
mod refusal;
#[cfg(test)]
mod tests;

pub use api_key::generate_key;
pub use client_ip::{anonymous_id, client_ip};

use axum::http::{HeaderMap, header};
use ipnet::IpNet;
use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use crate::config::{Config, ConfigError};
use crate::error::ApiError;
use api_key::ApiKeys;
use jwt::JwtVerifier;
use refusal::invalid;

/// The plan of anonymous clients.
const ANONYMOUS_PLAN: &str = "anonymous";

/// The authenticated caller of one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The client id: an API key's configured id, `jwt:<client id claim>` for a JWT, or
    /// `ip:<address>` (`ip:<prefix>/64` for IPv6) for an anonymous client.
    pub id: Arc<str>,
    /// How the caller was identified.
    pub kind: PrincipalKind,
    /// The name of the caller's plan (a key of `[plans]`).
    pub plan: Arc<str>,
}

/// How a caller was identified.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PrincipalKind {
    /// A configured API key.
    ApiKey,
    /// A JWT from the app's identity provider.
    Jwt,
    /// No credentials, admitted because anonymous access is on.
    Anonymous,
}

/// Checks credentials against the configured keys and identity provider.
pub struct Authenticator {
    keys: ApiKeys,
    jwt: Option<JwtVerifier>,
    anonymous: bool,
    anonymous_plan: Arc<str>,
    trusted_proxies: Vec<IpNet>,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator")
            .field("keys", &self.keys.len())
            .field("jwt", &self.jwt)
            .field("anonymous", &self.anonymous)
            .field("trusted_proxies", &self.trusted_proxies)
            .finish()
    }
}

impl Authenticator {
    /// Builds from config; `anonymous` overrides `auth.anonymous` (mock mode turns it on).
    /// Reads the HS256 secret file if one is configured; the JWKS is fetched on first use (or
    /// by [`Authenticator::prefetch`]), never here.
    pub fn new(config: &Config, anonymous: bool) -> Result<Self, ConfigError> {
        let plans: BTreeMap<String, Arc<str>> = config
            .plans
            .keys()
            .map(|name| (name.clone(), Arc::from(name.as_str())))
            .collect();
        let keys = ApiKeys::new(&config.auth.api_keys, &plans)?;
        let jwt = match &config.auth.jwt {
            Some(jwt) => Some(JwtVerifier::new(jwt, &plans)?),
            None => None,
        };
        let mut trusted_proxies = Vec::new();
        for (i, cidr) in config.network.trusted_proxies.iter().enumerate() {
            let net = match cidr.parse::<IpNet>() {
                Ok(net) => net,
                Err(_) => cidr.parse::<IpAddr>().map(IpNet::from).map_err(|_| {
                    ConfigError::invalid(
                        format!("network.trusted_proxies[{i}]"),
                        format!("`{cidr}` is not an IP address or CIDR"),
                    )
                })?,
            };
            trusted_proxies.push(net);
        }
        let anonymous_plan = plans
            .get(ANONYMOUS_PLAN)
            .cloned()
            .unwrap_or_else(|| Arc::from(ANONYMOUS_PLAN));
        Ok(Self {
            keys,
            jwt,
            anonymous,
            anonymous_plan,
            trusted_proxies,
        })
    }

    /// Fetches the identity provider's JWKS now, if one is configured, so the first token does
    /// not wait for it. Optional; a failure is logged and the fetch is retried on demand.
    pub async fn prefetch(&self) {
        if let Some(jwt) = &self.jwt {
            jwt.prefetch().await;
        }
    }

    /// Identifies the caller of a request from its headers and socket peer, or refuses it:
    /// 401 for missing or bad credentials, 503 `overloaded` when a token needs the identity
    /// provider's keys and they cannot be fetched.
    pub async fn authenticate(
        &self,
        headers: &HeaderMap,
        peer: SocketAddr,
    ) -> Result<Principal, ApiError> {
        let Some(value) = headers.get(header::AUTHORIZATION) else {
            return if self.anonymous {
                let ip = client_ip(peer, headers, &self.trusted_proxies);
                Ok(Principal {
                    id: Arc::from(anonymous_id(ip)),
                    kind: PrincipalKind::Anonymous,
                    plan: self.anonymous_plan.clone(),
                })
            } else {
                Err(ApiError::Unauthorized {
                    code: "unauthorized",
                    message: "credentials are required: send Authorization: Bearer <client key>"
                        .into(),
                })
            };
        };
        let bad = || invalid("the credentials are not valid");
        let value = value.to_str().map_err(|_| bad())?;
        let value = value.trim();
        let space = memchr::memchr(b' ', value.as_bytes()).ok_or_else(bad)?;
        let (scheme, token) = (&value[..space], &value[space + 1..]);
        if !scheme.eq_ignore_ascii_case("bearer") && !scheme.eq_ignore_ascii_case("key") {
            return Err(bad());
        }
        let token = token.trim();
        if token.is_empty() {
            return Err(bad());
        }
        if let Some(jwt) = &self.jwt
            && looks_like_jwt(token)
        {
            let (id, plan) = jwt.verify(token).await?;
            return Ok(Principal {
                id,
                kind: PrincipalKind::Jwt,
                plan,
            });
        }
        let (id, plan) = self.keys.find(token).ok_or_else(bad)?;
        Ok(Principal {
            id,
            kind: PrincipalKind::ApiKey,
            plan,
        })
    }
}

/// Three dot-separated base64url segments; the signature may be empty (so that `alg: none`
/// tokens get their own refusal rather than "not a valid key").
fn looks_like_jwt(token: &str) -> bool {
    let mut segments = token.split('.');
    let b64url = |s: &str| {
        s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    match (
        segments.next(),
        segments.next(),
        segments.next(),
        segments.next(),
    ) {
        (Some(h), Some(p), Some(s), None) => {
            !h.is_empty() && !p.is_empty() && b64url(h) && b64url(p) && b64url(s)
        }
        _ => false,
    }
}
