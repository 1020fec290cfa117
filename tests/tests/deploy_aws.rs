//! deploy/aws/mcp-interceptor.yaml: cfn-lint accepts it, its Glue table is
//! the table of deploy/athena/create_table.sql (columns, types, projection,
//! location), and the agent's upload role grants only the named actions the
//! uploader uses (interceptor/src/audit/upload.rs), limited to its own host.
//!
//! cfn-lint and its template decoder (which reads `!Sub` and friends) come
//! from `<repo>/.venv` (tests/peers/requirements.txt, `cargo xtask setup`).
//! No AWS account is involved.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::PathBuf,
    process::Command,
};

use mcp_interceptor_tests::everything::repo;
use serde_json::Value;

const TEMPLATE: &str = "deploy/aws/mcp-interceptor.yaml";
const DDL: &str = "deploy/athena/create_table.sql";

/// What the uploader calls (PUT, multipart create/part/complete, abort:
/// s3:PutObject and s3:AbortMultipartUpload; HEAD: s3:GetObject; 404 rather
/// than 403 for a missing key: s3:ListBucket) and what SSE-KMS needs.
const AGENT_ACTIONS: &[&str] = &[
    "kms:Decrypt",
    "kms:GenerateDataKey",
    "s3:AbortMultipartUpload",
    "s3:GetObject",
    "s3:ListBucket",
    "s3:PutObject",
];

fn venv_bin(name: &str) -> PathBuf {
    let p = repo().join(".venv/bin").join(name);
    assert!(
        p.is_file(),
        "{} is missing: run `cargo xtask setup` (tests/peers/requirements.txt)",
        p.display()
    );
    p
}

