//! Start-up: finding the input schema in an OpenAPI document, and what is refused.

use serde_json::{Value, json};

use super::*;
use crate::config::ConfigError;

/// Compiles the shipped config with the edit endpoint's document replaced by `document`.
fn compile_edit(document: Value) -> Result<Validators, ConfigError> {
    let mut schemas = shipped_schemas();
    schemas[0].1 = document;
    Validators::compile(&default_config(), schemas)
}

fn error_of(document: Value) -> String {
    match compile_edit(document) {
        Ok(_) => panic!("expected a compile error"),
        Err(e) => e.to_string(),
    }
}

/// A minimal OpenAPI 3.0 document for the edit endpoint around an input `schema`.
fn document_with(schema: Value, components: Value) -> Value {
    json!({
        "openapi": "3.0.4",
        "info": {"title": "t", "version": "1"},
        "paths": {"/fal-ai/nano-banana-pro/edit": {"post": {
            "requestBody": {"content": {"application/json": {"schema": schema}}}
        }}},
        "components": {"schemas": components},
    })
}

/// The validators live in shared server state.
const _: () = {
    const fn send_sync<T: Send + Sync>() {}
    send_sync::<Validators>();
    send_sync::<ValidatedInput>();
};

#[test]
fn the_shipped_configuration_compiles() {
    let validators = shipped();
    assert_eq!(validators.get(EDIT_ID).unwrap().endpoint_id(), EDIT_ID);
    assert!(validators.get(T2I_ID).is_some());
    assert!(validators.get("fal-ai/other").is_none());
}

#[test]
fn missing_pieces_are_named() {
    let shipped: Value = shipped_schemas()[0].1.clone();
    let mut no_path = shipped.clone();
    no_path["paths"]
        .as_object_mut()
        .unwrap()
        .remove("/fal-ai/nano-banana-pro/edit");
    let message = error_of(no_path);
    assert!(
        message.contains(EDIT_ID) && message.contains("no path `/fal-ai/nano-banana-pro/edit`"),
        "{message}"
    );
    assert!(message.contains("endpoints[0].schema"), "{message}");

    let mut no_target = shipped.clone();
    no_target["components"]["schemas"]
        .as_object_mut()
        .unwrap()
        .remove("NanoBananaProEditInput");
    let message = error_of(no_target);
    assert!(
        message.contains("#/components/schemas/NanoBananaProEditInput")
            && message.contains("points at nothing"),
        "{message}"
    );

    let mut no_body = shipped.clone();
    no_body["paths"]["/fal-ai/nano-banana-pro/edit"]["post"]
        .as_object_mut()
        .unwrap()
        .remove("requestBody");
    assert!(error_of(no_body).contains("has no `requestBody`"));

    assert!(error_of(json!({"openapi": "3.0.4"})).contains("no `paths`"));

    let missing_doc = Validators::compile(&default_config(), vec![shipped_schemas().remove(0)]);
    assert!(
        matches!(missing_doc, Err(ConfigError::Invalid { key, message }) if key == "endpoints[1].schema" && message.contains(T2I_ID))
    );
}

#[test]
fn allowed_resolutions_outside_the_schema_are_a_config_error() {
    let mut config = default_config();
    config.endpoints[0].allowed_resolutions = vec!["1K".into(), "8K".into()];
    let error = Validators::compile(&config, shipped_schemas())
        .err()
        .unwrap()
        .to_string();
    assert!(error.contains("`8K`") && error.contains("'4K'"), "{error}");
}

