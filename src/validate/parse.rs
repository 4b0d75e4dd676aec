//! Parsing a request body once, with the strings of one list field left in the body. Pure.
//!
//! A 4 MB submit is almost all `image_urls` data URIs. Parsed into a `serde_json::Value` they
//! would be copied into fresh `String`s (megabytes allocated, copied and freed per request)
//! only to be scanned once by the policy. Here the top-level object becomes a `Value` as usual
//! except that field: its string entries are borrowed from the body (copied only if they hold
//! JSON escapes) and the `Value` gets either an empty string in their place (`placeholders`,
//! when the schema cannot tell one string from another) or a copy.

use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};
use std::borrow::Cow;
use std::fmt;

/// A body parsed by [`parse`].
pub(super) struct Parsed<'a> {
    /// The top-level fields (the list field's strings replaced or copied, see the module doc).
    pub fields: Map<String, Value>,
    /// The list field's entries, when it is a list: one per string entry, `None` for others.
    pub list: Option<Vec<Option<Entry<'a>>>>,
}

/// One string entry of the list field.
#[derive(Debug)]
pub(super) struct Entry<'a> {
    /// Its text, always valid UTF-8. Kept as bytes so that a data URI's megabytes, which the
    /// one-pass scan has already seen to be ASCII, are not checked for UTF-8 again.
    pub text: Cow<'a, [u8]>,
    /// Where its trailing run of base64 characters begins: every byte of `text` from here up to
    /// its final `=` padding (at most two) is in `A-Z a-z 0-9 + /`. `text.len()` when unknown
    /// (always for a text that is not a data URI: nothing asks).
    pub base64_from: usize,
}

impl<'a> Entry<'a> {
    /// An entry whose base64 run is unknown.
    fn unscanned(text: Cow<'a, str>) -> Self {
        Self {
            base64_from: text.len(),
            text: match text {
                Cow::Borrowed(text) => Cow::Borrowed(text.as_bytes()),
                Cow::Owned(text) => Cow::Owned(text.into_bytes()),
            },
        }
    }

    /// Its text as a string.
    pub fn as_str(&self) -> Cow<'_, str> {
        // `from_utf8` checks ASCII a word at a time; `from_utf8_lossy` goes byte by byte.
        match std::str::from_utf8(&self.text) {
            Ok(text) => Cow::Borrowed(text),
            Err(_) => String::from_utf8_lossy(&self.text),
        }
    }

    /// What the schema sees in its place: an empty string with `placeholders` (see the module
    /// doc), else a copy of the text.
    pub fn schema_value(&self, placeholders: bool) -> Value {
        Value::String(if placeholders {
            String::new()
        } else {
            self.as_str().into_owned()
        })
    }
}

/// Parses `body`; `Ok(None)` when it is valid JSON but not an object. The common shape (an
/// object whose list strings are plain ASCII) takes the one-pass path of [`super::scan`];
/// everything else is parsed by `serde_json` here.
pub(super) fn parse<'a>(
    body: &'a [u8],
    list_field: &str,
    placeholders: bool,
) -> Result<Option<Parsed<'a>>, serde_json::Error> {
    match super::scan::parse(body, list_field, placeholders) {
        Some(parsed) => Ok(Some(parsed)),
        None => parse_serde(body, list_field, placeholders),
    }
}

/// [`parse`] through `serde_json` alone: any body, with `serde_json`'s error messages.
fn parse_serde<'a>(
    body: &'a [u8],
    list_field: &str,
    placeholders: bool,
) -> Result<Option<Parsed<'a>>, serde_json::Error> {
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    let parsed = de::Deserializer::deserialize_any(
        &mut deserializer,
        TopVisitor {
            list_field,
            placeholders,
        },
    )?;
    deserializer.end()?;
    Ok(parsed)
}

struct TopVisitor<'f> {
    list_field: &'f str,
    placeholders: bool,
}

impl<'de> Visitor<'de> for TopVisitor<'_> {
    type Value = Option<Parsed<'de>>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut fields = Map::new();
        let mut list = None;
        while let Some(key) = map.next_key::<String>()? {
            if key != self.list_field {
                let value = map.next_value::<Value>()?;
                fields.insert(key, value);
                continue;
            }
            // A repeated key: the last one wins, as in `Value`.
            let value = match map.next_value_seed(Level::Field)? {
                Node::List(entries) => {
                    let mut values = Vec::with_capacity(entries.len());
                    let mut texts = Vec::with_capacity(entries.len());
                    for entry in entries {
                        match entry {
                            Node::Text(text) => {
                                let entry = Entry::unscanned(text);
                                values.push(entry.schema_value(self.placeholders));
                                texts.push(Some(entry));
                            }
                            Node::List(_) => {} // never produced for an entry
                            Node::Value(value) => {
                                values.push(value);
                                texts.push(None);
                            }
                        }
                    }
                    list = Some(texts);
                    Value::Array(values)
                }
                Node::Text(text) => {
                    list = None;
                    Value::String(text.into_owned())
                }
                Node::Value(value) => {
                    list = None;
                    value
                }
            };
            fields.insert(key, value);
        }
        Ok(Some(Parsed { fields, list }))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(None)
    }

    fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
}

