//! Reading the model input of a submit or sync run into the parameters that shape the fake's
//! images. Like fal, a body that is not a JSON object, or a known field with a value of the wrong
//! type or outside its enum, is a 422 in FastAPI's shape. Unlike fal, missing fields (even
//! `prompt`) are tolerated so tests can submit minimal bodies; unknown fields are ignored.

use serde_json::{Map, Value, json};

use super::images::{Format, dimensions};

/// The values of `aspect_ratio` fal accepts for nano-banana-pro.
pub const ASPECT_RATIOS: [&str; 11] = [
    "auto", "21:9", "16:9", "3:2", "4:3", "5:4", "1:1", "4:5", "3:4", "2:3", "9:16",
];
/// The values of `resolution` fal accepts.
pub const RESOLUTIONS: [&str; 3] = ["1K", "2K", "4K"];
const FORMATS: [&str; 3] = ["jpeg", "png", "webp"];
/// Most images one job may ask for.
pub const MAX_IMAGES: u64 = 4;

/// What one job generates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GenParams {
    /// The prompt (empty when absent).
    pub prompt: String,
    /// The seed: the one given, else a random one (reported back in the result).
    pub seed: u64,
    /// How many images, 1 to [`MAX_IMAGES`].
    pub num_images: u32,
    /// Image width in pixels.
    pub width: u32,
    /// Image height in pixels.
    pub height: u32,
    /// Encoding of the images.
    pub format: Format,
    /// Whether the result carries data URIs instead of URLs.
    pub sync_mode: bool,
}

impl Default for GenParams {
    fn default() -> Self {
        Self {
            prompt: String::new(),
            seed: 0,
            num_images: 1,
            width: 1024,
            height: 1024,
            format: Format::Png,
            sync_mode: false,
        }
    }
}

/// One entry of a FastAPI validation error's `detail` list.
fn problem(field: Option<&str>, msg: String, kind: &str, input: Option<&Value>) -> Value {
    let loc = match field {
        Some(f) => json!(["body", f]),
        None => json!(["body"]),
    };
    let mut entry = json!({ "loc": loc, "msg": msg, "type": kind });
    if let (Some(input), Some(map)) = (input, entry.as_object_mut()) {
        map.insert("input".into(), input.clone());
    }
    entry
}

fn enum_field<'a>(
    body: &'a Map<String, Value>,
    field: &str,
    allowed: &[&str],
    default: &'a str,
    problems: &mut Vec<Value>,
) -> &'a str {
    match body.get(field) {
        None | Some(Value::Null) => default,
        Some(Value::String(s)) if allowed.contains(&s.as_str()) => s,
        Some(other) => {
            let names: Vec<String> = allowed.iter().map(|a| format!("'{a}'")).collect();
            let msg = format!("Input should be {}", names.join(", "));
            problems.push(problem(Some(field), msg, "enum", Some(other)));
            default
        }
    }
}

