//! The fast path of [`super::parse`]: the top-level object walked by hand, so the megabytes of
//! a data URI are read once, not three times. Pure.
//!
//! Through `serde_json`, a 2 MB data URI costs a scan for its closing quote, a UTF-8 check, and
//! then the policy's base64 scan. Here one pass over each `image_urls` string finds the closing
//! quote and, on the way, where its run of base64 characters begins ([`Entry::base64_from`]),
//! so the policy can skip its own scan. Every other value is still parsed by `serde_json`, one
//! value at a time. Anything this path does not handle (escapes, control characters or non-ASCII
//! bytes in a list string, malformed JSON) makes it give up, and `serde_json` parses the whole
//! body instead, with its exact error messages.

use serde_json::{Map, Value};
use std::borrow::Cow;

use super::data_uri::{B64_CHUNK, all_b64, is_b64, padding};
use super::image_url::has_scheme;
use super::parse::{Entry, Parsed};

/// Parses `body` as a top-level object, or `None` when this path gives up (see the module doc).
pub(super) fn parse<'a>(
    body: &'a [u8],
    list_field: &str,
    placeholders: bool,
) -> Option<Parsed<'a>> {
    let mut at = skip_ws(body, 0);
    if body.get(at) != Some(&b'{') {
        return None;
    }
    at = skip_ws(body, at + 1);
    let mut fields = Map::new();
    let mut list = None;
    if body.get(at) == Some(&b'}') {
        return end(body, at + 1, fields, list);
    }
    loop {
        if body.get(at) != Some(&b'"') {
            return None;
        }
        let (key, after) = plain_string(body, at + 1)?;
        at = skip_ws(body, after);
        if body.get(at) != Some(&b':') {
            return None;
        }
        at = skip_ws(body, at + 1);
        let value = if key == list_field && body.get(at) == Some(&b'[') {
            let (entries, values, after) = entries(body, at + 1, placeholders)?;
            at = after;
            list = Some(entries);
            Value::Array(values)
        } else {
            let (value, after) = value(body, at)?;
            at = after;
            if key == list_field {
                list = None; // a repeated key: the last one wins, as in `Value`
            }
            value
        };
        fields.insert(key.to_owned(), value);
        at = skip_ws(body, at);
        match body.get(at) {
            Some(b',') => at = skip_ws(body, at + 1),
            Some(b'}') => return end(body, at + 1, fields, list),
            _ => return None,
        }
    }
}

/// The object ended at `at`: only whitespace may follow.
fn end<'a>(
    body: &[u8],
    at: usize,
    fields: Map<String, Value>,
    list: Option<Vec<Option<Entry<'a>>>>,
) -> Option<Parsed<'a>> {
    (skip_ws(body, at) == body.len()).then_some(Parsed { fields, list })
}

fn skip_ws(body: &[u8], mut at: usize) -> usize {
    while let Some(b' ' | b'\t' | b'\n' | b'\r') = body.get(at) {
        at += 1;
    }
    at
}

/// A string without escapes or control characters (a key, or a plain value), starting after
/// its opening quote; and where its closing quote ends. `None` for anything else.
fn plain_string(body: &[u8], start: usize) -> Option<(&str, usize)> {
    let text = before_quote(body.get(start..)?, |b| b >= 0x20)?;
    Some((std::str::from_utf8(text).ok()?, start + text.len() + 1))
}

/// The bytes of `rest` up to its first `"`, if no escape and no byte that `allowed` refuses
/// comes first.
fn before_quote(rest: &[u8], allowed: impl Fn(u8) -> bool) -> Option<&[u8]> {
    let len = rest
        .iter()
        .position(|&b| b == b'"' || b == b'\\' || !allowed(b))?;
    (rest[len] == b'"').then(|| &rest[..len])
}

