//! Who is calling: client API keys (hashed, compared in constant time) or anonymous.
//!
//! Clients send `Authorization: Bearer <key>` or `Authorization: Key <key>` (the latter is what
//! `@fal-ai/client` sends when an app sets `credentials`). The header is consumed here and never
//! forwarded upstream.

use axum::http::{HeaderMap, header};
use sha2::{Digest, Sha256};
use std::sync::Arc;
use subtle::ConstantTimeEq;

use crate::config::AuthConfig;
use crate::error::ApiError;

/// The authenticated caller of one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The client id (an API key's configured id, or `anonymous`).
    pub id: Arc<str>,
    /// How the caller was identified.
    pub kind: PrincipalKind,
}

/// How a caller was identified.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PrincipalKind {
    /// A configured API key.
    ApiKey,
    /// No credentials, admitted because anonymous access is on.
    Anonymous,
}

/// Checks credentials against the configured keys.
pub struct Authenticator {
    keys: Vec<(Arc<str>, [u8; 32])>,
    anonymous: bool,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator")
            .field("keys", &self.keys.len())
            .field("anonymous", &self.anonymous)
            .finish()
    }
}

impl Authenticator {
    /// Builds from config; `anonymous` overrides `auth.anonymous` (mock mode turns it on).
    pub fn new(config: &AuthConfig, anonymous: bool) -> Self {
        let keys = config
            .api_keys
            .iter()
            .filter_map(|k| {
                let mut hash = [0u8; 32];
                hex::decode_to_slice(k.key_sha256.expose().to_ascii_lowercase(), &mut hash)
                    .ok()
                    .map(|()| (Arc::from(k.id.as_str()), hash))
            })
            .collect();
        Self { keys, anonymous }
    }

    /// Identifies the caller of a request, or refuses it with 401.
    pub fn authenticate(&self, headers: &HeaderMap) -> Result<Principal, ApiError> {
        let Some(value) = headers.get(header::AUTHORIZATION) else {
            return if self.anonymous {
                Ok(Principal {
                    id: Arc::from("anonymous"),
                    kind: PrincipalKind::Anonymous,
                })
            } else {
                Err(ApiError::Unauthorized {
                    code: "unauthorized",
                    message: "credentials are required: send Authorization: Bearer <client key>"
                        .into(),
                })
            };
        };
        let invalid = || ApiError::Unauthorized {
            code: "invalid_credentials",
            message: "the credentials are not valid".into(),
        };
        let value = value.to_str().map_err(|_| invalid())?;
        let (scheme, token) = value.trim().split_once(' ').ok_or_else(invalid)?;
        if !scheme.eq_ignore_ascii_case("bearer") && !scheme.eq_ignore_ascii_case("key") {
            return Err(invalid());
        }
        let token = token.trim();
        if token.is_empty() {
            return Err(invalid());
        }
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        // Compare against every key without stopping early, so timing says nothing about which
        // (or whether any) key came close.
        let mut found: Option<&Arc<str>> = None;
        for (id, hash) in &self.keys {
            if bool::from(hash.ct_eq(&digest)) {
                found = Some(id);
            }
        }
        found
            .map(|id| Principal {
                id: id.clone(),
                kind: PrincipalKind::ApiKey,
            })
            .ok_or_else(invalid)
    }
}

/// A new random client key (256 bits, URL-safe) and the hex SHA-256 to put in config.
pub fn generate_key() -> (String, String) {
    use base64::Engine;
    let bytes: [u8; 32] = rand::random();
    let key = format!(
        "fpk_{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    );
    let hash = hex::encode(Sha256::digest(key.as_bytes()));
    (key, hash)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::config::{ApiKeyConfig, Secret};
    use axum::http::HeaderValue;

    fn auth(anonymous: bool) -> (Authenticator, String) {
        let (key, hash) = generate_key();
        let config = AuthConfig {
            anonymous,
            jwt: None,
            api_keys: vec![ApiKeyConfig {
                id: "web".into(),
                key_sha256: Secret::new(hash),
                plan: "default".into(),
            }],
        };
        (Authenticator::new(&config, anonymous), key)
    }

    fn with(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, HeaderValue::from_str(value).unwrap());
        h
    }

    #[test]
    fn bearer_and_key_schemes_are_accepted() {
        let (a, key) = auth(false);
        for v in [
            format!("Bearer {key}"),
            format!("Key {key}"),
            format!("key {key}"),
        ] {
            assert_eq!(a.authenticate(&with(&v)).unwrap().id.as_ref(), "web");
        }
    }

    #[test]
    fn missing_wrong_and_malformed_are_401() {
        let (a, key) = auth(false);
        assert_eq!(
            a.authenticate(&HeaderMap::new()).unwrap_err().code(),
            "unauthorized"
        );
        for v in [
            "Bearer nope",
            "Basic abc",
            "Bearer",
            &format!("Token {key}"),
            "Bearer  ",
        ] {
            assert_eq!(
                a.authenticate(&with(v)).unwrap_err().code(),
                "invalid_credentials"
            );
        }
    }

    #[test]
    fn anonymous_only_without_credentials() {
        let (a, _) = auth(true);
        assert_eq!(
            a.authenticate(&HeaderMap::new()).unwrap().kind,
            PrincipalKind::Anonymous
        );
        // A wrong key never degrades to anonymous.
        assert!(a.authenticate(&with("Bearer wrong")).is_err());
    }

    #[test]
    fn generated_keys_are_distinct_and_hash_to_64_hex() {
        let (k1, h1) = generate_key();
        let (k2, _) = generate_key();
        assert_ne!(k1, k2);
        assert_eq!(h1.len(), 64);
        assert!(format!("{:?}", auth(false).0).contains("keys: 1"));
    }
}
