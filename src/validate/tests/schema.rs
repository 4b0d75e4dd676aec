//! Schema checks: defaults, each field's violation with its loc and type, many at once.

use serde_json::{Value, json};

use super::*;

#[test]
fn a_valid_edit_input_passes_with_defaults_applied() {
    let validators = shipped();
    let input = edit(&validators, &edit_input(json!({}))).unwrap();
    assert_eq!(input.num_images(), 1);
    assert_eq!(input.resolution(), "1K");
    assert!(!input.sync_mode());
    assert!(!input.enable_web_search());
    let expected = json!({
        "prompt": "make the sky purple",
        "num_images": 1,
        "aspect_ratio": "auto",
        "output_format": "png",
        "resolution": "1K",
        "safety_tolerance": "4",
        "sync_mode": false,
        "limit_generations": true,
        "enable_web_search": false,
        "system_prompt": "",
    });
    assert_eq!(input.image_count, 1);
    assert_eq!(Value::Object(input.input), expected);
}

#[test]
fn given_values_are_kept_and_read_by_the_accessors() {
    let validators = shipped();
    let body = edit_input(json!({
        "num_images": 3, "resolution": "4K", "enable_web_search": true, "seed": 7,
        "aspect_ratio": "16:9", "output_format": "webp", "safety_tolerance": "1",
        "limit_generations": false, "system_prompt": "be brief",
    }));
    let input = edit(&validators, &body).unwrap();
    assert_eq!(input.num_images(), 3);
    assert_eq!(input.resolution(), "4K");
    assert!(input.enable_web_search());
    assert_eq!(input.input["seed"], 7);
    assert_eq!(input.input["aspect_ratio"], "16:9");
    // nullable in the OpenAPI 3.0 sense
    assert!(
        edit(
            &validators,
            &edit_input(json!({})).tap_insert("seed", Value::Null)
        )
        .is_ok()
    );
}

#[test]
fn text_to_image_defaults_and_fields() {
    let validators = shipped();
    let t2i = validators.get(T2I_ID).unwrap();
    let input = run(t2i, &json!({"prompt": "a red fox"})).unwrap();
    assert_eq!(input.input["aspect_ratio"], "1:1");
    assert_eq!(input.input["resolution"], "1K");
    assert!(!input.input.contains_key("image_urls"));
    assert_eq!(
        problems(run(t2i, &json!({"prompt": "a red fox", "image_urls": []}))),
        [(json!(["body", "image_urls"]), "extra_forbidden".to_string())]
    );
}

#[test]
fn each_field_reports_its_own_loc_and_type() {
    let validators = shipped();
    let long_prompt = "x".repeat(50_001);
    let cases: Vec<(Value, Value, &str)> = vec![
        (
            json!({"prompt": null}),
            json!(["body", "prompt"]),
            "missing",
        ),
        (
            json!({"prompt": "ab"}),
            json!(["body", "prompt"]),
            "string_too_short",
        ),
        (
            json!({"prompt": long_prompt}),
            json!(["body", "prompt"]),
            "string_too_long",
        ),
        (
            json!({"prompt": 5}),
            json!(["body", "prompt"]),
            "string_type",
        ),
        (
            json!({"image_urls": null}),
            json!(["body", "image_urls"]),
            "missing",
        ),
        (
            json!({"image_urls": "https://a.b/c.png"}),
            json!(["body", "image_urls"]),
            "list_type",
        ),
        (
            json!({"image_urls": ["https://a.b/c", 5]}),
            json!(["body", "image_urls", 1]),
            "string_type",
        ),
        (
            json!({"num_images": 0}),
            json!(["body", "num_images"]),
            "greater_than_equal",
        ),
        (
            json!({"num_images": 5}),
            json!(["body", "num_images"]),
            "less_than_equal",
        ),
        (
            json!({"num_images": 1.5}),
            json!(["body", "num_images"]),
            "int_type",
        ),
        (
            json!({"num_images": "2"}),
            json!(["body", "num_images"]),
            "int_type",
        ),
        (
            json!({"aspect_ratio": "7:3"}),
            json!(["body", "aspect_ratio"]),
            "enum",
        ),
        (
            json!({"output_format": "gif"}),
            json!(["body", "output_format"]),
            "enum",
        ),
        (
            json!({"resolution": "8K"}),
            json!(["body", "resolution"]),
            "enum",
        ),
        (
            json!({"resolution": "1k"}),
            json!(["body", "resolution"]),
            "enum",
        ),
        (
            json!({"safety_tolerance": "7"}),
            json!(["body", "safety_tolerance"]),
            "enum",
        ),
        (
            json!({"safety_tolerance": 4}),
            json!(["body", "safety_tolerance"]),
            "string_type",
        ),
        (
            json!({"sync_mode": "yes"}),
            json!(["body", "sync_mode"]),
            "bool_type",
        ),
        (
            json!({"limit_generations": 1}),
            json!(["body", "limit_generations"]),
            "bool_type",
        ),
        (
            json!({"enable_web_search": []}),
            json!(["body", "enable_web_search"]),
            "bool_type",
        ),
        (json!({"seed": "42"}), json!(["body", "seed"]), "int_type"),
        (
            json!({"system_prompt": 5}),
            json!(["body", "system_prompt"]),
            "string_type",
        ),
    ];
    for (change, loc, kind) in cases {
        let got = problems(edit(&validators, &edit_input(change.clone())));
        assert_eq!(got, [(loc, kind.to_string())], "for {change}");
    }
}

