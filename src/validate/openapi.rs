//! Finding an endpoint's input schema in fal's OpenAPI 3 document and preparing it for a
//! JSON Schema 2020-12 validator. Pure; runs once per endpoint at start-up.
//!
//! The input is the `application/json` schema of `requestBody` of `POST /{endpoint id}`, usually
//! a `$ref` into `components.schemas`. The validator compiles a wrapper document
//! `{"$ref": <that ref>, "components": {...}}` so every internal `$ref` resolves. OpenAPI 3.0
//! keywords that mean something else in 2020-12 are translated: `nullable: true` adds `"null"`
//! to `type` (and to `enum`), boolean `exclusiveMinimum`/`exclusiveMaximum` become numbers.
//! Annotation keywords (`example`, `x-fal-*`, ...) are left alone; 2020-12 ignores them.

use serde_json::{Map, Value, json};

/// Most `$ref` hops followed when looking for properties and defaults.
const MAX_REF_HOPS: usize = 16;

/// What the validator needs from one endpoint's OpenAPI document.
#[derive(Debug)]
pub(super) struct InputSchema {
    /// A self-contained JSON Schema 2020-12 document for the input, ready to compile.
    pub document: Value,
    /// Top-level properties the input schema declares.
    pub properties: Vec<String>,
    /// Top-level properties with a `default`, and that default.
    pub defaults: Vec<(String, Value)>,
    /// Top-level properties with an `enum`, and its values.
    pub enums: Vec<(String, Vec<Value>)>,
    /// Top-level properties that are lists of strings the schema constrains by type alone (see
    /// [`plain_string_lists`]).
    pub plain_string_lists: Vec<String>,
}

/// Extracts the input schema of `POST /{endpoint_id}`. The error says what is missing.
pub(super) fn input_schema(endpoint_id: &str, doc: &Value) -> Result<InputSchema, String> {
    let path = format!("/{endpoint_id}");
    let operation = doc
        .get("paths")
        .and_then(Value::as_object)
        .ok_or("the OpenAPI document has no `paths` object")?
        .get(&path)
        .ok_or_else(|| format!("the OpenAPI document has no path `{path}`"))?
        .get("post")
        .ok_or_else(|| format!("path `{path}` has no `post` operation"))?;
    let body = operation
        .get("requestBody")
        .ok_or_else(|| format!("`POST {path}` has no `requestBody`"))?;
    let body = follow_refs(doc, body)?;
    let schema = body
        .pointer("/content/application~1json/schema")
        .ok_or_else(|| {
            format!("`POST {path}` has no `requestBody.content[\"application/json\"].schema`")
        })?;

    let mut components = doc.get("components").cloned().unwrap_or_else(|| json!({}));
    if let Some(schemas) = components.get_mut("schemas").and_then(Value::as_object_mut) {
        schemas.values_mut().for_each(translate);
    }
    let mut document = Map::new();
    document.insert(
        "$schema".into(),
        json!("https://json-schema.org/draft/2020-12/schema"),
    );
    match schema.get("$ref") {
        Some(reference) => {
            let reference = reference.as_str().ok_or_else(|| {
                format!("the request schema of `POST {path}` has a non-string `$ref`")
            })?;
            if !reference.starts_with("#/components/") {
                return Err(format!(
                    "the request schema `$ref` `{reference}` must point into `components`"
                ));
            }
            resolve(doc, reference)?;
            document.insert("$ref".into(), json!(reference));
        }
        None => {
            let mut inline = schema.clone();
            translate(&mut inline);
            document.insert("$ref".into(), json!("#/$defs/input"));
            document.insert("$defs".into(), json!({ "input": inline }));
        }
    }
    document.insert("components".into(), components);

    let root = follow_refs(doc, schema)?;
    let mut found = Found::default();
    collect_properties(doc, root, &mut found, 0)?;
    Ok(InputSchema {
        document: Value::Object(document),
        properties: found.properties,
        defaults: found.defaults,
        enums: found.enums,
        plain_string_lists: plain_string_lists(root),
    })
}

/// Keywords that let a schema look at a property's value other than through `properties`.
const REACHING_KEYWORDS: &[&str] = &[
    "allOf",
    "anyOf",
    "oneOf",
    "not",
    "if",
    "then",
    "else",
    "dependentSchemas",
    "patternProperties",
    "unevaluatedProperties",
    "$dynamicRef",
];
/// Annotation keywords: they never look at a value.
const ANNOTATIONS: &[&str] = &[
    "title",
    "description",
    "examples",
    "deprecated",
    "readOnly",
    "writeOnly",
    "$comment",
];
/// What a plain list may say besides annotations (its items' text is never looked at).
const LIST_KEYWORDS: &[&str] = &["type", "items", "minItems", "maxItems"];

/// The top-level properties of `root` whose schema is exactly "a list of strings" (plus
/// annotations and item counts), reached only through `properties`: for them, whether the
/// input is valid does not depend on the strings' text, only on their being strings. The
/// validator then hands the schema check empty strings in their place and keeps the (possibly
/// multi-megabyte) originals borrowed from the request body.
/// A `$ref` anywhere on that path makes the property not plain (conservative by design).
fn plain_string_lists(root: &Value) -> Vec<String> {
    let plain = |schema: &Value, allowed: &[&str], kind: &str| {
        schema.as_object().is_some_and(|map| {
            map.get("type") == Some(&json!(kind))
                && map.keys().all(|k| {
                    allowed.contains(&k.as_str())
                        || ANNOTATIONS.contains(&k.as_str())
                        || k.starts_with("x-")
                })
        })
    };
    if REACHING_KEYWORDS.iter().any(|k| root.get(*k).is_some()) {
        return Vec::new();
    }
    let Some(properties) = root.get("properties").and_then(Value::as_object) else {
        return Vec::new();
    };
    properties
        .iter()
        .filter(|(_, list)| {
            plain(list, LIST_KEYWORDS, "array")
                && list
                    .get("items")
                    .is_some_and(|items| plain(items, &["type"], "string"))
        })
        .map(|(name, _)| name.clone())
        .collect()
}

