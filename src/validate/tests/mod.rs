//! Tests of the whole validator against the two shipped schema files and the shipped defaults.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod compile;
mod policy;
mod schema;

use serde_json::{Value, json};

use super::{EndpointValidator, ValidatedInput, Validators, Violation};
use crate::config::{Config, EndpointConfig};

pub(super) const EDIT_ID: &str = "fal-ai/nano-banana-pro/edit";
pub(super) const T2I_ID: &str = "fal-ai/nano-banana-pro";
const EDIT_SCHEMA: &str = include_str!("../../../config/schemas/nano-banana-pro-edit.json");
const T2I_SCHEMA: &str = include_str!("../../../config/schemas/nano-banana-pro.json");
const DEFAULT_TOML: &str = include_str!("../../../config/default.toml");

/// The shipped default configuration.
pub(super) fn default_config() -> Config {
    toml::from_str(DEFAULT_TOML).expect("config/default.toml parses")
}

/// The two shipped OpenAPI documents, paired with their endpoint ids.
pub(super) fn shipped_schemas() -> Vec<(String, Value)> {
    vec![
        (EDIT_ID.into(), serde_json::from_str(EDIT_SCHEMA).unwrap()),
        (T2I_ID.into(), serde_json::from_str(T2I_SCHEMA).unwrap()),
    ]
}

/// Validators for the shipped config after `change` is applied to the edit endpoint's entry.
pub(super) fn edit_with(change: impl FnOnce(&mut EndpointConfig)) -> Validators {
    let mut config = default_config();
    let edit = config
        .endpoints
        .iter_mut()
        .find(|e| e.id == EDIT_ID)
        .unwrap();
    change(edit);
    Validators::compile(&config, shipped_schemas()).unwrap()
}

/// Runs one validator on a JSON value.
pub(super) fn run(
    validator: &EndpointValidator,
    body: &Value,
) -> Result<ValidatedInput, Vec<Violation>> {
    validator.validate(&serde_json::to_vec(body).unwrap())
}

/// Runs the edit validator of `validators` on `body`.
pub(super) fn edit(
    validators: &Validators,
    body: &Value,
) -> Result<ValidatedInput, Vec<Violation>> {
    run(validators.get(EDIT_ID).unwrap(), body)
}

/// The (loc, type) pairs of a failed validation, for compact assertions.
pub(super) fn problems(result: Result<ValidatedInput, Vec<Violation>>) -> Vec<(Value, String)> {
    match result {
        Ok(input) => panic!("expected violations, got {:?}", input.input),
        Err(violations) => violations
            .into_iter()
            .map(|v| (Value::Array(v.loc), v.kind))
            .collect(),
    }
}

/// The violations of a failed validation.
pub(super) fn violations(result: Result<ValidatedInput, Vec<Violation>>) -> Vec<Violation> {
    match result {
        Ok(input) => panic!("expected violations, got {:?}", input.input),
        Err(violations) => violations,
    }
}

/// A valid edit input with `overrides` merged in (a `null` override removes the field).
pub(super) fn edit_input(overrides: Value) -> Value {
    let mut input = json!({
        "prompt": "make the sky purple",
        "image_urls": ["https://cdn.example.com/a.png"],
    });
    if let (Some(map), Some(changes)) = (input.as_object_mut(), overrides.as_object()) {
        for (key, value) in changes {
            if value.is_null() {
                map.remove(key);
            } else {
                map.insert(key.clone(), value.clone());
            }
        }
    }
    input
}

/// The default validators of the shipped configuration.
pub(super) fn shipped() -> Validators {
    Validators::compile(&default_config(), shipped_schemas()).unwrap()
}
