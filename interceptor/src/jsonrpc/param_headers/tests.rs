use serde_json::{Value, json};

use super::*;

fn schema(props: Value) -> Value {
    json!({"type": "object", "properties": props})
}

fn names(s: &Value) -> Vec<(String, Vec<String>)> {
    declared(s)
        .unwrap()
        .into_iter()
        .map(|h| (h.name, h.path))
        .collect()
}

fn invalid(s: &Value) -> String {
    declared(s).unwrap_err().0
}

#[test]
fn top_level_and_nested_declarations_are_found() {
    let s = schema(json!({
        "region": {"type": "string", "x-mcp-header": "Region"},
        "query": {"type": "string"},
        "opts": {"type": "object", "properties": {
            "tenant": {"type": "integer", "x-mcp-header": "Tenant"},
            "dry": {"type": "boolean", "x-mcp-header": "Dry-Run"}}}
    }));
    let mut got = names(&s);
    got.sort();
    assert_eq!(
        got,
        vec![
            ("Dry-Run".into(), vec!["opts".into(), "dry".into()]),
            ("Region".into(), vec!["region".into()]),
            ("Tenant".into(), vec!["opts".into(), "tenant".into()]),
        ]
    );
    assert_eq!(
        declared(&schema(json!({"a": {"type": "string"}}))),
        Ok(vec![])
    );
    assert_eq!(declared(&Value::Null), Ok(vec![]));
}

#[test]
fn each_broken_rule_makes_the_schema_invalid() {
    let cases = [
        (
            json!({"a": {"type": "string", "x-mcp-header": ""}}),
            "not an HTTP token",
        ),
        (
            json!({"a": {"type": "string", "x-mcp-header": "Re gion"}}),
            "not an HTTP token",
        ),
        (
            json!({"a": {"type": "string", "x-mcp-header": "Re:gion"}}),
            "not an HTTP token",
        ),
        (
            json!({"a": {"type": "string", "x-mcp-header": "A\r\nX-Evil: 1"}}),
            "not an HTTP token",
        ),
        (
            json!({"a": {"type": "string", "x-mcp-header": "Zürich"}}),
            "not an HTTP token",
        ),
        (
            json!({"a": {"type": "string", "x-mcp-header": 7}}),
            "not a string",
        ),
        (
            json!({"a": {"type": "number", "x-mcp-header": "A"}}),
            "type \"number\"",
        ),
        (
            json!({"a": {"type": "object", "x-mcp-header": "A"}}),
            "type \"object\"",
        ),
        (
            json!({"a": {"type": ["string", "null"], "x-mcp-header": "A"}}),
            "type (none)",
        ),
        (json!({"a": {"x-mcp-header": "A"}}), "type (none)"),
        (
            json!({"a": {"type": "string", "x-mcp-header": "Region"},
                   "b": {"type": "string", "x-mcp-header": "region"}}),
            "case-insensitive",
        ),
    ];
    for (props, why) in cases {
        let got = invalid(&schema(props.clone()));
        assert!(got.contains(why), "{props}: {got}");
    }
}

#[test]
fn declarations_off_the_properties_chain_are_invalid() {
    let leaf = json!({"type": "string", "x-mcp-header": "A"});
    let cases = [
        json!({"type": "array", "items": leaf}),
        json!({"type": "array", "items": [leaf]}),
        json!({"type": "object", "properties": {"l": {"type": "array", "items": {
            "type": "object", "properties": {"a": leaf}}}}}),
        json!({"oneOf": [{"type": "object", "properties": {"a": leaf}}]}),
        json!({"$defs": {"x": {"type": "object", "properties": {"a": leaf}}}}),
        json!({"additionalProperties": leaf}),
        json!({"if": {"properties": {"a": leaf}}}),
        json!({"type": "object", "x-mcp-header": "Root"}),
    ];
    for s in cases {
        assert!(invalid(&s).contains("properties` alone"), "{s}");
    }
}

#[test]
fn instance_data_and_property_names_are_not_declarations() {
    // Data that happens to hold the key, and a property named like it.
    let s = schema(json!({
        "x-mcp-header": {"type": "string"},
        "a": {"type": "object", "default": {"x-mcp-header": "A"},
              "enum": [{"x-mcp-header": "B"}], "examples": [{"x-mcp-header": "C"}]}
    }));
    assert_eq!(declared(&s), Ok(vec![]));
}

#[test]
fn values_are_read_at_the_declared_path() {
    let h = ParamHeader {
        name: "Tenant".into(),
        path: vec!["opts".into(), "tenant".into()],
    };
    assert_eq!(h.header(), "mcp-param-tenant");
    let args = json!({"opts": {"tenant": 7}});
    assert_eq!(h.value(Some(&args)), Some(&json!(7)));
    assert_eq!(h.value(Some(&json!({"opts": {"tenant": null}}))), None);
    assert_eq!(h.value(Some(&json!({"opts": "x"}))), None);
    assert_eq!(h.value(Some(&json!({}))), None);
    assert_eq!(h.value(None), None);
}