/// The list field's value, or one of its entries.
enum Node<'a> {
    /// A string (an entry's text is borrowed when it holds no escapes).
    Text(Cow<'a, str>),
    /// The field's entries.
    List(Vec<Node<'a>>),
    /// Anything else, as a `Value`.
    Value(Value),
}

/// Where in the list field the deserializer is.
#[derive(Clone, Copy)]
enum Level {
    /// The field's value itself.
    Field,
    /// One entry of the list.
    Entry,
}

impl<'de> DeserializeSeed<'de> for Level {
    type Value = Node<'de>;

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<Node<'de>, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Level {
    type Value = Node<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_borrowed_str<E>(self, text: &'de str) -> Result<Node<'de>, E> {
        Ok(Node::Text(Cow::Borrowed(text)))
    }

    fn visit_str<E>(self, text: &str) -> Result<Node<'de>, E> {
        Ok(Node::Text(Cow::Owned(text.to_owned())))
    }

    fn visit_string<E>(self, text: String) -> Result<Node<'de>, E> {
        Ok(Node::Text(Cow::Owned(text)))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node<'de>, A::Error> {
        match self {
            Level::Field => {
                let mut entries = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(64));
                while let Some(entry) = seq.next_element_seed(Level::Entry)? {
                    entries.push(entry);
                }
                Ok(Node::List(entries))
            }
            Level::Entry => {
                let mut values = Vec::new();
                while let Some(value) = seq.next_element::<Value>()? {
                    values.push(value);
                }
                Ok(Node::Value(Value::Array(values)))
            }
        }
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node<'de>, A::Error> {
        let mut object = Map::new();
        while let Some((key, value)) = map.next_entry::<String, Value>()? {
            object.insert(key, value);
        }
        Ok(Node::Value(Value::Object(object)))
    }

    fn visit_bool<E>(self, value: bool) -> Result<Node<'de>, E> {
        Ok(Node::Value(Value::Bool(value)))
    }

    fn visit_i64<E>(self, value: i64) -> Result<Node<'de>, E> {
        Ok(Node::Value(Value::Number(value.into())))
    }

    fn visit_u64<E>(self, value: u64) -> Result<Node<'de>, E> {
        Ok(Node::Value(Value::Number(value.into())))
    }

    fn visit_f64<E>(self, value: f64) -> Result<Node<'de>, E> {
        Ok(Node::Value(
            Number::from_f64(value).map_or(Value::Null, Value::Number),
        ))
    }

    fn visit_unit<E>(self) -> Result<Node<'de>, E> {
        Ok(Node::Value(Value::Null))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn texts(parsed: &Parsed<'_>) -> Vec<Option<String>> {
        parsed
            .list
            .as_ref()
            .unwrap()
            .iter()
            .map(|t| t.as_ref().map(|t| t.as_str().into_owned()))
            .collect()
    }

    #[test]
    fn list_strings_are_borrowed_and_replaced_by_placeholders() {
        let body = br#"{"prompt":"x","image_urls":["data:image/png;base64,AAAA","https://a/b",3,null,["n"]],"n":1}"#;
        for parse in [parse, parse_serde] {
            borrowed_and_replaced(parse(body, "image_urls", true).unwrap().unwrap());
        }
    }

    fn borrowed_and_replaced(parsed: Parsed<'_>) {
        let list = parsed.list.as_ref().unwrap();
        assert!(matches!(
            list[0],
            Some(Entry {
                text: Cow::Borrowed(_),
                ..
            })
        ));
        assert_eq!(
            texts(&parsed),
            [
                Some("data:image/png;base64,AAAA".to_string()),
                Some("https://a/b".into()),
                None,
                None,
                None
            ]
        );
        assert_eq!(
            Value::Object(parsed.fields),
            serde_json::json!({"prompt":"x","image_urls":["","",3,null,["n"]],"n":1})
        );
    }

    #[test]
    fn escaped_strings_are_unescaped_copies() {
        let body = br#"{"image_urls":["a\/b\u0041"]}"#;
        let parsed = parse(body, "image_urls", false).unwrap().unwrap();
        assert_eq!(texts(&parsed), [Some("a/bA".to_string())]);
        assert_eq!(parsed.fields["image_urls"][0], "a/bA");
    }

    #[test]
    fn the_last_of_repeated_keys_wins_and_non_lists_have_no_entries() {
        for parse in [parse, parse_serde] {
            repeated_keys(|body| parse(body, "image_urls", true).unwrap().unwrap());
        }
    }

    fn repeated_keys(object: impl Fn(&'static [u8]) -> Parsed<'static>) {
        let parsed = object(br#"{"image_urls":["a"],"image_urls":"b"}"#);
        assert!(parsed.list.is_none());
        assert_eq!(parsed.fields["image_urls"], "b");
        let parsed = object(br#"{"image_urls":"b","image_urls":["a"]}"#);
        assert_eq!(texts(&parsed), [Some("a".to_string())]);
    }

    #[test]
    fn non_objects_and_bad_json() {
        for body in [&b"[1,2]"[..], b"3", b"\"s\"", b"null", b"true", b"1.5"] {
            assert!(parse(body, "image_urls", true).unwrap().is_none());
        }
        for body in [
            &b"{"[..],
            b"{\"a\":}",
            b"{} x",
            b"",
            b"{\"image_urls\":[\"a]}",
        ] {
            assert!(parse(body, "image_urls", true).is_err());
        }
    }

    /// The fields and the list entries' text of a parsed object.
    type Object = (Value, Option<Vec<Option<Vec<u8>>>>);

    /// What a parse produced, comparable across the two paths (the base64 run is only known
    /// to the fast one): `None` for an error.
    fn outcome(result: Result<Option<Parsed<'_>>, serde_json::Error>) -> Option<Option<Object>> {
        let parsed = result.ok()?;
        Some(parsed.map(|p| {
            let list = p.list.map(|l| {
                l.into_iter()
                    .map(|e| e.map(|e| e.text.into_owned()))
                    .collect()
            });
            (Value::Object(p.fields), list)
        }))
    }

    proptest! {
        /// Any body, including broken ones: the fast path and `serde_json` alone agree on
        /// accepting it and on what it holds, and neither panics.
        #[test]
        fn both_paths_agree_on_mutated_bodies(
            edits in proptest::collection::vec(
                (any::<prop::sample::Index>(), 0u8..3, prop::sample::select(b"{}[]\",:\\ 0a9e.-\x1f\x80=".to_vec())),
                0..4,
            ),
            pretty in any::<bool>(),
        ) {
            let object = serde_json::json!({
                "prompt": "a cat", "image_urls": ["data:image/png;base64,QUJD", "https://x/y", 3, null],
                "n": 1.5, "o": {"k": [true, false]}, "image_urls2": ["z"],
                "t": true, "f": false, "z": null, "s": "caf\u{e9}",
            });
            let mut body = if pretty {
                serde_json::to_vec_pretty(&object).unwrap()
            } else {
                serde_json::to_vec(&object).unwrap()
            };
            for (at, kind, byte) in edits {
                let i = at.index(body.len() + 1);
                match kind {
                    0 if i < body.len() => body[i] = byte,
                    1 if i < body.len() => {
                        body.remove(i);
                    }
                    _ => body.insert(i, byte),
                }
            }
            let fast = outcome(parse(&body, "image_urls", false));
            let slow = outcome(parse_serde(&body, "image_urls", false));
            prop_assert_eq!(fast, slow, "body {}", String::from_utf8_lossy(&body));
        }

        /// Without placeholders the fields are exactly what `serde_json` parses.
        #[test]
        fn fields_match_serde_json(
            prompt in ".{0,20}",
            urls in proptest::collection::vec(".{0,12}", 0..4),
            n in proptest::option::of(any::<i64>()),
        ) {
            let mut object = serde_json::json!({"prompt": prompt, "image_urls": urls});
            if let Some(n) = n {
                object["n"] = n.into();
            }
            let body = serde_json::to_vec(&object).unwrap();
            for parse in [parse, parse_serde] {
                let parsed = parse(&body, "image_urls", false).unwrap().unwrap();
                let texts: Vec<String> =
                    parsed.list.unwrap().into_iter().map(|t| t.unwrap().as_str().into_owned()).collect();
                prop_assert_eq!(&texts, &urls);
                prop_assert_eq!(Value::Object(parsed.fields), object.clone());
            }
        }
    }
}
