//! MCP 2026-07-28 (SEP-2243) `x-mcp-header` declarations: a tool's
//! `inputSchema` may mark a property so that clients mirror its argument
//! into an `Mcp-Param-{Name}` HTTP header, on which intermediaries route.
//!
//! The spec's rules for a declaration, each of which this module checks:
//! its value is a non-empty RFC 9110 token, case-insensitively unique in
//! the schema, on a property whose `type` is `string`, `integer` or
//! `boolean`, reached from the root through `properties` keys alone. One
//! anywhere else (under `items`, `oneOf`, `$defs`, ...) makes the whole
//! tool invalid, and clients must leave such a tool out of `tools/list`.
//!
//! The walk enters the schema keywords the official Python SDK enters
//! (and draft 7's `dependencies`, `additionalItems` and array `items`),
//! never instance data (`default`, `enum`, `const`, `examples`), so a
//! tool it accepts is one the SDK accepts too.

use serde_json::{Map, Value};

/// The schema member that declares a header.
pub const X_MCP_HEADER: &str = "x-mcp-header";
/// The prefix of a mirrored argument's header name (lowercase: `http`
/// names are case-insensitive and stored lowercase).
pub const PARAM_PREFIX: &str = "mcp-param-";

/// Keywords whose value is one subschema (also entered when it is a list
/// of them: draft 7's tuple `items`).
const SINGLE: &[&str] = &[
    "items",
    "additionalItems",
    "contains",
    "unevaluatedItems",
    "additionalProperties",
    "propertyNames",
    "unevaluatedProperties",
    "not",
    "if",
    "then",
    "else",
    "contentSchema",
];
/// Keywords whose value is a list of subschemas.
const LIST: &[&str] = &["allOf", "anyOf", "oneOf", "prefixItems"];
/// Keywords whose value maps names to subschemas.
const MAP: &[&str] = &[
    "patternProperties",
    "dependentSchemas",
    "dependencies",
    "$defs",
    "definitions",
];
/// The types a declared property may have.
const PRIMITIVE: &[&str] = &["string", "integer", "boolean"];

/// One declared header: the argument at `path` (property names from the
/// root) is mirrored into `Mcp-Param-{name}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParamHeader {
    /// The name as declared (`Region` in `Mcp-Param-Region`).
    pub name: String,
    /// The property names leading to the argument.
    pub path: Vec<String>,
}

impl ParamHeader {
    /// The lowercase HTTP header name, `mcp-param-{name}`.
    pub fn header(&self) -> String {
        format!("{PARAM_PREFIX}{}", self.name.to_ascii_lowercase())
    }

    /// The argument's value in `arguments`; `None` when a step is missing
    /// or not an object, or the value is `null` (no header is sent then).
    pub fn value<'a>(&self, arguments: Option<&'a Value>) -> Option<&'a Value> {
        let mut node = arguments?;
        for key in &self.path {
            node = node.as_object()?.get(key)?;
        }
        (!node.is_null()).then_some(node)
    }
}

/// Why a schema's declarations are invalid (the tool must be left out).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid x-mcp-header declaration: {0}")]
pub struct InvalidDeclaration(pub String);

/// The headers `schema` declares, or why its declarations are invalid.
pub fn declared(schema: &Value) -> Result<Vec<ParamHeader>, InvalidDeclaration> {
    let mut found = Vec::new();
    walk(schema, Some(Vec::new()), &mut found)?;
    let mut out: Vec<ParamHeader> = Vec::with_capacity(found.len());
    for (path, node) in found {
        let h = declaration(path, node)?;
        if let Some(other) = out.iter().find(|o| o.name.eq_ignore_ascii_case(&h.name)) {
            return Err(InvalidDeclaration(format!(
                "{:?} on property {} repeats {:?} of property {} (names are case-insensitive)",
                h.name,
                h.path.join("."),
                other.name,
                other.path.join(".")
            )));
        }
        out.push(h);
    }
    Ok(out)
}

/// A declaration found at `path` on `node`, checked.
fn declaration(
    path: Vec<String>,
    node: &Map<String, Value>,
) -> Result<ParamHeader, InvalidDeclaration> {
    let at = path.join(".");
    let bad = |why: String| Err(InvalidDeclaration(format!("property {at}: {why}")));
    let Some(name) = node.get(X_MCP_HEADER).and_then(Value::as_str) else {
        return bad(format!("{X_MCP_HEADER} is not a string"));
    };
    if name.is_empty() || !name.bytes().all(is_tchar) {
        return bad(format!("{name:?} is not an HTTP token (RFC 9110 tchar)"));
    }
    match node.get("type").and_then(Value::as_str) {
        Some(t) if PRIMITIVE.contains(&t) => Ok(ParamHeader {
            name: name.to_string(),
            path,
        }),
        t => bad(format!(
            "declared on a property of type {}, not string, integer or boolean",
            t.map_or_else(|| "(none)".to_string(), |t| format!("{t:?}"))
        )),
    }
}

/// Collects `(path, node)` of each declaration; `path` is `None` once the
/// walk left the `properties` chain, where a declaration is invalid.
fn walk<'a>(
    node: &'a Value,
    path: Option<Vec<String>>,
    found: &mut Vec<(Vec<String>, &'a Map<String, Value>)>,
) -> Result<(), InvalidDeclaration> {
    let Some(obj) = node.as_object() else {
        return Ok(());
    };
    if obj.contains_key(X_MCP_HEADER) {
        match &path {
            Some(p) if !p.is_empty() => found.push((p.clone(), obj)),
            _ => {
                return Err(InvalidDeclaration(format!(
                    "{X_MCP_HEADER} {} is not on a property reached through `properties` alone",
                    obj[X_MCP_HEADER]
                )));
            }
        }
    }
    for (k, v) in obj {
        let k = k.as_str();
        if k == "properties" && v.is_object() {
            for (name, sub) in v.as_object().into_iter().flatten() {
                let deeper = path
                    .as_ref()
                    .map(|p| [p.as_slice(), std::slice::from_ref(name)].concat());
                walk(sub, deeper, found)?;
            }
        } else if SINGLE.contains(&k) && v.is_object() {
            walk(v, None, found)?;
        } else if (SINGLE.contains(&k) || LIST.contains(&k)) && v.is_array() {
            for sub in v.as_array().into_iter().flatten() {
                walk(sub, None, found)?;
            }
        } else if MAP.contains(&k) {
            for sub in v.as_object().into_iter().flat_map(Map::values) {
                walk(sub, None, found)?;
            }
        }
    }
    Ok(())
}

/// RFC 9110 `tchar`: what an HTTP field name is made of.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

#[cfg(test)]
mod tests;
