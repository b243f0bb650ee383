use super::*;
use serde_json::json;

fn matcher(schema: serde_json::Value) -> JsonMatcher {
    JsonMatcher::new(&Schema::compile(&schema).unwrap())
}

/// Whether `text` is accepted whole (a complete value) and every prefix of it is allowed.
fn accepts(m: &JsonMatcher, text: &str) -> bool {
    let mut m = m.clone();
    m.feed(text.as_bytes()) && m.is_complete()
}

/// Whether some prefix of `text` is refused (a constrained sampler could never write it).
fn refuses(m: &JsonMatcher, text: &str) -> bool {
    let mut m = m.clone();
    !m.feed(text.as_bytes())
}

fn recipe_schema() -> serde_json::Value {
    json!({
        "type": "object",
        "properties": {
            "default_type": {"type": "string", "enum": ["Q4_0", "Q4_K", "Q8_0"]},
            "overrides": {"type": "array", "maxItems": 2, "items": {
                "type": "object",
                "properties": {"tensor": {"type": "string", "enum": ["token_embd\\.weight", "blk\\.\\d+\\.ffn_down\\.weight"]},
                               "type": {"type": "string", "enum": ["Q4_0", "Q4_K", "Q8_0"]}},
                "required": ["tensor", "type"], "additionalProperties": false}},
            "drop_layers": {"type": "array", "maxItems": 3, "items": {"type": "integer", "minimum": 0, "maximum": 29}},
            "ffn_prune": {"anyOf": [{"type": "null"}, {"type": "object", "properties": {"ratio": {"type": "number", "minimum": 0, "maximum": 0.75}}, "required": ["ratio"], "additionalProperties": false}]},
            "imatrix": {"type": "boolean"}
        },
        "required": ["default_type", "overrides", "drop_layers", "ffn_prune", "imatrix"],
        "additionalProperties": false
    })
}

#[test]
fn a_recipe_schema_admits_recipes_and_nothing_else() {
    let m = matcher(recipe_schema());
    for ok in [
        r#"{"default_type":"Q4_K","overrides":[],"drop_layers":[],"ffn_prune":null,"imatrix":false}"#,
        "{\n  \"imatrix\": true,\n  \"default_type\": \"Q8_0\",\n  \"overrides\": [{\"tensor\": \"blk\\\\.\\\\d+\\\\.ffn_down\\\\.weight\", \"type\": \"Q8_0\"}],\n  \"drop_layers\": [0, 29, 7],\n  \"ffn_prune\": {\"ratio\": 0.25}\n}",
        r#"{"default_type":"Q4_0","overrides":[{"type":"Q4_0","tensor":"token_embd\\.weight"}],"drop_layers":[10],"ffn_prune":{"ratio":0},"imatrix":false}"#,
    ] {
        assert!(accepts(&m, ok), "refused: {ok}");
    }
    for (bad, why) in [
        (r#"{"default_type":"Q5_K""#, "a type outside the enum"),
        (r#"{"default":"#, "an unknown key"),
        (r#"{"imatrix":true,"imatrix":"#, "a key twice"),
        (r#"{"drop_layers":[30"#, "a layer past the last"),
        (r#"{"drop_layers":[-1"#, "a negative layer"),
        (r#"{"drop_layers":[01"#, "a leading zero"),
        (
            r#"{"drop_layers":[1.5"#,
            "a fraction where an integer is wanted",
        ),
        (r#"{"drop_layers":[1,2,3,"#, "more items than maxItems"),
        (r#"{"ffn_prune":{"ratio":0.8}"#, "a ratio past its maximum"),
        (r#"{"imatrix":false}"#, "a required key missing"),
        (r#"{"imatrix":yes"#, "not a boolean"),
        (
            r#"{"overrides":[{"tensor":"output\\.weight""#,
            "a tensor outside the enum",
        ),
        (
            "{\"imatrix\":                          true",
            "a long run of blanks",
        ),
    ] {
        assert!(
            refuses(&m, bad) || !accepts(&m, bad),
            "{why}: allowed {bad}"
        );
    }
    // Nothing may follow a complete value.
    let mut done = m.clone();
    assert!(done.feed(
        br#"{"default_type":"Q4_K","overrides":[],"drop_layers":[],"ffn_prune":null,"imatrix":false}"#
    ));
    assert!(done.is_complete() && !done.allows(b" ") && !done.allows(b"{"));
}

#[test]
fn json_object_mode_takes_any_object() {
    let m = JsonMatcher::new(&Schema::any_object());
    for ok in [
        "{}",
        r#"{"a": [1, -2.5e3, "x\"y\u00e9", true, null, {"b": {}}]}"#,
        "{\"unicode\": \"héllo ✓\"}",
    ] {
        assert!(accepts(&m, ok), "refused: {ok}");
    }
    for bad in [
        "[1]",
        "\"s\"",
        "{\"a\" 1}",
        "{,}",
        "{\"a\":1,}",
        "{\"a\":01}",
        "{\"a\":\"\u{1}\"}",
    ] {
        assert!(refuses(&m, bad), "allowed: {bad}");
    }
    // Nesting is bounded.
    let deep = format!("{}1", "{\"a\":".repeat(MAX_NESTING));
    assert!(m.allows(deep.as_bytes()));
    assert!(!m.allows(format!("{}{{", "{\"a\":".repeat(MAX_NESTING)).as_bytes()));
    let mut m2 = m.clone();
    assert!(m2.feed(b"{\"a\": 1"));
    assert!(!m2.is_complete());
    assert!(m2.allows(b"}") && m2.allows(b"0") && m2.allows(b", \"b\"") && !m2.allows(b"]"));
}

#[test]
fn refs_literals_lengths_and_type_lists() {
    let m = matcher(json!({
        "$defs": {"color": {"enum": ["red", "green"]}},
        "type": "object",
        "properties": {
            "c": {"$ref": "#/$defs/color"},
            "n": {"type": ["integer", "null"]},
            "k": {"enum": [1, 10, true]},
            "s": {"type": "string", "minLength": 2, "maxLength": 3}
        },
        "required": ["c"]
    }));
    assert!(accepts(&m, r#"{"c":"red","n":null,"k":10,"s":"abc"}"#));
    assert!(accepts(&m, r#"{"k":1,"c":"green","n":-3}"#));
    assert!(accepts(&m, r#"{"k":true,"c":"green"}"#));
    assert!(refuses(&m, r#"{"c":"blue"#));
    assert!(refuses(&m, r#"{"c":"red","s":"abcd"#));
    assert!(!accepts(&m, r#"{"c":"red","s":"a"}"#));
    assert!(refuses(&m, r#"{"c":"red","k":2"#));
    assert!(refuses(&m, r#"{"c":"red","n":"1"#));
}

#[test]
fn unsupported_and_malformed_schemas_are_errors_naming_the_place() {
    for (schema, needle) in [
        (json!({"type": "string", "pattern": "^a"}), "`pattern`"),
        (
            json!({"type": "object", "properties": {"a": {"allOf": []}}}),
            "#/properties/a",
        ),
        (json!({"$ref": "#/$defs/missing"}), "$defs"),
        (json!({"type": "strnig"}), "unknown type 'strnig'"),
        (json!({"enum": []}), "non-empty"),
        (
            json!({"$defs": {"a": {"$ref": "#/$defs/a"}}, "$ref": "#/$defs/a"}),
            "recursive",
        ),
        (json!(false), "accepts nothing"),
        (json!(3), "must be an object"),
    ] {
        let e = Schema::compile(&schema).unwrap_err();
        assert!(e.contains(needle), "{schema}: {e}");
    }
}
