//! A JWKS document as this proxy uses it: the signature keys it can verify with, and the
//! lookup of the key for a token's `alg` and `kid`. Pure; fetching and caching are in `jwks`.

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};

/// What kind of public key an algorithm needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum KeyKind {
    /// RSA, for RS256.
    Rsa,
    /// EC on P-256, for ES256.
    P256,
    /// OKP on Ed25519, for EdDSA.
    Ed25519,
}

impl KeyKind {
    /// The key kind `alg` verifies with; None for algorithms not served from a JWKS.
    pub(super) fn for_alg(alg: Algorithm) -> Option<Self> {
        match alg {
            Algorithm::RS256 => Some(Self::Rsa),
            Algorithm::ES256 => Some(Self::P256),
            Algorithm::EdDSA => Some(Self::Ed25519),
            _ => None,
        }
    }
}

/// Why no key could be found for a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum KeyError {
    /// The set holds no key with the token's `kid` (or, without a `kid`, none of its kind).
    Unknown,
    /// The key named by `kid` is not of the kind the token's algorithm needs.
    Mismatch,
    /// The token names no `kid` and several keys would do.
    Ambiguous,
    /// The set could not be fetched (and no usable key is held).
    Unavailable,
}

/// One usable public key from the set.
pub(super) struct Key {
    kid: Option<String>,
    alg: Option<Algorithm>,
    kind: KeyKind,
    key: DecodingKey,
}

/// The signature keys of a JWKS document. Keys this proxy cannot use (encryption keys,
/// symmetric keys, other curves, unknown types) are skipped, not fatal.
pub(super) fn parse_jwks(body: &[u8]) -> Result<Vec<Key>, String> {
    let doc: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| format!("the JWKS is not JSON: {e}"))?;
    let entries = doc
        .get("keys")
        .and_then(serde_json::Value::as_array)
        .ok_or("the JWKS has no `keys` array")?;
    Ok(entries
        .iter()
        .filter_map(|entry| serde_json::from_value::<Jwk>(entry.clone()).ok())
        .filter_map(|jwk| usable_key(&jwk))
        .collect())
}

fn usable_key(jwk: &Jwk) -> Option<Key> {
    if matches!(
        jwk.common.public_key_use,
        Some(PublicKeyUse::Encryption | PublicKeyUse::Other(_))
    ) {
        return None;
    }
    let kind = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => KeyKind::Rsa,
        AlgorithmParameters::EllipticCurve(p) if p.curve == EllipticCurve::P256 => KeyKind::P256,
        AlgorithmParameters::OctetKeyPair(p) if p.curve == EllipticCurve::Ed25519 => {
            KeyKind::Ed25519
        }
        _ => return None,
    };
    let alg = match jwk.common.key_algorithm {
        None => None,
        Some(KeyAlgorithm::RS256) => Some(Algorithm::RS256),
        Some(KeyAlgorithm::ES256) => Some(Algorithm::ES256),
        Some(KeyAlgorithm::EdDSA) => Some(Algorithm::EdDSA),
        // Pinned to an algorithm this proxy does not verify with.
        Some(_) => return None,
    };
    let key = DecodingKey::from_jwk(jwk).ok()?;
    Some(Key {
        kid: jwk.common.key_id.clone(),
        alg,
        kind,
        key,
    })
}

/// The key for `alg` under `kid` in `keys`.
pub(super) fn find(
    keys: &[Key],
    kid: Option<&str>,
    alg: Algorithm,
) -> Result<DecodingKey, KeyError> {
    let kind = KeyKind::for_alg(alg).ok_or(KeyError::Mismatch)?;
    let fits = |k: &&Key| k.kind == kind && k.alg.is_none_or(|a| a == alg);
    match kid {
        Some(kid) => {
            let mut named = keys
                .iter()
                .filter(|k| k.kid.as_deref() == Some(kid))
                .peekable();
            if named.peek().is_none() {
                return Err(KeyError::Unknown);
            }
            named
                .find(fits)
                .map(|k| k.key.clone())
                .ok_or(KeyError::Mismatch)
        }
        None => {
            let mut fitting = keys.iter().filter(fits);
            match (fitting.next(), fitting.next()) {
                (Some(k), None) => Ok(k.key.clone()),
                (None, _) => Err(KeyError::Unknown),
                (Some(_), Some(_)) => Err(KeyError::Ambiguous),
            }
        }
    }
}
