//! Query-string rules per call kind: only known parameters, with known values, re-encoded.

use super::{CallKind, TargetError, bad, forbidden};

/// Accepts the query of a `kind` call and returns it re-encoded (`None` when empty).
///
/// - submit: `fal_webhook`, only under a configured prefix;
/// - status and stream: `logs` = `0`/`1`/`true`/`false`;
/// - uploads: `storage_type` = `fal-cdn-v3` (required);
/// - anything else: no parameters.
pub(super) fn accept(
    kind: CallKind,
    raw: Option<&str>,
    webhook_prefixes: &[String],
) -> Result<Option<String>, TargetError> {
    let mut out = form_urlencoded::Serializer::new(String::new());
    let mut any = false;
    let mut storage_type = false;
    let mut seen: Vec<String> = Vec::new();
    for (name, value) in form_urlencoded::parse(raw.unwrap_or("").as_bytes()) {
        if seen.iter().any(|s| *s == name) {
            return Err(bad(
                "target_query",
                format!("the query parameter `{name}` is repeated"),
            ));
        }
        seen.push(name.to_string());
        match (kind, name.as_ref()) {
            (CallKind::Submit, "fal_webhook") => {
                if !webhook_allowed(&value, webhook_prefixes) {
                    return Err(forbidden(
                        "webhook_not_allowed",
                        "fal_webhook must start with one of fal.allowed_webhook_urls",
                    ));
                }
            }
            (CallKind::Status | CallKind::StatusStream, "logs") => {
                if !matches!(value.as_ref(), "0" | "1" | "true" | "false") {
                    return Err(bad("target_query", "`logs` must be 0 or 1"));
                }
            }
            (kind, "storage_type") if kind.is_upload() => {
                if value != "fal-cdn-v3" {
                    return Err(forbidden(
                        "target_query",
                        "only storage_type=fal-cdn-v3 is allowed",
                    ));
                }
                storage_type = true;
            }
            _ => {
                return Err(bad(
                    "target_query",
                    format!(
                        "the query parameter `{name}` is not allowed on a {} call",
                        kind.as_str()
                    ),
                ));
            }
        }
        out.append_pair(&name, &value);
        any = true;
    }
    if kind.is_upload() && !storage_type {
        return Err(forbidden(
            "target_query",
            "storage uploads need storage_type=fal-cdn-v3",
        ));
    }
    Ok(any.then(|| out.finish()))
}

/// A webhook URL is allowed when it is a plain https URL (no userinfo, no control characters)
/// that starts with one of the configured prefixes (each of which ends its host with `/`).
fn webhook_allowed(url: &str, prefixes: &[String]) -> bool {
    let plain = url.starts_with("https://")
        && url.chars().all(|c| c.is_ascii_graphic())
        && !url.contains('\\')
        && !url["https://".len()..]
            .split(['/', '?', '#'])
            .next()
            .unwrap_or("")
            .contains('@');
    plain && prefixes.iter().any(|p| url.starts_with(p.as_str()))
}
