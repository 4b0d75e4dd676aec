//! JSON Web Tokens from the app's own identity provider.
//!
//! A token is accepted only if its header's `alg` is one of the configured algorithms and fits
//! the key it is checked with (HS256 only with the shared secret, RS256/ES256/EdDSA only with a
//! JWKS key of that type), its signature verifies, `iss` and `aud` are the configured ones, and
//! `exp` (required) and `nbf` (when present) hold within the leeway. Refusals say what was wrong
//! with the token, never what the token holds.

use base64::Engine;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use super::jwks::JwksCache;
use super::refusal::{self, invalid};
use crate::config::{ConfigError, JwtConfig};
use crate::error::ApiError;

/// The longest token looked at, in bytes.
const MAX_TOKEN_BYTES: usize = 16 * 1024;
/// The longest client id a token may carry.
const MAX_CLIENT_ID: usize = 256;
/// The shortest HS256 secret (RFC 7518 §3.2: at least the hash size).
const MIN_HS256_SECRET: usize = 32;

/// Verifies tokens against the configuration; holds the HS256 key and the JWKS cache.
pub(super) struct JwtVerifier {
    validations: Vec<(Algorithm, Validation)>,
    hs256: Option<DecodingKey>,
    jwks: Option<JwksCache>,
    client_id_claim: String,
    plan_claim: String,
    default_plan: Arc<str>,
    plans: BTreeMap<String, Arc<str>>,
}

impl std::fmt::Debug for JwtVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let algorithms: Vec<Algorithm> = self.validations.iter().map(|(a, _)| *a).collect();
        f.debug_struct("JwtVerifier")
            .field("algorithms", &algorithms)
            .field("hs256_secret", &self.hs256.as_ref().map(|_| "*****"))
            .field("jwks", &self.jwks)
            .field("client_id_claim", &self.client_id_claim)
            .field("plan_claim", &self.plan_claim)
            .field("default_plan", &self.default_plan)
            .finish()
    }
}

impl JwtVerifier {
    /// Builds from config, reading the HS256 secret file if one is named. No network.
    pub(super) fn new(
        config: &JwtConfig,
        plans: &BTreeMap<String, Arc<str>>,
    ) -> Result<Self, ConfigError> {
        let mut validations = Vec::new();
        let mut hs256 = None;
        let mut jwks = None;
        for (i, name) in config.algorithms.iter().enumerate() {
            let alg = match name.as_str() {
                "HS256" => Algorithm::HS256,
                "RS256" => Algorithm::RS256,
                "ES256" => Algorithm::ES256,
                "EdDSA" => Algorithm::EdDSA,
                other => {
                    return Err(ConfigError::invalid(
                        format!("auth.jwt.algorithms[{i}]"),
                        format!("`{other}` is not supported (HS256, RS256, ES256, EdDSA)"),
                    ));
                }
            };
            if alg == Algorithm::HS256 {
                hs256 = Some(DecodingKey::from_secret(&hs256_secret(config)?));
            } else if jwks.is_none() {
                let url = config.jwks_url.as_deref().ok_or_else(|| {
                    ConfigError::invalid("auth.jwt.jwks_url", format!("{name} needs a jwks_url"))
                })?;
                let cache = JwksCache::new(
                    url,
                    seconds(config.jwks_cache_secs, 3600),
                    seconds(config.jwks_min_refresh_secs, 30),
                )
                .map_err(|m| ConfigError::invalid("auth.jwt.jwks_url", m))?;
                jwks = Some(cache);
            }
            let mut validation = Validation::new(alg);
            validation.algorithms = vec![alg];
            validation.leeway = config.leeway_secs;
            validation.validate_nbf = true;
            validation.set_issuer(&[&config.issuer]);
            validation.set_audience(&[&config.audience]);
            validation.set_required_spec_claims(&["exp", "iss", "aud"]);
            validations.push((alg, validation));
        }
        let default_plan = plans.get(&config.default_plan).cloned().ok_or_else(|| {
            ConfigError::invalid(
                "auth.jwt.default_plan",
                format!("no plan named `{}` under [plans]", config.default_plan),
            )
        })?;
        Ok(Self {
            validations,
            hs256,
            jwks,
            client_id_claim: config.client_id_claim.clone(),
            plan_claim: config.plan_claim.clone(),
            default_plan,
            plans: plans.clone(),
        })
    }

    /// Fetches the JWKS now, if one is configured (optional warm-up; failures are logged).
    pub(super) async fn prefetch(&self) {
        if let Some(jwks) = &self.jwks {
            jwks.prefetch().await;
        }
    }