/// One JSON value from `at`, and where it ends: a string without escapes or a literal here,
/// anything else by `serde_json`.
fn value(body: &[u8], at: usize) -> Option<(Value, usize)> {
    match body.get(at)? {
        b'"' => {
            if let Some((text, after)) = plain_string(body, at + 1) {
                return Some((Value::String(text.to_owned()), after));
            }
        }
        b't' if body[at..].starts_with(b"true") => return Some((Value::Bool(true), at + 4)),
        b'f' if body[at..].starts_with(b"false") => return Some((Value::Bool(false), at + 5)),
        b'n' if body[at..].starts_with(b"null") => return Some((Value::Null, at + 4)),
        _ => {}
    }
    let mut values = serde_json::Deserializer::from_slice(body.get(at..)?).into_iter::<Value>();
    let value = values.next()?.ok()?;
    Some((value, at + values.byte_offset()))
}

/// The list field's entries from after its `[`: each string entry (and its place in the list
/// value), and where the `]` ends.
#[allow(clippy::type_complexity)]
fn entries(
    body: &[u8],
    start: usize,
    placeholders: bool,
) -> Option<(Vec<Option<Entry<'_>>>, Vec<Value>, usize)> {
    let mut entries = Vec::new();
    let mut values = Vec::new();
    let mut at = skip_ws(body, start);
    if body.get(at) == Some(&b']') {
        return Some((entries, values, at + 1));
    }
    loop {
        if body.get(at) == Some(&b'"') {
            let (entry, after) = string(body, at + 1)?;
            values.push(entry.schema_value(placeholders));
            entries.push(Some(entry));
            at = after;
        } else {
            let (value, after) = value(body, at)?;
            values.push(value);
            entries.push(None);
            at = after;
        }
        at = skip_ws(body, at);
        match body.get(at) {
            Some(b',') => at = skip_ws(body, at + 1),
            Some(b']') => return Some((entries, values, at + 1)),
            _ => return None,
        }
    }
}

