//! A JWKS server on 127.0.0.1:0 that counts its fetches, and key pairs made in the test.

use super::*;
use axum::Json;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use jsonwebtoken::Algorithm;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

/// A JWKS endpoint whose key set can be swapped or made to fail.
pub(super) struct JwksServer {
    pub url: String,
    fetches: Arc<AtomicUsize>,
    keys: Arc<Mutex<Value>>,
    failing: Arc<AtomicBool>,
}

impl JwksServer {
    /// Serves `{"keys": jwks}`; each answer takes 50 ms, so concurrent callers overlap.
    pub async fn start(jwks: Vec<Value>) -> Self {
        let fetches = Arc::new(AtomicUsize::new(0));
        let keys = Arc::new(Mutex::new(json!({ "keys": jwks })));
        let failing = Arc::new(AtomicBool::new(false));
        let (f, k, x) = (fetches.clone(), keys.clone(), failing.clone());
        let app = axum::Router::new().route(
            "/jwks.json",
            axum::routing::get(move || {
                let (f, k, x) = (f.clone(), k.clone(), x.clone());
                async move {
                    f.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    if x.load(Ordering::SeqCst) {
                        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
                    }
                    let body = k.lock().unwrap().clone();
                    Json(body).into_response()
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self {
            url: format!("http://{addr}/jwks.json"),
            fetches,
            keys,
            failing,
        }
    }

    /// Replaces the served key set.
    pub fn set_keys(&self, jwks: Vec<Value>) {
        *self.keys.lock().unwrap() = json!({ "keys": jwks });
    }

    /// Makes every fetch answer 500 (or not).
    pub fn set_failing(&self, failing: bool) {
        self.failing.store(failing, Ordering::SeqCst);
    }

    /// How many times the set was requested.
    pub fn fetches(&self) -> usize {
        self.fetches.load(Ordering::SeqCst)
    }

    /// An authenticator using this server for `algorithms`.
    pub fn auth(
        &self,
        algorithms: &[&str],
        cache_secs: f64,
        min_refresh_secs: f64,
    ) -> Arc<Authenticator> {
        jwks_auth(&self.url, algorithms, cache_secs, min_refresh_secs)
    }
}

/// An authenticator fetching keys from `url`.
pub(super) fn jwks_auth(
    url: &str,
    algorithms: &[&str],
    cache_secs: f64,
    min_refresh_secs: f64,
) -> Arc<Authenticator> {
    let mut config = config();
    let mut jwt = jwt_config(algorithms);
    jwt.jwks_url = Some(url.to_string());
    jwt.jwks_cache_secs = cache_secs;
    jwt.jwks_min_refresh_secs = min_refresh_secs;
    config.auth.jwt = Some(jwt);
    Arc::new(Authenticator::new(&config, false).unwrap())
}

/// A private key for signing test tokens and the public JWK that verifies them.
pub(super) struct TestKey {
    pub alg: Algorithm,
    pub kid: String,
    pub encoding: EncodingKey,
    pub jwk: Value,
}

impl TestKey {
    /// A token over `claims` with this key's `alg` and `kid`.
    pub fn sign(&self, claims: &Value) -> String {
        self.sign_as(Some(&self.kid), claims)
    }

    /// A token over `claims` with this key's `alg` and the given `kid` (or none).
    pub fn sign_as(&self, kid: Option<&str>, claims: &Value) -> String {
        let mut header = Header::new(self.alg);
        header.kid = kid.map(str::to_string);
        super::sign(&header, claims, &self.encoding)
    }
}

/// Two RSA key pairs, made once per test run (RSA key generation is slow).
fn rsa_pair(index: usize) -> &'static rsa::RsaPrivateKey {
    static KEYS: OnceLock<Vec<rsa::RsaPrivateKey>> = OnceLock::new();
    let keys = KEYS.get_or_init(|| {
        (0..2)
            .map(|_| rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048).unwrap())
            .collect()
    });
    &keys[index % keys.len()]
}

/// RSA key number `index` (0 or 1) for RS256 under `kid`.
pub(super) fn rsa_key(index: usize, kid: &str) -> TestKey {
    use rsa::pkcs1::EncodeRsaPrivateKey;
    use rsa::traits::PublicKeyParts;
    let key = rsa_pair(index);
    let der = key.to_pkcs1_der().unwrap();
    TestKey {
        alg: Algorithm::RS256,
        kid: kid.into(),
        encoding: EncodingKey::from_rsa_der(der.as_bytes()),
        jwk: json!({
            "kty": "RSA", "use": "sig", "alg": "RS256", "kid": kid,
            "n": b64(&key.n().to_bytes_be()), "e": b64(&key.e().to_bytes_be()),
        }),
    }
}

/// A fresh P-256 key for ES256 under `kid`.
pub(super) fn p256_key(kid: &str) -> TestKey {
    use p256::elliptic_curve::sec1::ToEncodedPoint;
    use p256::pkcs8::EncodePrivateKey;
    let secret = p256::SecretKey::from_slice(&rand::random::<[u8; 32]>()).unwrap();
    let der = secret.to_pkcs8_der().unwrap();
    let point = secret.public_key().to_encoded_point(false);
    TestKey {
        alg: Algorithm::ES256,
        kid: kid.into(),
        encoding: EncodingKey::from_ec_der(der.as_bytes()),
        jwk: json!({
            "kty": "EC", "crv": "P-256", "kid": kid,
            "x": b64(point.x().unwrap()), "y": b64(point.y().unwrap()),
        }),
    }
}

/// A fresh Ed25519 key for EdDSA under `kid`.
pub(super) fn ed25519_key(kid: &str) -> TestKey {
    use ed25519_dalek::pkcs8::EncodePrivateKey;
    let secret = ed25519_dalek::SigningKey::from_bytes(&rand::random::<[u8; 32]>());
    let der = secret.to_pkcs8_der().unwrap();
    TestKey {
        alg: Algorithm::EdDSA,
        kid: kid.into(),
        encoding: EncodingKey::from_ed_der(der.as_bytes()),
        jwk: json!({
            "kty": "OKP", "crv": "Ed25519", "use": "sig", "kid": kid,
            "x": b64(secret.verifying_key().as_bytes()),
        }),
    }
}