#[test]
fn openapi_3_0_keywords_are_translated() {
    let input = json!({
        "type": "object",
        "properties": {
            "prompt": {"type": "string", "example": "hi", "x-fal": 1},
            "strength": {"type": "number", "minimum": 0, "exclusiveMinimum": true, "maximum": 1, "exclusiveMaximum": false},
            "style": {"allOf": [{"$ref": "#/components/schemas/Style"}], "nullable": true, "default": "plain"},
            "tag": {"type": "string", "enum": ["a", "b"], "nullable": true},
        },
        "required": ["prompt"],
    });
    let components = json!({
        "Input": input,
        "Style": {"type": "string", "enum": ["plain", "fancy"]},
    });
    let validators = compile_edit(document_with(
        json!({"$ref": "#/components/schemas/Input"}),
        components,
    ))
    .unwrap();
    let v = validators.get(EDIT_ID).unwrap();
    let ok = run(v, &json!({"prompt": "hi", "strength": 1, "tag": null})).unwrap();
    assert_eq!(ok.input["style"], "plain");
    assert_eq!(
        problems(run(
            v,
            &json!({"prompt": "hi", "strength": 0, "style": "odd", "tag": "c"})
        )),
        [
            (json!(["body", "strength"]), "greater_than".to_string()),
            (json!(["body", "style"]), "enum".to_string()),
            (json!(["body", "tag"]), "enum".to_string()),
        ]
    );
}

#[test]
fn an_inline_schema_and_a_closed_schema_work() {
    let inline = json!({
        "type": "object",
        "properties": {"prompt": {"type": "string"}, "image_urls": {"type": "array", "items": {"type": "string"}}},
        "required": ["prompt"],
        "additionalProperties": false,
    });
    let validators = compile_edit(document_with(inline, json!({}))).unwrap();
    let v = validators.get(EDIT_ID).unwrap();
    assert!(run(v, &json!({"prompt": "hi"})).is_ok());
    // `additionalProperties: false` and the policy both refuse `x`: reported once.
    assert_eq!(
        problems(run(v, &json!({"prompt": "hi", "x": 1}))),
        [(json!(["body", "x"]), "extra_forbidden".to_string())]
    );
}

#[test]
fn a_non_local_ref_is_refused() {
    let doc = document_with(json!({"$ref": "https://example.com/s.json"}), json!({}));
    assert!(error_of(doc).contains("must point into `components`"));
}

#[test]
fn image_entries_are_checked_on_placeholders_only_when_the_schema_ignores_their_text() {
    let with_items = |items: Value, extra: Value| {
        let mut list = json!({"type": "array", "items": items, "description": "d", "maxItems": 3});
        if let (Some(list), Some(extra)) = (list.as_object_mut(), extra.as_object()) {
            list.extend(extra.clone());
        }
        let input = json!({
            "type": "object",
            "properties": {"prompt": {"type": "string"}, "image_urls": list},
            "required": ["prompt"],
        });
        compile_edit(document_with(
            json!({"$ref": "#/components/schemas/Input"}),
            json!({"Input": input, "Url": {"type": "string"}}),
        ))
        .unwrap()
    };
    let plain = with_items(json!({"type": "string", "title": "t"}), json!({}));
    assert!(plain.get(EDIT_ID).unwrap().image_placeholders);
    for (items, extra) in [
        (json!({"type": "string", "maxLength": 5}), json!({})),
        (json!({"type": "string", "pattern": "^https"}), json!({})),
        (json!({"$ref": "#/components/schemas/Url"}), json!({})),
        (json!({"type": "string"}), json!({"uniqueItems": true})),
    ] {
        let validators = with_items(items.clone(), extra.clone());
        let v = validators.get(EDIT_ID).unwrap();
        assert!(!v.image_placeholders, "{items} {extra}");
    }
    // With a text constraint the schema still sees the real strings.
    let validators = with_items(json!({"type": "string", "maxLength": 25}), json!({}));
    let v = validators.get(EDIT_ID).unwrap();
    let long = "https://cdn.example.com/long-name.png";
    assert_eq!(
        problems(run(v, &json!({"prompt": "p", "image_urls": [long]}))),
        [(
            json!(["body", "image_urls", 0]),
            "string_too_long".to_string()
        )]
    );
    // Duplicates are told apart from their text, not from placeholders.
    let validators = with_items(json!({"type": "string"}), json!({"uniqueItems": true}));
    let v = validators.get(EDIT_ID).unwrap();
    assert!(run(v, &json!({"prompt": "p", "image_urls": ["https://a.example/1.png", "https://a.example/2.png"]})).is_ok());
}