    /// The client id (`jwt:<claim>`) and plan of a valid token, or why it is refused.
    pub(super) async fn verify(&self, token: &str) -> Result<(Arc<str>, Arc<str>), ApiError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(invalid("the token is too long"));
        }
        let (alg, kid) = self.header(token)?;
        let validation = self
            .validations
            .iter()
            .find_map(|(a, v)| (*a == alg).then_some(v))
            .ok_or_else(|| self.not_accepted())?;
        let jwks_key;
        let key = match (alg, &self.hs256, &self.jwks) {
            (Algorithm::HS256, Some(secret), _) => secret,
            (Algorithm::HS256, None, _) | (_, _, None) => return Err(self.not_accepted()),
            (_, _, Some(jwks)) => {
                jwks_key = jwks
                    .key(kid.as_deref(), alg)
                    .await
                    .map_err(refusal::key_error)?;
                &jwks_key
            }
        };
        let claims = jsonwebtoken::decode::<Map<String, Value>>(token, key, validation)
            .map_err(|e| refusal::decode_error(e.kind()))?
            .claims;
        let id = self.client_id(&claims)?;
        let plan = self.plan(&claims)?;
        Ok((Arc::from(format!("jwt:{id}")), plan))
    }

    /// The header's algorithm (refused unless configured) and key id.
    fn header(&self, token: &str) -> Result<(Algorithm, Option<String>), ApiError> {
        let malformed = || invalid("the token is malformed");
        let segment = token.split('.').next().ok_or_else(malformed)?;
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(segment)
            .map_err(|_| malformed())?;
        let Ok(Value::Object(header)) = serde_json::from_slice::<Value>(&bytes) else {
            return Err(malformed());
        };
        let alg = header
            .get("alg")
            .and_then(Value::as_str)
            .ok_or_else(|| invalid("the token's header names no algorithm"))?;
        if alg.eq_ignore_ascii_case("none") {
            return Err(invalid("unsigned tokens (alg: none) are not accepted"));
        }
        if header.contains_key("crit") {
            return Err(invalid(
                "the token requires header extensions (crit) this proxy does not support",
            ));
        }
        let alg = Algorithm::from_str(alg)
            .ok()
            .filter(|a| self.validations.iter().any(|(v, _)| v == a))
            .ok_or_else(|| self.not_accepted())?;
        let kid = match header.get("kid") {
            None => None,
            Some(Value::String(kid)) => Some(kid.clone()),
            Some(_) => return Err(malformed()),
        };
        Ok((alg, kid))
    }

    fn not_accepted(&self) -> ApiError {
        let names: Vec<String> = self
            .validations
            .iter()
            .map(|(a, _)| format!("{a:?}"))
            .collect();
        invalid(format!(
            "the token's algorithm is not accepted here (accepted: {})",
            names.join(", ")
        ))
    }

    fn client_id(&self, claims: &Map<String, Value>) -> Result<String, ApiError> {
        let claim = &self.client_id_claim;
        let id = match claims.get(claim) {
            Some(Value::String(s)) if !s.trim().is_empty() => s.clone(),
            Some(Value::Number(n)) => n.to_string(),
            _ => {
                return Err(invalid(format!(
                    "the token has no usable `{claim}` claim (the client id)"
                )));
            }
        };
        if id.len() > MAX_CLIENT_ID || id.chars().any(char::is_control) {
            return Err(invalid(format!(
                "the token's `{claim}` claim is longer than {MAX_CLIENT_ID} bytes or holds control characters"
            )));
        }
        Ok(id)
    }

    fn plan(&self, claims: &Map<String, Value>) -> Result<Arc<str>, ApiError> {
        let claim = &self.plan_claim;
        match claims.get(claim) {
            None | Some(Value::Null) => Ok(self.default_plan.clone()),
            Some(Value::String(name)) => self.plans.get(name).cloned().ok_or_else(|| {
                invalid(format!(
                    "the token's `{claim}` claim names a plan this proxy does not have"
                ))
            }),
            Some(_) => Err(invalid(format!(
                "the token's `{claim}` claim is not a plan name"
            ))),
        }
    }
}

/// The HS256 secret from `hs256_secret` (preferred: it may come from the environment) or the
/// file `hs256_secret_file`, without its trailing newline.
fn hs256_secret(config: &JwtConfig) -> Result<Vec<u8>, ConfigError> {
    let mut secret = match (&config.hs256_secret, &config.hs256_secret_file) {
        (Some(secret), _) => secret.expose().as_bytes().to_vec(),
        (None, Some(path)) => std::fs::read(path).map_err(|e| ConfigError::File {
            path: path.display().to_string(),
            message: format!("cannot read the HS256 secret: {e}"),
        })?,
        (None, None) => {
            return Err(ConfigError::invalid(
                "auth.jwt.hs256_secret",
                "HS256 needs hs256_secret (or FAL_PROXY_AUTH__JWT__HS256_SECRET) or hs256_secret_file",
            ));
        }
    };
    while secret.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
        secret.pop();
    }
    if secret.len() < MIN_HS256_SECRET {
        return Err(ConfigError::invalid(
            "auth.jwt.hs256_secret",
            format!(
                "the HS256 secret must be at least {MIN_HS256_SECRET} bytes (e.g. `openssl rand -base64 48`)"
            ),
        ));
    }
    Ok(secret)
}

fn seconds(value: f64, fallback: u64) -> Duration {
    Duration::try_from_secs_f64(value).unwrap_or(Duration::from_secs(fallback))
}