/// Parses a request body. `Err` holds the `detail` list of a 422 answer.
pub fn parse(body: &[u8]) -> Result<GenParams, Vec<Value>> {
    let value: Value = serde_json::from_slice(body).map_err(|e| {
        vec![problem(
            None,
            format!("JSON decode error: {e}"),
            "json_invalid",
            None,
        )]
    })?;
    let Value::Object(body) = value else {
        let msg = "Input should be a JSON object".to_string();
        return Err(vec![problem(None, msg, "json_invalid", Some(&value))]);
    };
    let mut problems = Vec::new();
    let mut params = GenParams::default();

    match body.get("prompt") {
        None | Some(Value::Null) => {}
        Some(Value::String(s)) => params.prompt = s.clone(),
        Some(other) => {
            let msg = "Input should be a valid string".to_string();
            problems.push(problem(Some("prompt"), msg, "string_type", Some(other)));
        }
    }
    match body.get("num_images") {
        None | Some(Value::Null) => {}
        Some(v) => match v.as_u64() {
            Some(n) if (1..=MAX_IMAGES).contains(&n) => params.num_images = n as u32,
            Some(0) => problems.push(problem(
                Some("num_images"),
                "Input should be greater than or equal to 1".into(),
                "greater_than_equal",
                Some(v),
            )),
            Some(_) => problems.push(problem(
                Some("num_images"),
                format!("Input should be less than or equal to {MAX_IMAGES}"),
                "less_than_equal",
                Some(v),
            )),
            None if v.as_i64().is_some() => problems.push(problem(
                Some("num_images"),
                "Input should be greater than or equal to 1".into(),
                "greater_than_equal",
                Some(v),
            )),
            None => problems.push(problem(
                Some("num_images"),
                "Input should be a valid integer".into(),
                "int_type",
                Some(v),
            )),
        },
    }
    match body.get("seed") {
        None | Some(Value::Null) => params.seed = u64::from(rand::random::<u32>()),
        Some(v) => match (v.as_u64(), v.as_i64()) {
            (Some(n), _) => params.seed = n,
            (None, Some(n)) => params.seed = n as u64,
            _ => problems.push(problem(
                Some("seed"),
                "Input should be a valid integer".into(),
                "int_type",
                Some(v),
            )),
        },
    }
    match body.get("sync_mode") {
        None | Some(Value::Null) => {}
        Some(Value::Bool(b)) => params.sync_mode = *b,
        Some(other) => {
            let msg = "Input should be a valid boolean".to_string();
            problems.push(problem(Some("sync_mode"), msg, "bool_type", Some(other)));
        }
    }
    let aspect = enum_field(&body, "aspect_ratio", &ASPECT_RATIOS, "auto", &mut problems);
    let resolution = enum_field(&body, "resolution", &RESOLUTIONS, "1K", &mut problems);
    let format = enum_field(&body, "output_format", &FORMATS, "png", &mut problems);
    params.format = Format::from_name(format).unwrap_or(Format::Png);
    // `auto` keeps the reference image's shape on fal; the fake always answers square.
    if let Some((w, h)) = dimensions(aspect, resolution) {
        (params.width, params.height) = (w, h);
    }
    if problems.is_empty() {
        Ok(params)
    } else {
        Err(problems)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_values() {
        let p = parse(br#"{"prompt":"a cat"}"#).unwrap();
        assert_eq!(
            (p.width, p.height, p.num_images, p.format),
            (1024, 1024, 1, Format::Png)
        );
        assert!(!p.sync_mode);
        let body = br#"{"prompt":"x","num_images":2,"aspect_ratio":"16:9","resolution":"2K",
            "output_format":"webp","sync_mode":true,"seed":7,"image_urls":["https://a/b.png"]}"#;
        let p = parse(body).unwrap();
        assert_eq!(
            (p.width, p.height, p.num_images, p.seed),
            (2048, 1152, 2, 7)
        );
        assert_eq!(p.format, Format::Webp);
        assert!(p.sync_mode);
        assert!(parse(b"{}").is_ok());
    }

    #[test]
    fn bad_bodies_are_fastapi_422_details() {
        let d = parse(b"not json").unwrap_err();
        assert_eq!(d[0]["type"], "json_invalid");
        assert_eq!(d[0]["loc"], json!(["body"]));
        assert_eq!(parse(b"[1]").unwrap_err()[0]["type"], "json_invalid");
        let d = parse(br#"{"num_images":9,"aspect_ratio":"7:1","sync_mode":"yes"}"#).unwrap_err();
        let fields: Vec<&Value> = d.iter().map(|e| &e["loc"][1]).collect();
        assert_eq!(fields, vec!["num_images", "sync_mode", "aspect_ratio"]);
        assert_eq!(d[0]["type"], "less_than_equal");
        assert_eq!(d[2]["type"], "enum");
        assert_eq!(d[2]["input"], "7:1");
        assert_eq!(
            parse(br#"{"num_images":0}"#).unwrap_err()[0]["type"],
            "greater_than_equal"
        );
        assert_eq!(
            parse(br#"{"num_images":1.5}"#).unwrap_err()[0]["type"],
            "int_type"
        );
    }
}
