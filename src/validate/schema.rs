//! The compiled input schema: built once at start-up with the `jsonschema` crate, run on each
//! input, its errors mapped to FastAPI/Pydantic's vocabulary. Pure.
//!
//! Messages are written here, never taken from the crate's `Display`, which quotes the offending
//! value (a multi-megabyte data URI would be echoed back).

use jsonschema::error::ValidationErrorKind;
use jsonschema::{Draft, ValidationError, Validator};
use serde_json::Value;
use std::borrow::Cow;

use super::Violation;
use super::messages::{join_or, one_of, plural, show, type_message};

/// Compiles the wrapper document from [`super::openapi::input_schema`] (2020-12, no network, no
/// files, formats as annotations only).
pub(super) fn compile(document: &Value) -> Result<Validator, String> {
    jsonschema::options()
        .with_draft(Draft::Draft202012)
        .should_validate_formats(false)
        .offline()
        .build(document)
        .map_err(|e| format!("the input schema does not compile: {}", e.masked()))
}

/// Appends a violation for every schema error in `instance` (nothing when it is valid). Where a
/// value has the wrong type, that is the one violation reported for its loc (not also `enum`).
pub(super) fn check(validator: &Validator, instance: &Value, out: &mut Vec<Violation>) {
    if validator.is_valid(instance) {
        return;
    }
    let mut found = Vec::new();
    for error in validator.iter_errors(instance) {
        map_error(instance, &error, &mut found);
    }
    let mistyped: Vec<Vec<Value>> = found
        .iter()
        .filter(|v| is_type_kind(&v.kind))
        .map(|v| v.loc.clone())
        .collect();
    out.extend(
        found
            .into_iter()
            .filter(|v| is_type_kind(&v.kind) || !mistyped.contains(&v.loc)),
    );
}

/// Is this one of Pydantic's wrong-type violation types (`int_type`, `string_type`, ...)?
pub(super) fn is_type_kind(kind: &str) -> bool {
    kind.ends_with("_type")
}

/// Maps one error of the crate to zero or more violations.
fn map_error(root: &Value, error: &ValidationError<'_>, out: &mut Vec<Violation>) {
    let pointer = error.instance_path().as_str();
    let path = loc_of(root, pointer);
    let at = |kind: &str, msg: String| Violation::new(&path, kind, msg);
    let violation = match error.kind() {
        ValidationErrorKind::Required { property } => {
            let mut missing = path.clone();
            missing.push(property.clone());
            Violation::new(&missing, "missing", "Field required")
        }
        ValidationErrorKind::Type { kind } => {
            let (kind, msg) = type_message(kind);
            at(kind, msg)
        }
        ValidationErrorKind::Enum { options } => {
            let allowed = match options.as_ref() {
                Value::Array(options) => one_of(options),
                other => show(other),
            };
            at("enum", format!("Input should be {allowed}"))
        }
        ValidationErrorKind::Constant { expected_value } => at(
            "literal_error",
            format!("Input should be {}", show(expected_value)),
        ),
        ValidationErrorKind::Minimum { limit } => at(
            "greater_than_equal",
            format!("Input should be greater than or equal to {limit}"),
        ),
        ValidationErrorKind::Maximum { limit } => at(
            "less_than_equal",
            format!("Input should be less than or equal to {limit}"),
        ),
        ValidationErrorKind::ExclusiveMinimum { limit } => at(
            "greater_than",
            format!("Input should be greater than {limit}"),
        ),
        ValidationErrorKind::ExclusiveMaximum { limit } => {
            at("less_than", format!("Input should be less than {limit}"))
        }
        ValidationErrorKind::MinLength { limit } => at(
            "string_too_short",
            format!(
                "String should have at least {limit} {}",
                plural(*limit, "character")
            ),
        ),
        ValidationErrorKind::MaxLength { limit } => at(
            "string_too_long",
            format!(
                "String should have at most {limit} {}",
                plural(*limit, "character")
            ),
        ),
        ValidationErrorKind::MinItems { limit } => at(
            "too_short",
            format!(
                "List should have at least {limit} {}, not {}",
                plural(*limit, "item"),
                len_at(root, pointer)
            ),
        ),
        ValidationErrorKind::MaxItems { limit } => at(
            "too_long",
            format!(
                "List should have at most {limit} {}, not {}",
                plural(*limit, "item"),
                len_at(root, pointer)
            ),
        ),
        ValidationErrorKind::MinProperties { limit } => at(
            "too_short",
            format!(
                "Object should have at least {limit} {}",
                plural(*limit, "field")
            ),
        ),
        ValidationErrorKind::MaxProperties { limit } => at(
            "too_long",
            format!(
                "Object should have at most {limit} {}",
                plural(*limit, "field")
            ),
        ),
        ValidationErrorKind::AdditionalProperties { unexpected }
        | ValidationErrorKind::UnevaluatedProperties { unexpected } => {
            for name in unexpected {
                let mut extra = path.clone();
                extra.push(Value::from(name.as_str()));
                out.push(Violation::new(
                    &extra,
                    "extra_forbidden",
                    "Extra inputs are not permitted",
                ));
            }
            return;
        }
        ValidationErrorKind::AdditionalItems { .. }
        | ValidationErrorKind::UnevaluatedItems { .. } => {
            at("too_long", "List has more items than allowed".into())
        }
        ValidationErrorKind::Pattern { pattern } => at(
            "string_pattern_mismatch",
            format!("String should match pattern '{pattern}'"),
        ),
        ValidationErrorKind::Format { format } => {
            at("value_error", format!("Value is not a valid {format}"))
        }
        ValidationErrorKind::MultipleOf { multiple_of } => at(
            "multiple_of",
            format!("Input should be a multiple of {multiple_of}"),
        ),
        ValidationErrorKind::UniqueItems => at("value_error", "List items should be unique".into()),
        ValidationErrorKind::AnyOf { context } | ValidationErrorKind::OneOfNotValid { context } => {
            return union_error(root, pointer, &path, context, out);
        }
        ValidationErrorKind::OneOfMultipleValid { .. } => at(
            "value_error",
            "Input matches more than one of the allowed forms".into(),
        ),
        ValidationErrorKind::Contains => at(
            "value_error",
            "List should contain at least one matching item".into(),
        ),
        _ => at("value_error", "Input is not valid here".into()),
    };
    out.push(violation);
}

