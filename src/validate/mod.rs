//! Validation before spend: fal's OpenAPI input schemas compiled once at start-up, plus the
//! per-endpoint policy of this proxy. PURE: no I/O here (schema files are read by `config`).

mod violation;

pub use violation::Violation;

use serde_json::{Map, Value};
use std::collections::HashMap;

use crate::config::{Config, ConfigError};

/// The compiled validators of every configured endpoint, keyed by endpoint id.
#[derive(Debug, Default)]
pub struct Validators {
    by_endpoint: HashMap<String, EndpointValidator>,
}

impl Validators {
    /// Compiles each endpoint's schema (`schemas` pairs endpoint id with fal's OpenAPI document).
    pub fn compile(config: &Config, schemas: Vec<(String, Value)>) -> Result<Self, ConfigError> {
        let _ = (config, schemas);
        Ok(Self::default())
    }

    /// The validator of one endpoint id.
    pub fn get(&self, endpoint_id: &str) -> Option<&EndpointValidator> {
        self.by_endpoint.get(endpoint_id)
    }
}

/// One endpoint's compiled schema and policy.
#[derive(Debug)]
pub struct EndpointValidator {}

impl EndpointValidator {
    /// Validates a raw request body; every violated field is reported.
    pub fn validate(&self, body: &[u8]) -> Result<ValidatedInput, Vec<Violation>> {
        let _ = body;
        Ok(ValidatedInput { input: Map::new() })
    }
}

/// An accepted input with the schema's defaults applied (for cost and logging).
#[derive(Debug, Clone)]
pub struct ValidatedInput {
    /// Top-level fields, defaults filled in.
    pub input: Map<String, Value>,
}
