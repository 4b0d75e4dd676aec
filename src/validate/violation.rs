//! One problem found in a submitted input, in the shape fal (FastAPI/Pydantic) uses for 422s.

use serde::Serialize;
use serde_json::Value;

/// One violated field: `{"loc":["body","num_images"],"msg":"...","type":"..."}`.
///
/// `loc` starts with `"body"` and then names the path into the input: strings for object keys,
/// integers for array indexes, exactly as FastAPI reports them, so `@fal-ai/client`'s
/// `ValidationError.fieldErrors` names the fields.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Violation {
    /// Path to the offending value, beginning with `"body"`.
    pub loc: Vec<Value>,
    /// A human sentence saying what is wrong and what is allowed.
    pub msg: String,
    /// A machine type in Pydantic's vocabulary (`missing`, `extra_forbidden`, `enum`,
    /// `less_than_equal`, `greater_than_equal`, `string_too_short`, `json_invalid`, ...) or
    /// `policy_*` for rules of this proxy's own.
    #[serde(rename = "type")]
    pub kind: String,
}

impl Violation {
    /// A violation at `body.<path...>`.
    pub fn new(path: &[Value], kind: impl Into<String>, msg: impl Into<String>) -> Self {
        let mut loc = Vec::with_capacity(path.len() + 1);
        loc.push(Value::from("body"));
        loc.extend_from_slice(path);
        Self {
            loc,
            msg: msg.into(),
            kind: kind.into(),
        }
    }

    /// A violation of a top-level field `body.<field>`.
    pub fn field(field: &str, kind: impl Into<String>, msg: impl Into<String>) -> Self {
        Self::new(&[Value::from(field)], kind, msg)
    }
}
