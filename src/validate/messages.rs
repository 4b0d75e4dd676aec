//! Pydantic-style phrasing for violation messages: quoted values, "a, b or c" lists, and the
//! type names of `*_type` violations. Pure.

use jsonschema::JsonType;
use jsonschema::error::TypeKind;
use serde_json::Value;

/// Pydantic's type and phrase for a `type` mismatch.
pub(super) fn type_message(kind: &TypeKind) -> (&'static str, String) {
    let mut types: Vec<JsonType> = match kind {
        TypeKind::Single(single) => vec![*single],
        TypeKind::Multiple(set) => set.iter().collect(),
    };
    // "a valid integer or null", not "null or a valid integer".
    types.sort_by_key(|t| *t == JsonType::Null);
    let main = types
        .iter()
        .copied()
        .find(|t| *t != JsonType::Null)
        .unwrap_or(JsonType::Null);
    let names: Vec<String> = types.iter().map(|t| type_name(*t).1.to_string()).collect();
    (
        type_name(main).0,
        format!("Input should be {}", join_or(&names)),
    )
}

/// Pydantic's violation type and phrase for one JSON type.
fn type_name(kind: JsonType) -> (&'static str, &'static str) {
    match kind {
        JsonType::Integer => ("int_type", "a valid integer"),
        JsonType::Number => ("float_type", "a valid number"),
        JsonType::String => ("string_type", "a valid string"),
        JsonType::Boolean => ("bool_type", "a valid boolean"),
        JsonType::Array => ("list_type", "a valid list"),
        JsonType::Object => ("dict_type", "a valid dictionary"),
        JsonType::Null => ("none_type", "null"),
    }
}

/// A value as Pydantic quotes it: strings in single quotes, anything else as JSON.
pub(super) fn show(value: &Value) -> String {
    match value {
        Value::String(s) => format!("'{s}'"),
        other => other.to_string(),
    }
}

/// `'a', 'b' or 'c'`.
pub(super) fn one_of(options: &[Value]) -> String {
    let shown: Vec<String> = options.iter().map(show).collect();
    join_or(&shown)
}

/// `a, b or c`.
pub(super) fn join_or(items: &[String]) -> String {
    match items.split_last() {
        None => String::new(),
        Some((last, [])) => last.clone(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
    }
}

/// `noun`, or `nouns` unless `count` is 1.
pub(super) fn plural(count: u64, noun: &str) -> String {
    if count == 1 {
        noun.to_string()
    } else {
        format!("{noun}s")
    }
}