/// No branch of an `anyOf`/`oneOf` matched. If exactly one branch accepts the value's type, its
/// errors are the useful ones; if none does, the allowed types are named; otherwise a summary.
fn union_error(
    root: &Value,
    pointer: &str,
    path: &[Value],
    branches: &[Vec<ValidationError<'static>>],
    out: &mut Vec<Violation>,
) {
    let is_type_error_here = |e: &ValidationError<'_>| {
        matches!(e.kind(), ValidationErrorKind::Type { .. })
            && e.instance_path().as_str() == pointer
    };
    let fitting: Vec<&Vec<ValidationError<'static>>> = branches
        .iter()
        .filter(|errors| !errors.iter().any(is_type_error_here))
        .collect();
    match fitting.as_slice() {
        [only] => only.iter().for_each(|e| map_error(root, e, out)),
        [] => {
            let mut kinds = Vec::new();
            let mut names = Vec::new();
            for error in branches.iter().flatten().filter(|e| is_type_error_here(e)) {
                if let ValidationErrorKind::Type { kind } = error.kind() {
                    let (kind, msg) = type_message(kind);
                    kinds.push(kind);
                    names.push(msg.trim_start_matches("Input should be ").to_string());
                }
            }
            names.dedup();
            let kind = kinds.first().copied().unwrap_or("value_error");
            out.push(Violation::new(
                path,
                kind,
                format!("Input should be {}", join_or(&names)),
            ));
        }
        _ => out.push(Violation::new(
            path,
            "value_error",
            "Input does not match any of the allowed forms",
        )),
    }
}

/// `loc` segments for a JSON pointer into `root`: object keys as strings, array indexes as
/// integers (judged by walking `root`, so a key that looks like a number stays a string).
fn loc_of(root: &Value, pointer: &str) -> Vec<Value> {
    let mut loc = Vec::new();
    let mut node = Some(root);
    for raw in pointer.split('/').skip(1) {
        let segment: Cow<'_, str> = if raw.contains('~') {
            Cow::Owned(raw.replace("~1", "/").replace("~0", "~"))
        } else {
            Cow::Borrowed(raw)
        };
        match (node, segment.parse::<usize>()) {
            (Some(Value::Array(items)), Ok(index)) => {
                node = items.get(index);
                loc.push(Value::from(index));
            }
            (Some(Value::Object(map)), _) => {
                node = map.get(segment.as_ref());
                loc.push(Value::from(segment.into_owned()));
            }
            _ => {
                node = None;
                loc.push(Value::from(segment.into_owned()));
            }
        }
    }
    loc
}

/// Length of the array at `pointer` (0 if there is none).
fn len_at(root: &Value, pointer: &str) -> usize {
    root.pointer(pointer)
        .and_then(Value::as_array)
        .map_or(0, Vec::len)
}
