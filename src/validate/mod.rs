//! Validation before spend: fal's OpenAPI input schemas compiled once at start-up, plus the
//! per-endpoint policy of this proxy. PURE: no I/O here (schema files are read by `config`).
//!
//! [`Validators::compile`] finds each endpoint's input schema in its OpenAPI document
//! (`openapi`), compiles it (`schema`) and prepares its policy (`policy`). Then
//! [`EndpointValidator::validate`] parses a body once and reports every problem in fal's own
//! 422 vocabulary ([`Violation`]): schema errors, unknown fields, and policy (limits, https-only
//! image URLs with an optional host allowlist, and image data URIs checked in one pass).

mod data_uri;
mod image_url;
mod messages;
mod openapi;
mod parse;
mod policy;
mod scan;
mod schema;
#[cfg(test)]
mod tests;
mod violation;

pub use violation::Violation;

use serde_json::{Map, Value};
use std::collections::HashSet;

use crate::hash::{FastMap, FastSet};

use crate::config::{Config, ConfigError, EndpointConfig};
use policy::Policy;

/// Longest top-level array checked item by item. A longer one (a 32 MB body can hold millions
/// of entries) is refused by its length alone, so one request cannot make millions of violations.
pub const MAX_CHECKED_ITEMS: usize = 1024;

/// The compiled validators of every configured endpoint, keyed by endpoint id.
#[derive(Debug, Default)]
pub struct Validators {
    by_endpoint: FastMap<String, EndpointValidator>,
}

impl Validators {
    /// Compiles each configured endpoint's schema (`schemas` pairs endpoint id with fal's OpenAPI
    /// document, as `config::load_schemas` returns them). A missing document, path, `$ref` or
    /// schema is an error naming the endpoint and what is missing.
    pub fn compile(config: &Config, schemas: Vec<(String, Value)>) -> Result<Self, ConfigError> {
        let mut by_endpoint = FastMap::default();
        for (i, endpoint) in config.endpoints.iter().enumerate() {
            let key = format!("endpoints[{i}].schema");
            let document = schemas
                .iter()
                .find(|(id, _)| *id == endpoint.id)
                .map(|(_, document)| document)
                .ok_or_else(|| {
                    ConfigError::invalid(
                        &key,
                        format!("endpoint `{}`: no schema document was loaded", endpoint.id),
                    )
                })?;
            let validator = EndpointValidator::compile(endpoint, document).map_err(|message| {
                ConfigError::invalid(
                    &key,
                    format!(
                        "endpoint `{}` ({}): {message}",
                        endpoint.id,
                        endpoint.schema.display()
                    ),
                )
            })?;
            by_endpoint.insert(endpoint.id.clone(), validator);
        }
        Ok(Self { by_endpoint })
    }

    /// The validator of one endpoint id.
    pub fn get(&self, endpoint_id: &str) -> Option<&EndpointValidator> {
        self.by_endpoint.get(endpoint_id)
    }
}

/// One endpoint's compiled schema and policy.
#[derive(Debug)]
pub struct EndpointValidator {
    endpoint_id: String,
    schema: jsonschema::Validator,
    properties: FastSet<String>,
    defaults: Vec<(String, Value)>,
    reject_unknown_fields: bool,
    /// The schema judges `image_urls` entries by type alone: check it on empty strings and
    /// keep the entries' text borrowed from the body (see `parse`).
    image_placeholders: bool,
    policy: Policy,
}

/// The list whose entries (image URLs, data URIs of megabytes) the policy checks.
const IMAGE_FIELD: &str = "image_urls";

impl EndpointValidator {
    /// Builds the validator of one endpoint from its OpenAPI document.
    fn compile(config: &EndpointConfig, document: &Value) -> Result<Self, String> {
        let input = openapi::input_schema(&config.id, document)?;
        if config.reject_unknown_fields && input.properties.is_empty() {
            return Err(
                "the input schema declares no `properties`, so reject_unknown_fields would refuse every field".into(),
            );
        }
        if let Some((_, options)) = input.enums.iter().find(|(name, _)| name == "resolution") {
            for wanted in &config.allowed_resolutions {
                if !options.iter().any(|o| o.as_str() == Some(wanted)) {
                    return Err(format!(
                        "allowed_resolutions names `{wanted}`, which the schema does not allow (it allows {})",
                        messages::one_of(options)
                    ));
                }
            }
        }
        Ok(Self {
            endpoint_id: config.id.clone(),
            schema: schema::compile(&input.document)?,
            properties: input.properties.into_iter().collect(),
            defaults: input.defaults,
            reject_unknown_fields: config.reject_unknown_fields,
            image_placeholders: input.plain_string_lists.iter().any(|p| p == IMAGE_FIELD),
            policy: Policy::new(config),
        })
    }

    /// The endpoint id this validator is for.
    pub fn endpoint_id(&self) -> &str {
        &self.endpoint_id
    }