/// Resolves a local `$ref` (`#/components/schemas/X`) to what it points at.
fn resolve<'a>(doc: &'a Value, reference: &str) -> Result<&'a Value, String> {
    let pointer = reference.strip_prefix('#').ok_or_else(|| {
        format!("`$ref` `{reference}` is not local (only `#/...` refs are supported)")
    })?;
    doc.pointer(pointer)
        .ok_or_else(|| format!("`$ref` `{reference}` points at nothing in the OpenAPI document"))
}

/// Follows `$ref` until reaching an object without one.
fn follow_refs<'a>(doc: &'a Value, mut value: &'a Value) -> Result<&'a Value, String> {
    for _ in 0..MAX_REF_HOPS {
        match value.get("$ref").and_then(Value::as_str) {
            Some(reference) => value = resolve(doc, reference)?,
            None => return Ok(value),
        }
    }
    Err(format!("more than {MAX_REF_HOPS} chained `$ref`s"))
}

/// Top-level facts gathered from the input schema.
#[derive(Default)]
struct Found {
    properties: Vec<String>,
    defaults: Vec<(String, Value)>,
    enums: Vec<(String, Vec<Value>)>,
}

/// Gathers top-level property names, defaults and enums from `schema`, `allOf` members included.
fn collect_properties(
    doc: &Value,
    schema: &Value,
    found: &mut Found,
    depth: usize,
) -> Result<(), String> {
    if depth > MAX_REF_HOPS {
        return Err("`allOf` nested too deeply in the input schema".into());
    }
    if let Some(props) = schema.get("properties").and_then(Value::as_object) {
        for (name, property) in props {
            if found.properties.contains(name) {
                continue;
            }
            found.properties.push(name.clone());
            if let Some(default) = keyword_of(doc, property, "default") {
                found.defaults.push((name.clone(), default.clone()));
            }
            if let Some(Value::Array(options)) = keyword_of(doc, property, "enum") {
                found.enums.push((name.clone(), options.clone()));
            }
        }
    }
    if let Some(members) = schema.get("allOf").and_then(Value::as_array) {
        for member in members {
            let member = follow_refs(doc, member)?;
            collect_properties(doc, member, found, depth + 1)?;
        }
    }
    Ok(())
}

/// A property's `keyword`: its own, else the one of what its `$ref` (or single `allOf`) names.
fn keyword_of<'a>(doc: &'a Value, property: &'a Value, keyword: &str) -> Option<&'a Value> {
    if let Some(value) = property.get(keyword) {
        return Some(value);
    }
    let target = match property.get("allOf").and_then(Value::as_array) {
        Some(members) if members.len() == 1 => &members[0],
        _ => property,
    };
    follow_refs(doc, target).ok()?.get(keyword)
}

/// Rewrites the OpenAPI 3.0 keywords of `schema` (and every subschema) into 2020-12 terms.
pub(super) fn translate(schema: &mut Value) {
    let Value::Object(map) = schema else {
        return;
    };
    if map.get("nullable") == Some(&Value::Bool(true)) {
        add_null(map);
    }
    for (exclusive, inclusive) in [
        ("exclusiveMinimum", "minimum"),
        ("exclusiveMaximum", "maximum"),
    ] {
        if let Some(Value::Bool(on)) = map.get(exclusive) {
            let on = *on;
            map.remove(exclusive);
            if on && let Some(limit) = map.remove(inclusive) {
                map.insert(exclusive.into(), limit);
            }
        }
    }
    for (key, child) in map.iter_mut() {
        match key.as_str() {
            "properties" | "patternProperties" | "$defs" | "definitions" | "dependentSchemas" => {
                if let Value::Object(children) = child {
                    children.values_mut().for_each(translate);
                }
            }
            "allOf" | "anyOf" | "oneOf" | "prefixItems" => {
                if let Value::Array(children) = child {
                    children.iter_mut().for_each(translate);
                }
            }
            "items" => match child {
                Value::Array(children) => children.iter_mut().for_each(translate),
                other => translate(other),
            },
            "additionalProperties"
            | "additionalItems"
            | "not"
            | "contains"
            | "if"
            | "then"
            | "else"
            | "propertyNames"
            | "unevaluatedItems"
            | "unevaluatedProperties" => translate(child),
            _ => {}
        }
    }
}

/// `nullable: true`: let `null` through `type` and `enum`.
fn add_null(map: &mut Map<String, Value>) {
    match map.get_mut("type") {
        Some(Value::String(kind)) if kind != "null" => {
            let kind = std::mem::take(kind);
            map.insert("type".into(), json!([kind, "null"]));
        }
        Some(Value::Array(kinds)) if !kinds.iter().any(|k| k == "null") => {
            kinds.push(json!("null"));
        }
        _ => {}
    }
    if let Some(Value::Array(options)) = map.get_mut("enum")
        && !options.contains(&Value::Null)
    {
        options.push(Value::Null);
    }
}