#[test]
fn messages_name_the_allowed_values_and_ranges() {
    let validators = shipped();
    let msg = |change: Value| {
        violations(edit(&validators, &edit_input(change)))[0]
            .msg
            .clone()
    };
    assert_eq!(
        msg(json!({"output_format": "gif"})),
        "Input should be 'jpeg', 'png' or 'webp'"
    );
    assert_eq!(
        msg(json!({"num_images": 9})),
        "Input should be less than or equal to 4"
    );
    assert_eq!(
        msg(json!({"num_images": 0})),
        "Input should be greater than or equal to 1"
    );
    assert_eq!(
        msg(json!({"prompt": "ab"})),
        "String should have at least 3 characters"
    );
    assert_eq!(msg(json!({"prompt": null})), "Field required");
    assert_eq!(
        msg(json!({"seed": "1"})),
        "Input should be a valid integer or null"
    );
    assert!(msg(json!({"aspect_ratio": "x"})).contains("'21:9'"));
}

#[test]
fn every_problem_is_reported_at_once() {
    let validators = shipped();
    let body = json!({
        "prompt": "a",
        "image_urls": ["http://a.example/x.png", 7, "https://ok.example/y.png"],
        "num_images": 9,
        "resolution": "8K",
        "sync_mode": "no",
        "colour": "blue",
    });
    let mut got = problems(edit(&validators, &body));
    got.sort_by_key(|(loc, _)| loc.to_string());
    let mut expected = vec![
        (json!(["body", "prompt"]), "string_too_short"),
        (json!(["body", "image_urls", 0]), "policy_image_url_scheme"),
        (json!(["body", "image_urls", 1]), "string_type"),
        (json!(["body", "num_images"]), "less_than_equal"),
        (json!(["body", "resolution"]), "enum"),
        (json!(["body", "sync_mode"]), "bool_type"),
        (json!(["body", "colour"]), "extra_forbidden"),
    ]
    .into_iter()
    .map(|(loc, kind)| (loc, kind.to_string()))
    .collect::<Vec<_>>();
    expected.sort_by_key(|(loc, _)| loc.to_string());
    assert_eq!(got, expected);
}

#[test]
fn unknown_fields_are_refused_unless_allowed() {
    let body = edit_input(json!({"colour": "blue", "123": 1}));
    let mut got = problems(edit(&shipped(), &body));
    got.sort_by_key(|(loc, _)| loc.to_string());
    assert_eq!(
        got,
        [
            (json!(["body", "123"]), "extra_forbidden".to_string()),
            (json!(["body", "colour"]), "extra_forbidden".to_string()),
        ]
    );
    let lenient = edit_with(|e| e.reject_unknown_fields = false);
    let input = edit(&lenient, &body).unwrap();
    assert_eq!(input.input["colour"], "blue");
}

#[test]
fn bodies_that_are_not_json_objects() {
    let validators = shipped();
    let validator = validators.get(EDIT_ID).unwrap();
    for (body, kind) in [
        (&b"{not json"[..], "json_invalid"),
        (b"", "json_invalid"),
        (b"[1,2]", "model_attributes_type"),
        (b"\"prompt\"", "model_attributes_type"),
        (b"null", "model_attributes_type"),
    ] {
        let got = problems(validator.validate(body));
        assert_eq!(got, [(json!(["body"]), kind.to_string())]);
    }
}

#[test]
fn very_long_arrays_are_judged_by_length_alone() {
    let urls = vec![json!(1); super::super::MAX_CHECKED_ITEMS + 1];
    let body = edit_input(json!({ "image_urls": urls, "num_images": 0 }));
    let got = problems(edit(&shipped(), &body));
    assert_eq!(
        got,
        [
            (
                json!(["body", "image_urls"]),
                "policy_max_image_urls".to_string()
            ),
            (
                json!(["body", "num_images"]),
                "greater_than_equal".to_string()
            ),
        ]
    );
    let unlimited = edit_with(|e| e.max_image_urls = None);
    assert_eq!(
        problems(edit(&unlimited, &body))[0],
        (json!(["body", "image_urls"]), "too_long".to_string())
    );
}

/// Inserting into a JSON object, for building bodies inline.
trait TapInsert {
    fn tap_insert(self, key: &str, value: Value) -> Self;
}

impl TapInsert for Value {
    fn tap_insert(mut self, key: &str, value: Value) -> Self {
        if let Some(map) = self.as_object_mut() {
            map.insert(key.into(), value);
        }
        self
    }
}
