//! The template's IAM policies: no wildcard actions, `*` resources only
//! for the Athena list calls that take none; each upload role (EC2 may
//! assume it) grants only what the uploader calls, on keys named by its
//! own policy variable; the auditor policy covers the Athena console.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use crate::{TEMPLATE, resources, template};

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
/// The `<host>` of a named host's keys: the host tag of its own role.
pub const HOST_VAR: &str = "${!aws:PrincipalTag/mcp-interceptor-host}";
/// The `<host>` of a fleet instance's keys: "<role id>:<instance id>".
pub const FLEET_VAR: &str = "${!aws:userid}";
/// Actions that take no resource ARN, so only `*` grants them.
const RESOURCELESS: &[&str] = &[
    "athena:ListWorkGroups",
    "athena:ListDataCatalogs",
    "athena:ListEngineVersions",
];
/// What the Athena console and `aws athena` / `aws s3 sync` use: pick the
/// workgroup, browse catalog, database and tables, run, stop and reopen
/// queries and saved queries, read the trail, write results.
const CONSOLE_ACTIONS: &[&str] = &[
    "athena:ListWorkGroups",
    "athena:GetWorkGroup",
    "athena:ListDataCatalogs",
    "athena:GetDataCatalog",
    "athena:ListDatabases",
    "athena:GetDatabase",
    "athena:ListTableMetadata",
    "athena:GetTableMetadata",
    "athena:StartQueryExecution",
    "athena:StopQueryExecution",
    "athena:GetQueryExecution",
    "athena:BatchGetQueryExecution",
    "athena:ListQueryExecutions",
    "athena:GetQueryResults",
    "athena:ListNamedQueries",
    "athena:GetNamedQuery",
    "athena:BatchGetNamedQuery",
    "glue:GetDatabase",
    "glue:GetDatabases",
    "glue:GetTable",
    "glue:GetTables",
    "glue:GetPartitions",
    "s3:GetObject",
    "s3:GetObjectVersion",
    "s3:ListBucket",
    "s3:ListBucketVersions",
    "s3:GetBucketLocation",
    "s3:PutObject",
    "kms:Decrypt",
    "kms:GenerateDataKey",
];

/// Every object with a `Type` and `Properties` (a resource), also inside
/// `Fn::ForEach`.
pub(crate) fn all_resources<'a>(v: &'a Value, out: &mut Vec<&'a Value>) {
    match v {
        Value::Object(m) => {
            if m.get("Type").is_some_and(Value::is_string) && m.contains_key("Properties") {
                out.push(v);
            }
            m.values().for_each(|x| all_resources(x, out));
        }
        Value::Array(a) => a.iter().for_each(|x| all_resources(x, out)),
        _ => {}
    }
}

pub(crate) fn as_list(v: &Value) -> Vec<&Value> {
    match v {
        Value::Array(a) => a.iter().collect(),
        Value::Null => Vec::new(),
        other => vec![other],
    }
}

/// The statements of a policy document; both branches of an `Fn::If`.
fn doc_statements(d: &Value) -> Vec<&Value> {
    as_list(&d["Statement"])
        .into_iter()
        .flat_map(|st| match st["Fn::If"].as_array() {
            Some(branches) => branches[1..].iter().filter(|b| b.is_object()).collect(),
            None => vec![st],
        })
        .collect()
}

/// The permission statements of an IAM resource (not the trust policy),
/// with those of the template's managed policies a role attaches.
pub(crate) fn statements<'a>(t: &'a Value, r: &'a Value) -> Vec<&'a Value> {
    let p = &r["Properties"];
    let mut docs: Vec<&Value> = match r["Type"].as_str() {
        Some("AWS::IAM::Role") => as_list(&p["Policies"])
            .into_iter()
            .map(|x| &x["PolicyDocument"])
            .collect(),
        Some("AWS::IAM::Policy" | "AWS::IAM::ManagedPolicy") => vec![&p["PolicyDocument"]],
        _ => Vec::new(),
    };
    if r["Type"] == "AWS::IAM::Role" {
        for arn in as_list(&p["ManagedPolicyArns"]) {
            let id = arn["Ref"]
                .as_str()
                .unwrap_or_else(|| panic!("managed policy {arn}"));
            docs.push(&t["Resources"][id]["Properties"]["PolicyDocument"]);
        }
    }
    docs.into_iter().flat_map(doc_statements).collect()
}

