//! Client API keys: only their SHA-256 is configured, and a presented key is hashed and compared
//! against every configured hash in constant time.

use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::sync::Arc;
use subtle::ConstantTimeEq;

use crate::config::{ApiKeyConfig, ConfigError};

/// One configured key: the client id, its plan and the SHA-256 of the key.
struct Entry {
    id: Arc<str>,
    plan: Arc<str>,
    hash: [u8; 32],
}

/// The configured API keys.
pub(super) struct ApiKeys {
    entries: Vec<Entry>,
}

impl ApiKeys {
    /// Builds from config; `plans` maps each configured plan name to its shared name.
    pub(super) fn new(
        keys: &[ApiKeyConfig],
        plans: &BTreeMap<String, Arc<str>>,
    ) -> Result<Self, ConfigError> {
        let mut entries = Vec::with_capacity(keys.len());
        for (i, key) in keys.iter().enumerate() {
            let mut hash = [0u8; 32];
            hex::decode_to_slice(key.key_sha256.expose().to_ascii_lowercase(), &mut hash).map_err(
                |_| {
                    ConfigError::invalid(
                        format!("auth.api_keys[{i}].key_sha256"),
                        "must be 64 hex digits",
                    )
                },
            )?;
            let plan = plans.get(&key.plan).cloned().ok_or_else(|| {
                ConfigError::invalid(
                    format!("auth.api_keys[{i}].plan"),
                    format!("no plan named `{}` under [plans]", key.plan),
                )
            })?;
            entries.push(Entry {
                id: Arc::from(key.id.as_str()),
                plan,
                hash,
            });
        }
        Ok(Self { entries })
    }

    /// How many keys are configured.
    pub(super) fn len(&self) -> usize {
        self.entries.len()
    }

    /// The client id and plan of `key`, if it is a configured key.
    pub(super) fn find(&self, key: &str) -> Option<(Arc<str>, Arc<str>)> {
        let digest: [u8; 32] = Sha256::digest(key.as_bytes()).into();
        // Compare against every key without stopping early, so timing says nothing about which
        // (or whether any) key came close.
        let mut found: Option<&Entry> = None;
        for entry in &self.entries {
            if bool::from(entry.hash.ct_eq(&digest)) {
                found = Some(entry);
            }
        }
        found.map(|e| (e.id.clone(), e.plan.clone()))
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
