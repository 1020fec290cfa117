//! deploy/aws/mcp-interceptor.yaml's Glue table is the table of
//! deploy/athena/create_table.sql: columns, types, projection, location.

use std::collections::BTreeMap;

use mcp_interceptor_tests::everything::repo;
use serde_json::Value;

use crate::{TEMPLATE, template};

const DDL: &str = "deploy/athena/create_table.sql";

/// The DDL without `--` comments (none of its string literals holds `--`).
fn strip_comments(sql: &str) -> String {
    sql.lines()
        .map(|l| l.split("--").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The text inside the parentheses opening at `open`, and the index after
/// the closing one.
fn parenthesized(s: &str, open: usize) -> (&str, usize) {
    assert_eq!(&s[open..=open], "(", "expected ( at {open}");
    let mut depth = 0usize;
    for (i, c) in s[open..].char_indices() {
        match c {
            '(' => depth += 1,
            ')' => {
                depth -= 1;
                if depth == 0 {
                    return (&s[open + 1..open + i], open + i + 1);
                }
            }
            _ => {}
        }
    }
    panic!("unclosed ( at {open}");
}

/// `name type, ...` split at top-level commas (not those inside
/// `map<string,int>`): (name without backticks, type lowercased without
/// spaces).
fn column_list(body: &str) -> Vec<(String, String)> {
    let mut entries = Vec::new();
    let (mut nest, mut start) = (0usize, 0usize);
    for (i, c) in body.char_indices() {
        match c {
            '(' | '<' => nest += 1,
            ')' | '>' => nest -= 1,
            ',' if nest == 0 => {
                entries.push(&body[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    entries.push(&body[start..]);
    entries
        .into_iter()
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .map(|e| {
            let (name, ty) = e
                .split_once(char::is_whitespace)
                .unwrap_or_else(|| panic!("no type in {e:?}"));
            let ty: String = ty.chars().filter(|c| !c.is_whitespace()).collect();
            (name.trim_matches('`').to_string(), ty.to_lowercase())
        })
        .collect()
}

/// Every `'...'` literal in `s`, in order.
fn quoted(s: &str) -> Vec<String> {
    s.split('\'')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .collect()
}

struct Ddl {
    columns: Vec<(String, String)>,
    partitions: Vec<(String, String)>,
    location: String,
    properties: BTreeMap<String, String>,
}

fn ddl() -> Ddl {
    let path = repo().join(DDL);
    let sql = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{DDL}: {e}"));
    let sql = strip_comments(&sql);
    let table = sql.find("mcp_audit").expect("the DDL names mcp_audit");
    let open = table + sql[table..].find('(').expect("a ( after mcp_audit");
    let (body, end) = parenthesized(&sql, open);
    let rest = &sql[end..];
    let after = |kw: &str| {
        rest.find(kw)
            .map(|i| i + kw.len())
            .unwrap_or_else(|| panic!("{DDL} has no {kw}"))
    };
    let part = after("PARTITIONED BY");
    let part = part + rest[part..].find('(').expect("( after PARTITIONED BY");
    let (partitions, _) = parenthesized(rest, part);
    let location = quoted(&rest[after("LOCATION")..])
        .into_iter()
        .next()
        .expect("a LOCATION literal");
    let props = after("TBLPROPERTIES");
    let props = props + rest[props..].find('(').expect("( after TBLPROPERTIES");
    let (props, _) = parenthesized(rest, props);
    let literals = quoted(props);
    assert!(
        literals.len().is_multiple_of(2),
        "TBLPROPERTIES are 'key' = 'value' pairs: {literals:?}"
    );
    Ddl {
        columns: column_list(body),
        partitions: column_list(partitions),
        location,
        properties: literals
            .chunks(2)
            .map(|kv| (kv[0].clone(), kv[1].clone()))
            .collect(),
    }
}

// -------------------------------------------------------- the template

/// A string value of the template as the DDL would spell it: `Fn::Sub`
/// with the parameters at their defaults and the bucket as the DDL's
/// placeholder, `${!x}` as the literal `${x}`.
fn as_ddl_text(t: &Value, v: &Value) -> Option<String> {
    if let Some(s) = v.as_str() {
        return Some(s.to_string());
    }
    let mut s = v.get("Fn::Sub")?.as_str()?.to_string();
    s = s.replace("${AuditBucket}", "YOUR-AUDIT-BUCKET");
    for (name, p) in t["Parameters"].as_object().expect("Parameters") {
        if let Some(d) = p.get("Default").and_then(Value::as_str) {
            s = s.replace(&format!("${{{name}}}"), d);
        }
    }
    Some(s.replace("${!", "${"))
}

fn name_types(v: &Value) -> Vec<(String, String)> {
    v.as_array()
        .expect("a list of columns")
        .iter()
        .map(|c| {
            let s = |k: &str| c[k].as_str().unwrap_or_else(|| panic!("{k} of {c}"));
            (s("Name").to_string(), s("Type").to_lowercase())
        })
        .collect()
}

fn names(cols: &[(String, String)]) -> Vec<&str> {
    cols.iter().map(|(n, _)| n.as_str()).collect()
}

#[test]
fn glue_table_is_the_athena_ddl_table() {
    let t = template();
    let ddl = ddl();
    assert!(
        ddl.columns.len() > 40,
        "{DDL}: only {} columns parsed",
        ddl.columns.len()
    );
    let input = &t["Resources"]["AuditTable"]["Properties"]["TableInput"];
    assert_eq!(input["Name"], "mcp_audit", "the queries name mcp_audit");
    let sd = &input["StorageDescriptor"];
    let columns = name_types(&sd["Columns"]);
    let partitions = name_types(&input["PartitionKeys"]);

    assert_eq!(
        names(&columns),
        names(&ddl.columns),
        "Glue columns of {TEMPLATE} differ from {DDL}"
    );
    assert_eq!(columns, ddl.columns, "column types differ from {DDL}");
    assert_eq!(
        partitions, ddl.partitions,
        "partition keys differ from {DDL}"
    );

    assert_eq!(
        as_ddl_text(&t, &sd["Location"]).as_deref(),
        Some(ddl.location.as_str()),
        "table location (at the parameter defaults)"
    );
    let glue: BTreeMap<String, String> = input["Parameters"]
        .as_object()
        .expect("table parameters")
        .iter()
        .filter(|(k, _)| !matches!(k.as_str(), "EXTERNAL" | "classification"))
        .map(|(k, v)| {
            let text = as_ddl_text(&t, v).unwrap_or_else(|| panic!("parameter {k}: {v}"));
            (k.clone(), text)
        })
        .collect();
    assert_eq!(
        glue, ddl.properties,
        "table parameters (at the parameter defaults) differ from the TBLPROPERTIES of {DDL}"
    );
}