#[test]
fn cfn_lint_accepts_the_template() {
    let out = Command::new(venv_bin("cfn-lint"))
        .arg(TEMPLATE)
        .current_dir(repo())
        .output()
        .expect("run cfn-lint");
    assert!(
        out.status.success(),
        "cfn-lint {TEMPLATE} exited with {}:\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The template as JSON, short-form tags (`!Sub`, `!GetAtt`, ...) turned into
/// their long form by cfn-lint's own decoder.
fn template() -> Value {
    const DECODE: &str = "import json, sys
from cfnlint.decode import decode
template, errors = decode(sys.argv[1])
if errors or template is None:
    sys.exit('\\n'.join(str(e) for e in errors) or 'no template')
json.dump(template, sys.stdout)
";
    let out = Command::new(venv_bin("python"))
        .args(["-c", DECODE, TEMPLATE])
        .current_dir(repo())
        .output()
        .expect("run python");
    assert!(
        out.status.success(),
        "decoding {TEMPLATE}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("the decoder prints JSON")
}

// ------------------------------------------------------------- the DDL

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

// ------------------------------------------------------------ IAM

/// Every object with a `Type` (a resource), also inside `Fn::ForEach`.
fn resources<'a>(v: &'a Value, out: &mut Vec<&'a Value>) {
    match v {
        Value::Object(m) => {
            if m.get("Type").is_some_and(Value::is_string) && m.contains_key("Properties") {
                out.push(v);
            }
            m.values().for_each(|x| resources(x, out));
        }
        Value::Array(a) => a.iter().for_each(|x| resources(x, out)),
        _ => {}
    }
}

fn as_list(v: &Value) -> Vec<&Value> {
    match v {
        Value::Array(a) => a.iter().collect(),
        Value::Null => Vec::new(),
        other => vec![other],
    }
}

/// The permission statements of an IAM resource (not the trust policy).
fn statements(r: &Value) -> Vec<&Value> {
    let p = &r["Properties"];
    let docs: Vec<&Value> = match r["Type"].as_str() {
        Some("AWS::IAM::Role") => as_list(&p["Policies"])
            .into_iter()
            .map(|x| &x["PolicyDocument"])
            .collect(),
        Some("AWS::IAM::Policy" | "AWS::IAM::ManagedPolicy") => vec![&p["PolicyDocument"]],
        _ => Vec::new(),
    };
    docs.into_iter()
        .flat_map(|d| as_list(&d["Statement"]))
        .collect()
}

/// A resource ARN as written: the string, or the `Fn::Sub` text, or
/// `GetAtt:X.Y` / `Ref:X`.
fn arn_text(v: &Value) -> String {
    if let Some(s) = v.as_str().or_else(|| v["Fn::Sub"].as_str()) {
        return s.to_string();
    }
    if let Some(a) = v["Fn::GetAtt"].as_array() {
        let parts: Vec<String> = a.iter().map(|x| x.to_string()).collect();
        return format!("GetAtt:{}", parts.join("."));
    }
    if let Some(r) = v["Ref"].as_str() {
        return format!("Ref:{r}");
    }
    v.to_string()
}

/// What is wrong with the IAM policies of the template: any `*` in an
/// allowed action or resource, `NotAction`/`NotResource` in an allow; and
/// for the agent's upload role (the one EC2 assumes), any action beyond
/// [`AGENT_ACTIONS`] or an object action on keys not tied to `${Host}`.
fn iam_violations(t: &Value) -> Vec<String> {
    let mut found = Vec::new();
    resources(&t["Resources"], &mut found);
    let mut bad = Vec::new();
    let mut agent_roles = 0;
    for r in found {
        let ty = r["Type"].as_str().unwrap_or_default();
        let is_agent = ty == "AWS::IAM::Role"
            && r["Properties"]["AssumeRolePolicyDocument"]
                .to_string()
                .contains("ec2.");
        agent_roles += usize::from(is_agent);
        let mut granted = BTreeSet::new();
        for st in statements(r) {
            let sid = st["Sid"].as_str().unwrap_or("(no Sid)");
            if st["Effect"] != "Allow" {
                continue;
            }
            for k in ["NotAction", "NotResource"] {
                if !st[k].is_null() {
                    bad.push(format!("{ty} {sid}: {k} in an Allow"));
                }
            }
            let actions: Vec<&Value> = as_list(&st["Action"]);
            if actions.is_empty() {
                bad.push(format!("{ty} {sid}: no Action"));
            }
            let arns: Vec<String> = as_list(&st["Resource"]).into_iter().map(arn_text).collect();
            for a in actions {
                match a.as_str() {
                    Some(a) if a.contains('*') => {
                        bad.push(format!("{ty} {sid}: wildcard action {a}"))
                    }
                    Some(a) => {
                        granted.insert(a.to_string());
                        if is_agent
                            && a.starts_with("s3:")
                            && a != "s3:ListBucket"
                            && let Some(arn) = arns.iter().find(|arn| !arn.contains("${Host}"))
                        {
                            bad.push(format!(
                                "agent role {sid}: {a} on {arn}, not its host's keys"
                            ));
                        }
                    }
                    None => bad.push(format!("{ty} {sid}: computed action {a}")),
                }
            }
            if arns.is_empty() || arns.iter().any(|arn| arn == "*") {
                bad.push(format!("{ty} {sid}: Resource {arns:?}"));
            }
        }
        if is_agent {
            let allowed: BTreeSet<String> = AGENT_ACTIONS.iter().map(|a| a.to_string()).collect();
            let extra: Vec<&String> = granted.difference(&allowed).collect();
            if !extra.is_empty() {
                bad.push(format!(
                    "agent role grants {extra:?} beyond {AGENT_ACTIONS:?}"
                ));
            }
        }
    }
    if agent_roles != 1 {
        bad.push(format!(
            "{agent_roles} EC2 roles found, expected the one upload role"
        ));
    }
    bad
}

/// The first statement of the agent's upload role, to doctor.
fn agent_statement(t: &mut Value) -> &mut Value {
    let fragment = &mut t["Resources"]["Fn::ForEach::AgentHostRoles"][2]["AgentRole&{Host}"];
    &mut fragment["Properties"]["Policies"][0]["PolicyDocument"]["Statement"][0]
}

#[test]
fn iam_policies_grant_no_wildcard_and_the_agent_only_its_own_keys() {
    let t = template();
    let bad = iam_violations(&t);
    assert!(bad.is_empty(), "{TEMPLATE}:\n{}", bad.join("\n"));

    // The check sees what it is for.
    let doctored = |f: &dyn Fn(&mut Value)| {
        let mut d = t.clone();
        f(agent_statement(&mut d));
        iam_violations(&d)
    };
    let wildcard = doctored(&|st| st["Action"] = "s3:*".into());
    assert!(
        wildcard.iter().any(|v| v.contains("wildcard action s3:*")),
        "{wildcard:?}"
    );
    let delete = doctored(&|st| {
        st["Action"]
            .as_array_mut()
            .expect("actions")
            .push("s3:DeleteObject".into())
    });
    assert!(
        delete.iter().any(|v| v.contains("s3:DeleteObject")),
        "{delete:?}"
    );
    let any_key = doctored(&|st| {
        st["Resource"] = serde_json::json!({ "Fn::Sub": "${AuditBucket.Arn}/${KeyPrefix}/*" })
    });
    assert!(
        any_key.iter().any(|v| v.contains("not its host's keys")),
        "{any_key:?}"
    );
}