/// A list string from after its opening quote, in one pass: its text (printable ASCII without
/// escapes, or `None`) and where its closing quote ends. Only a data URI's base64 run is
/// tracked; any other text reports it unknown (its length).
fn string(body: &[u8], start: usize) -> Option<(Entry<'_>, usize)> {
    let rest = body.get(start..)?;
    if !has_scheme(rest, b"data:") {
        // Not a data URI: nothing asks for its base64 run, so only its end is looked for.
        let text = before_quote(rest, |b| (0x20..0x80).contains(&b))?;
        return Some((
            Entry {
                text: Cow::Borrowed(text),
                base64_from: text.len(),
            },
            start + text.len() + 1,
        ));
    }
    // The last three bytes outside the base64 alphabet (most recent first): up to two of them
    // may be the final `=` padding, and the one before marks where the base64 run begins.
    let mut marks = [None::<usize>; 3];
    let mut at = start;
    let close = 'scan: loop {
        let chunk = body.get(at..body.len().min(at + B64_CHUNK))?;
        if chunk.is_empty() {
            return None; // unterminated
        }
        if chunk.len() == B64_CHUNK && all_b64(chunk) {
            at += B64_CHUNK;
            continue;
        }
        // Byte by byte through this chunk only, so any input is read in linear time.
        for (i, &b) in chunk.iter().enumerate() {
            if is_b64(b) {
                continue;
            }
            match b {
                b'"' => break 'scan at + i,
                b'\\' | 0..0x20 | 0x80.. => return None,
                _ => marks = [Some(at + i), marks[0], marks[1]],
            }
        }
        at += chunk.len();
    };
    // Printable ASCII only (anything else made the scan give up), so valid UTF-8.
    let text = &body[start..close];
    let body_end = close - padding(text);
    let base64_from = marks
        .into_iter()
        .flatten()
        .find(|&mark| mark < body_end)
        .map_or(0, |mark| mark + 1 - start);
    Some((
        Entry {
            text: Cow::Borrowed(text),
            base64_from,
        },
        close + 1,
    ))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn first(body: &[u8]) -> Entry<'_> {
        let parsed = parse(body, "l", false).unwrap();
        parsed.list.unwrap().into_iter().next().unwrap().unwrap()
    }

    #[test]
    fn base64_run_starts_after_the_last_other_byte_before_the_padding() {
        let uri = |s: &str| format!(r#"{{"l":["{s}"]}}"#);
        for (text, from) in [
            ("data:image/png;base64,QUJD", 22),
            ("data:image/png;base64,QUI=", 22),
            ("data:image/png;base64,QQ==", 22),
            ("data:image/png;base64,Q===", 24),
            ("data:image/png;base64,Q=Q=", 24),
            ("data:,QUJD", 6),
            ("data:==", 5),
            // Not data URIs: the run is not tracked (reported as the text's length).
            ("abc", 3),
            ("", 0),
            ("==", 2),
            ("https://a-b", 11),
        ] {
            let body = uri(text);
            let entry = first(body.as_bytes());
            assert_eq!(entry.as_str(), text);
            assert_eq!(entry.base64_from, from, "{text}");
        }
    }

    #[test]
    fn gives_up_on_what_it_does_not_handle() {
        for body in [
            &br#"{"l":["a\/b"]}"#[..],
            "{\"l\":[\"caf\u{e9}\"]}".as_bytes(),
            b"{\"l\":[\"a\tb\"]}",
            br#"{"l":["unterminated]}"#,
            br#"{"a\u0041":1}"#,
            br#"{"a":1,}"#,
            br#"{"a":1} x"#,
            br#"{"a":}"#,
            br#"{"l":[1,]}"#,
            br#"[1]"#,
            b"",
            b"{",
        ] {
            assert!(
                parse(body, "l", true).is_none(),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn long_strings_cross_chunks() {
        let payload = "QUJD".repeat(1000);
        let body = format!(r#"{{"l":["data:image/png;base64,{payload}", "x"], "n": 1}}"#);
        let parsed = parse(body.as_bytes(), "l", true).unwrap();
        let list = parsed.list.unwrap();
        assert_eq!(list[0].as_ref().unwrap().base64_from, 22);
        assert_eq!(list[0].as_ref().unwrap().text.len(), 22 + payload.len());
        assert_eq!(list[1].as_ref().unwrap().as_str(), "x");
        assert_eq!(parsed.fields["n"], 1);
    }

    fn json_text() -> impl Strategy<Value = String> {
        prop_oneof![
            "[ -~]{0,80}",
            "[A-Za-z0-9+/=]{0,200}",
            ".{0,20}",
            "[A-Za-z0-9+/]{0,150}".prop_map(|p| format!("data:image/png;base64,{p}==")),
        ]
    }

    proptest! {
        /// Whatever it accepts, it parses exactly as `serde_json` does, and the base64 run it
        /// reports is the longest one before the padding.
        #[test]
        fn agrees_with_serde_json(
            texts in proptest::collection::vec(json_text(), 0..4),
            prompt in ".{0,20}",
            n in proptest::option::of(any::<i64>()),
            flag in proptest::option::of(any::<bool>()),
            pretty in any::<bool>(),
        ) {
            let mut object = serde_json::json!({"prompt": prompt, "l": texts, "flag": flag});
            if let Some(n) = n {
                object["n"] = n.into();
            }
            let body = if pretty {
                serde_json::to_vec_pretty(&object).unwrap()
            } else {
                serde_json::to_vec(&object).unwrap()
            };
            let all_plain = texts.iter().all(|t| t.bytes().all(|b| (0x20..0x80).contains(&b) && b != b'"' && b != b'\\'));
            let Some(parsed) = parse(&body, "l", false) else {
                prop_assert!(!all_plain, "gave up on {}", String::from_utf8_lossy(&body));
                return Ok(());
            };
            prop_assert_eq!(Value::Object(parsed.fields), object);
            let entries = parsed.list.unwrap();
            prop_assert_eq!(entries.len(), texts.len());
            for (entry, text) in entries.iter().zip(&texts) {
                let entry = entry.as_ref().unwrap();
                prop_assert_eq!(&entry.as_str(), text);
                let bytes = text.as_bytes();
                if has_scheme(bytes, b"data:") {
                    let pad = padding(bytes);
                    let run = bytes[..bytes.len() - pad].iter().rev().take_while(|&&b| is_b64(b)).count();
                    prop_assert_eq!(entry.base64_from, bytes.len() - pad - run);
                } else {
                    prop_assert_eq!(entry.base64_from, bytes.len(), "not a data URI: unknown");
                }
            }
        }
    }
}