    /// Validates a raw request body; every problem is reported, not just the first. On success
    /// the input comes back with the schema's defaults filled in.
    ///
    /// The body is parsed once, and `image_urls` entries are never copied out of it (see
    /// `parse`).
    pub fn validate(&self, body: &[u8]) -> Result<ValidatedInput, Vec<Violation>> {
        let (mut input, images) = match parse::parse(body, IMAGE_FIELD, self.image_placeholders) {
            Ok(Some(parsed)) => (parsed.fields, parsed.list),
            Ok(None) => {
                return Err(vec![Violation::new(
                    &[],
                    "model_attributes_type",
                    "Input should be a valid dictionary or object to extract fields from",
                )]);
            }
            Err(e) => {
                return Err(vec![Violation::new(
                    &[],
                    "json_invalid",
                    format!("JSON decode error: {e}"),
                )]);
            }
        };
        let mut found = Vec::new();
        if self.reject_unknown_fields {
            for name in input.keys().filter(|k| !self.properties.contains(*k)) {
                found.push(Violation::field(
                    name,
                    "extra_forbidden",
                    "Extra inputs are not permitted",
                ));
            }
        }
        let set_aside = self.set_aside_long_arrays(&mut input, &mut found);

        let instance = Value::Object(input);
        schema::check(&self.schema, &instance, &mut found);
        let Value::Object(mut input) = instance else {
            return Err(found);
        };
        if !set_aside.is_empty() {
            found.retain(|v| {
                !(v.kind == "missing"
                    && v.loc.len() == 2
                    && set_aside.iter().any(|name| v.loc[1] == name.as_str()))
            });
        }

        let mut defaulted = Vec::new();
        for (name, default) in &self.defaults {
            if !input.contains_key(name) && !set_aside.contains(name) {
                input.insert(name.clone(), default.clone());
                defaulted.push(name.as_str());
            }
        }
        let mut by_policy = Vec::new();
        let images = images.filter(|_| !set_aside.iter().any(|name| name == IMAGE_FIELD));
        self.policy
            .check(&input, images.as_deref(), &defaulted, &mut by_policy);
        merge(&mut found, by_policy);

        if found.is_empty() {
            let image_count = images.as_ref().map_or(0, Vec::len);
            input.remove(IMAGE_FIELD);
            Ok(ValidatedInput { input, image_count })
        } else {
            Err(found)
        }
    }

    /// Takes top-level arrays longer than [`MAX_CHECKED_ITEMS`] out of `input` (moved, not
    /// copied) and reports each by its length. Returns the names taken out.
    fn set_aside_long_arrays(
        &self,
        input: &mut Map<String, Value>,
        found: &mut Vec<Violation>,
    ) -> Vec<String> {
        let long: Vec<String> = input
            .iter()
            .filter(|(_, v)| v.as_array().is_some_and(|a| a.len() > MAX_CHECKED_ITEMS))
            .map(|(k, _)| k.clone())
            .collect();
        for name in &long {
            let len = input
                .remove(name)
                .and_then(|v| v.as_array().map(Vec::len))
                .unwrap_or(0);
            if self.reject_unknown_fields && !self.properties.contains(name) {
                continue; // already reported as an unknown field
            }
            found.push(match self.policy.max_image_urls() {
                Some(max) if name == "image_urls" => Violation::field(
                    name,
                    "policy_max_image_urls",
                    format!("At most {max} image URLs are allowed here, not {len}"),
                ),
                _ => Violation::field(
                    name,
                    "too_long",
                    format!("List should have at most {MAX_CHECKED_ITEMS} items, not {len}"),
                ),
            });
        }
        long
    }
}

/// Adds the policy violations to the schema ones, except where the schema already spoke: the
/// same loc, or a loc inside a value the schema refused outright (wrong type, unknown field).
/// Exact duplicates (same loc and type) are dropped.
fn merge(found: &mut Vec<Violation>, by_policy: Vec<Violation>) {
    let prior = found.len();
    for violation in by_policy {
        let covered = found[..prior].iter().any(|earlier| {
            earlier.loc == violation.loc
                || (violation.loc.starts_with(&earlier.loc)
                    && (earlier.kind == "extra_forbidden" || schema::is_type_kind(&earlier.kind)))
        });
        if !covered {
            found.push(violation);
        }
    }
    let mut seen = HashSet::new();
    found.retain(|v| {
        seen.insert((
            serde_json::to_string(&v.loc).unwrap_or_default(),
            v.kind.clone(),
        ))
    });
}

/// An accepted input with the schema's defaults applied (for cost and logging).
#[derive(Debug, Clone)]
pub struct ValidatedInput {
    /// Top-level fields, defaults filled in, except `image_urls`: its entries (possibly
    /// megabytes of data URIs) are checked where they lie in the body and not kept.
    pub input: Map<String, Value>,
    /// How many `image_urls` entries there were.
    pub image_count: usize,
}

impl ValidatedInput {
    /// `num_images` (1 when absent).
    pub fn num_images(&self) -> u64 {
        self.input
            .get("num_images")
            .and_then(policy::whole)
            .unwrap_or(1)
    }

    /// `resolution` (`1K` when absent).
    pub fn resolution(&self) -> &str {
        self.input
            .get("resolution")
            .and_then(Value::as_str)
            .unwrap_or("1K")
    }

    /// `enable_web_search` (false when absent).
    pub fn enable_web_search(&self) -> bool {
        self.flag("enable_web_search")
    }

    /// `sync_mode` (false when absent).
    pub fn sync_mode(&self) -> bool {
        self.flag("sync_mode")
    }

    fn flag(&self, name: &str) -> bool {
        self.input
            .get(name)
            .and_then(Value::as_bool)
            .unwrap_or(false)
    }
}