/// A resource ARN as written: the string, or the `Fn::Sub` text, or
/// `GetAtt:X.Y` / `Ref:X`.
pub(crate) fn arn_text(v: &Value) -> String {
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

fn is_agent_role(r: &Value) -> bool {
    r["Type"] == "AWS::IAM::Role"
        && r["Properties"]["AssumeRolePolicyDocument"]
            .to_string()
            .contains("ec2.")
}

/// The variable naming an upload role's own keys: the named-host one when
/// the role carries the host tag, else the fleet one.
fn scope_var(r: &Value) -> (&'static str, &'static str) {
    let tagged = as_list(&r["Properties"]["Tags"])
        .iter()
        .any(|t| t["Key"] == "mcp-interceptor-host");
    if tagged {
        (HOST_VAR, FLEET_VAR)
    } else {
        (FLEET_VAR, HOST_VAR)
    }
}

/// Wrong with one Allow statement of any IAM resource: NotAction or
/// NotResource, a wildcard action, no resource, `*` for an action that
/// takes one. Returns the actions it grants.
pub(crate) fn check_statement(ty: &str, st: &Value, bad: &mut Vec<String>) -> Vec<String> {
    let sid = st["Sid"].as_str().unwrap_or("(no Sid)");
    for k in ["NotAction", "NotResource"] {
        if !st[k].is_null() {
            bad.push(format!("{ty} {sid}: {k} in an Allow"));
        }
    }
    let mut granted = Vec::new();
    for a in as_list(&st["Action"]) {
        match a.as_str() {
            Some(a) if a.contains('*') => bad.push(format!("{ty} {sid}: wildcard action {a}")),
            Some(a) => granted.push(a.to_string()),
            None => bad.push(format!("{ty} {sid}: computed action {a}")),
        }
    }
    if granted.is_empty() {
        bad.push(format!("{ty} {sid}: no Action"));
    }
    let arns: Vec<String> = as_list(&st["Resource"]).into_iter().map(arn_text).collect();
    let star_ok = granted.iter().all(|a| RESOURCELESS.contains(&a.as_str()));
    if arns.is_empty() || (arns.iter().any(|arn| arn == "*") && !star_ok) {
        bad.push(format!("{ty} {sid}: Resource {arns:?}"));
    }
    granted
}

/// For an upload role: object actions only on keys named by its own
/// variable, and never by the other kind's.
fn check_agent_statement(st: &Value, vars: (&str, &str), bad: &mut Vec<String>) {
    let sid = st["Sid"].as_str().unwrap_or("(no Sid)");
    let arns: Vec<String> = as_list(&st["Resource"]).into_iter().map(arn_text).collect();
    for a in as_list(&st["Action"]).iter().filter_map(|a| a.as_str()) {
        if !a.starts_with("s3:") || a == "s3:ListBucket" {
            continue;
        }
        if let Some(arn) = arns
            .iter()
            .find(|arn| !arn.contains(vars.0) || arn.contains(vars.1))
        {
            bad.push(format!(
                "agent role {sid}: {a} on {arn}, not its own keys ({})",
                vars.0
            ));
        }
    }
}

/// Everything wrong with the template's IAM policies (see the module doc).
pub fn iam_violations(t: &Value) -> Vec<String> {
    let mut found = Vec::new();
    all_resources(&t["Resources"], &mut found);
    let (mut bad, mut agent_roles) = (Vec::new(), 0);
    for r in found {
        let ty = r["Type"].as_str().unwrap_or_default();
        let is_agent = is_agent_role(r);
        agent_roles += usize::from(is_agent);
        let mut granted = BTreeSet::new();
        for st in statements(t, r)
            .into_iter()
            .filter(|st| st["Effect"] == "Allow")
        {
            granted.extend(check_statement(ty, st, &mut bad));
            if is_agent {
                check_agent_statement(st, scope_var(r), &mut bad);
            }
        }
        let allowed: BTreeSet<String> = AGENT_ACTIONS.iter().map(|a| a.to_string()).collect();
        let extra: Vec<&String> = granted.difference(&allowed).collect();
        if is_agent && !extra.is_empty() {
            bad.push(format!(
                "agent role grants {extra:?} beyond {AGENT_ACTIONS:?}"
            ));
        }
    }
    if agent_roles != 2 {
        bad.push(format!(
            "{agent_roles} EC2 roles, expected a named-host one and the fleet one"
        ));
    }
    bad
}

/// The first statement of the named hosts' upload policy, or the fleet
/// role's, to doctor.
fn upload_statement(t: &mut Value, fleet: bool) -> &mut Value {
    let r = &mut t["Resources"];
    let doc = if fleet {
        &mut r["FleetRole"]["Properties"]["Policies"][0]["PolicyDocument"]
    } else {
        &mut r["HostUploadPolicy"]["Properties"]["PolicyDocument"]
    };
    &mut doc["Statement"][0]
}

#[test]
fn iam_policies_grant_no_wildcard_and_each_agent_only_its_own_keys() {
    let t = template();
    let bad = iam_violations(&t);
    assert!(bad.is_empty(), "{TEMPLATE}:\n{}", bad.join("\n"));

    // The check sees what it is for, in both kinds of upload policy.
    for fleet in [false, true] {
        let doctored = |f: &dyn Fn(&mut Value)| {
            let mut d = t.clone();
            f(upload_statement(&mut d, fleet));
            iam_violations(&d)
        };
        let v = doctored(&|st| st["Action"] = "s3:*".into());
        assert!(
            v.iter().any(|v| v.contains("wildcard action s3:*")),
            "{v:?}"
        );
        let v = doctored(&|st| {
            st["Action"]
                .as_array_mut()
                .expect("actions")
                .push("s3:DeleteObject".into())
        });
        assert!(v.iter().any(|v| v.contains("s3:DeleteObject")), "{v:?}");
        let v = doctored(&|st| {
            st["Resource"] = serde_json::json!({ "Fn::Sub": "${AuditBucket.Arn}/${KeyPrefix}/*" })
        });
        assert!(v.iter().any(|v| v.contains("not its own keys")), "{v:?}");
        // A role tag is the same for every instance of the fleet.
        let other = if fleet { HOST_VAR } else { FLEET_VAR };
        let v = doctored(&|st| {
            st["Resource"] =
                serde_json::json!({ "Fn::Sub": format!("${{AuditBucket.Arn}}/manifest/{other}/x") })
        });
        assert!(v.iter().any(|v| v.contains("not its own keys")), "{v:?}");
    }
}

#[test]
fn the_host_tag_of_a_slot_is_the_host_its_profile_is_named_after() {
    let t = template();
    let slot = &t["Resources"]["Fn::ForEach::HostRoles"][2];
    let role = &slot["AgentRole${Slot}"]["Properties"];
    let tag = as_list(&role["Tags"])
        .into_iter()
        .find(|t| t["Key"] == "mcp-interceptor-host")
        .expect("host tag");
    let profile = &slot["AgentInstanceProfile${Slot}"]["Properties"];
    let name = &profile["InstanceProfileName"]["Fn::Sub"];
    assert_eq!(name[0], "${AWS::StackName}.${AWS::Region}.host.${Host}");
    assert_eq!(
        tag["Value"], name[1]["Host"],
        "tag and profile name read the same entry"
    );
    let host = tag["Value"].to_string();
    assert!(host.contains(r#"{"Fn::Select":[{"Ref":"Slot"},"#), "{host}");
}

fn actions_by_sid<'a>(t: &'a Value, id: &str) -> BTreeMap<String, (Vec<String>, &'a Value)> {
    let r = &t["Resources"][id];
    statements(t, r)
        .into_iter()
        .map(|st| {
            let actions = as_list(&st["Action"])
                .iter()
                .filter_map(|a| a.as_str().map(str::to_string))
                .collect();
            (
                st["Sid"].as_str().unwrap_or_default().to_string(),
                (actions, st),
            )
        })
        .collect()
}

/// What the auditor role lacks for the console, or grants too loosely.
fn auditor_gaps(t: &Value) -> Vec<String> {
    let mut gaps = Vec::new();
    let role = &t["Resources"]["AuditorRole"]["Properties"];
    if as_list(&role["ManagedPolicyArns"])
        .iter()
        .all(|a| a["Ref"] != "AuditReaderPolicy")
    {
        gaps.push("AuditorRole does not attach AuditReaderPolicy".into());
    }
    let sids = actions_by_sid(t, "AuditorRole");
    let granted: BTreeSet<&str> = sids
        .values()
        .flat_map(|(a, _)| a.iter().map(String::as_str))
        .collect();
    for a in CONSOLE_ACTIONS {
        if !granted.contains(a) {
            gaps.push(format!("missing {a}"));
        }
    }
    for (sid, (actions, st)) in &sids {
        let arns = as_list(&st["Resource"])
            .into_iter()
            .map(arn_text)
            .collect::<Vec<_>>();
        if actions.iter().any(|a| a.starts_with("kms:"))
            && st["Condition"]["StringEquals"]["kms:ViaService"].is_null()
        {
            gaps.push(format!("{sid}: KMS without kms:ViaService"));
        }
        if actions.iter().any(|a| a == "athena:StartQueryExecution")
            && arns
                != [
                    "arn:${AWS::Partition}:athena:${AWS::Region}:${AWS::AccountId}:workgroup/${AuditWorkGroup}",
                ]
        {
            gaps.push(format!("{sid}: queries outside the workgroup: {arns:?}"));
        }
        if actions.iter().any(|a| a == "s3:PutObject")
            && arns != ["${AthenaResultsBucket.Arn}/results/*"]
        {
            gaps.push(format!("{sid}: writes {arns:?}, not the results location"));
        }
    }
    gaps
}

#[test]
fn the_auditor_role_has_what_the_athena_console_needs() {
    let t = template();
    let gaps = auditor_gaps(&t);
    assert!(gaps.is_empty(), "{TEMPLATE}:\n{}", gaps.join("\n"));
    // Results go where the workgroup sends them, encrypted with the key.
    let wg = &resources(&t)["AuditWorkGroup"]["Properties"]["WorkGroupConfiguration"];
    assert_eq!(wg["EnforceWorkGroupConfiguration"], true);
    let out = &wg["ResultConfiguration"];
    assert_eq!(
        out["OutputLocation"]["Fn::Sub"],
        "s3://${AthenaResultsBucket}/results/"
    );
    assert_eq!(
        out["EncryptionConfiguration"]["EncryptionOption"],
        "SSE_KMS"
    );

    fn policy(t: &mut Value) -> &mut Vec<Value> {
        t["Resources"]["AuditReaderPolicy"]["Properties"]["PolicyDocument"]["Statement"]
            .as_array_mut()
            .expect("statements")
    }
    let mut d = t.clone();
    policy(&mut d).retain(|st| st["Sid"] != "BrowseCatalog");
    let gaps = auditor_gaps(&d);
    assert!(
        gaps.iter().any(|g| g == "missing athena:ListTableMetadata"),
        "{gaps:?}"
    );
    let mut d = t.clone();
    for st in policy(&mut d) {
        if let Some(c) = st.as_object_mut().and_then(|m| m.get_mut("Condition")) {
            *c = Value::Null;
        }
    }
    let gaps = auditor_gaps(&d);
    assert!(
        gaps.iter().any(|g| g.contains("kms:ViaService")),
        "{gaps:?}"
    );
}
