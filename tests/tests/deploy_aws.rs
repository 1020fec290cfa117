//! deploy/aws/mcp-interceptor.yaml: cfn-lint accepts it (as written, and
//! with the parameters of 200 named hosts and of an autoscaling group); it
//! fits CloudFormation's limits once its loops are unrolled; Object Lock
//! and the access trail are on by default; its saved Athena queries are the
//! files of deploy/athena/queries; its Glue table is the DDL's (`ddl`); its
//! IAM policies hold each agent to its own keys and give auditors what the
//! Athena console needs (`iam`); and moto's CloudFormation creates it for
//! 200 hosts and for a fleet, with an agent of that fleet uploading under
//! the keys its role allows (`stack`). deploy/aws/fleet.yaml, the stack
//! beside it for a fleet, has its own checks (`fleet`).
//!
//! cfn-lint, its template decoder and transform, boto3 and moto come from
//! `<repo>/.venv` (tests/peers/requirements.txt, `cargo xtask setup`);
//! tests/peers/cfn_stack.py drives them. No AWS account is involved.

#[path = "deploy_aws/ddl.rs"]
mod ddl;
#[path = "deploy_aws/fleet.rs"]
mod fleet;
#[path = "deploy_aws/iam.rs"]
mod iam;
#[path = "deploy_aws/stack.rs"]
mod stack;

use std::{collections::BTreeSet, path::PathBuf, process::Command};

use mcp_interceptor_tests::everything::repo;
use serde_json::{Value, json};

const TEMPLATE: &str = "deploy/aws/mcp-interceptor.yaml";
const QUERIES: &str = "deploy/athena/queries";
/// Per-host role slots (`AgentRole0`..): the template's ForEach lists.
const SLOTS: usize = 230;
/// CloudFormation quotas: an inline template body (`aws cloudformation
/// deploy` without `--s3-bucket`), resources and outputs per stack, and a
/// template after its transforms.
const MAX_BODY: usize = 51_200;
const MAX_RESOURCES: usize = 500;
const MAX_OUTPUTS: usize = 200;
const MAX_PROCESSED: usize = 1_000_000;

fn venv_bin(name: &str) -> PathBuf {
    let p = repo().join(".venv/bin").join(name);
    assert!(
        p.is_file(),
        "{} is missing: run `cargo xtask setup` (tests/peers/requirements.txt)",
        p.display()
    );
    p
}

/// Runs `.venv/bin/<bin> args` in the repo; its stdout, or a panic with
/// everything it printed.
fn run(bin: &str, args: &[&str]) -> Vec<u8> {
    let out = Command::new(venv_bin(bin))
        .args(args)
        .current_dir(repo())
        .output()
        .unwrap_or_else(|e| panic!("run {bin}: {e}"));
    assert!(
        out.status.success(),
        "{bin} {args:?} exited with {}:\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// The template as JSON, short-form tags (`!Sub`, `!GetAtt`, ...) turned into
/// their long form by cfn-lint's own decoder; loops still folded.
fn template() -> Value {
    decoded(TEMPLATE)
}

/// `path` (relative to the repo) as [`template`] reads it.
fn decoded(path: &str) -> Value {
    const DECODE: &str = "import json, sys
from cfnlint.decode import decode
template, errors = decode(sys.argv[1])
if errors or template is None:
    sys.exit('\\n'.join(str(e) for e in errors) or 'no template')
json.dump(template, sys.stdout)
";
    serde_json::from_slice(&run("python", &["-c", DECODE, path])).expect("decoder JSON")
}

/// The template after AWS::LanguageExtensions, every slot unrolled: by
/// tests/peers/cfn_stack.py, or (`cfn_lint`) by cfn-lint's transform.
fn expanded(cfn_lint: bool) -> Value {
    let mut args = vec!["tests/peers/cfn_stack.py", "expand", TEMPLATE];
    if cfn_lint {
        args.push("--cfn-lint");
    }
    serde_json::from_slice(&run("python", &args)).expect("cfn_stack.py expand prints JSON")
}

/// 200 distinct EC2-style names, among them two that are equal once their
/// '-' are stripped (ip-10-0-1-23 / ip-10-0-12-3).
fn two_hundred_hosts() -> Vec<String> {
    let mut hosts: Vec<String> = (0..198)
        .map(|i| format!("ip-10-1-{}-{}", i / 10, i % 10))
        .collect();
    hosts.extend(["ip-10-0-1-23".to_string(), "ip-10-0-12-3".to_string()]);
    hosts
}

fn cfn_lint(params: &[String]) {
    let mut args = vec![TEMPLATE];
    if !params.is_empty() {
        args.push("--parameters");
        args.extend(params.iter().map(String::as_str));
    }
    run("cfn-lint", &args);
}

/// One run covers both setups: cfn-lint weighs every branch of the
/// conditions, and the parameters give it 200 named hosts (every slot
/// reading a real entry) beside the fleet role. One run, because each
/// takes ~40 s of CPU over the 484 unrolled resources.
#[test]
fn cfn_lint_accepts_the_template_for_200_named_hosts_and_a_fleet() {
    cfn_lint(&[
        format!("AgentHosts={}", two_hundred_hosts().join(",")),
        "CreateFleetRole=true".into(),
    ]);
}

fn resources(t: &Value) -> &serde_json::Map<String, Value> {
    t["Resources"].as_object().expect("Resources")
}

#[test]
fn the_unrolled_template_fits_the_stack_quotas() {
    let body = std::fs::read(repo().join(TEMPLATE)).expect("template");
    assert!(
        body.len() < MAX_BODY,
        "{TEMPLATE} is {} bytes: over {MAX_BODY}, `aws cloudformation deploy` needs --s3-bucket",
        body.len()
    );
    let t = expanded(false);
    let all = resources(&t);
    // The same ids as cfn-lint's implementation of the transform.
    let theirs = expanded(true);
    for section in ["Resources", "Conditions", "Outputs"] {
        let ids = |t: &Value| {
            t[section]
                .as_object()
                .expect(section)
                .keys()
                .cloned()
                .collect::<BTreeSet<_>>()
        };
        assert_eq!(ids(&t), ids(&theirs), "{section}");
    }
    assert!(
        all.len() <= MAX_RESOURCES,
        "{} resources with every slot in use",
        all.len()
    );
    let outputs = t["Outputs"].as_object().expect("Outputs").len();
    assert!(outputs <= MAX_OUTPUTS, "{outputs} outputs");
    let size = serde_json::to_vec(&t).expect("json").len();
    assert!(size < MAX_PROCESSED, "unrolled template: {size} bytes");

    // Slot i: a role and a profile under condition AgentHost<i>, both
    // reading AgentHosts entry i; the logical ids are numbers, so no two
    // host names can meet in one id.
    for i in 0..SLOTS {
        for kind in ["AgentRole", "AgentInstanceProfile"] {
            let r = &all[&format!("{kind}{i}")];
            assert_eq!(r["Condition"], format!("AgentHost{i}"), "{kind}{i}");
            let text = r["Properties"].to_string();
            assert!(
                text.contains(&format!("{{\"Fn::Select\":[\"{i}\",")),
                "{kind}{i} does not read entry {i}: {text}"
            );
        }
        let cond = t["Conditions"][format!("AgentHost{i}")].to_string();
        assert!(
            cond.contains(&format!("\"Fn::Select\":[\"{i}\",")),
            "{cond}"
        );
    }
    assert!(!all.contains_key(&format!("AgentRole{SLOTS}")));
    // No output per host (they capped the old template at ~95 hosts).
    let per_host = t["Outputs"]
        .as_object()
        .expect("Outputs")
        .keys()
        .filter(|k| k.ends_with(|c: char| c.is_ascii_digit()))
        .count();
    assert_eq!(per_host, 0, "outputs named per slot");
}

/// `v` as JSON text with every object's keys sorted.
fn canonical(v: &Value) -> String {
    match v {
        Value::Object(m) => {
            let sorted: std::collections::BTreeMap<&String, String> =
                m.iter().map(|(k, x)| (k, canonical(x))).collect();
            let parts: Vec<String> = sorted.iter().map(|(k, x)| format!("{k:?}:{x}")).collect();
            format!("{{{}}}", parts.join(","))
        }
        Value::Array(a) => format!(
            "[{}]",
            a.iter().map(canonical).collect::<Vec<_>>().join(",")
        ),
        other => other.to_string(),
    }
}

fn param_default<'a>(t: &'a Value, name: &str) -> &'a Value {
    &t["Parameters"][name]["Default"]
}

#[test]
fn object_lock_and_the_access_trail_are_on_by_default() {
    let t = template();
    let r = resources(&t);
    let bucket = &r["AuditBucket"]["Properties"];
    assert_eq!(bucket["ObjectLockEnabled"], true, "{bucket}");
    assert!(r["AuditBucket"]["Condition"].is_null());
    let rule = &bucket["ObjectLockConfiguration"]["Rule"]["DefaultRetention"];
    assert_eq!(rule["Mode"]["Ref"], "ObjectLockMode");
    assert_eq!(rule["Days"]["Ref"], "ObjectLockRetentionDays");
    assert_eq!(param_default(&t, "ObjectLockMode"), "GOVERNANCE");
    assert!(param_default(&t, "ObjectLockRetentionDays").is_number());
    assert_eq!(bucket["VersioningConfiguration"]["Status"], "Enabled");

    // CloudTrail data events for the bucket's objects, into a bucket of
    // their own, on unless LogAuditBucketAccess=false.
    assert_eq!(param_default(&t, "LogAuditBucketAccess"), "true");
    assert_eq!(
        t["Conditions"]["LogAccessOn"],
        json!({ "Fn::Equals": [{ "Ref": "LogAuditBucketAccess" }, "true"] })
    );
    let trail = &r["AccessTrail"];
    assert_eq!(trail["Type"], "AWS::CloudTrail::Trail");
    assert_eq!(trail["Condition"], "LogAccessOn");
    let p = &trail["Properties"];
    assert_eq!(p["IsLogging"], true);
    assert_eq!(p["EnableLogFileValidation"], true);
    assert_eq!(p["S3BucketName"]["Ref"], "AccessLogBucket");
    let selectors = p["AdvancedEventSelectors"].as_array().expect("selectors");
    assert_eq!(selectors.len(), 1, "data events only: {selectors:?}");
    let fields: BTreeSet<String> = selectors[0]["FieldSelectors"]
        .as_array()
        .expect("fields")
        .iter()
        .map(canonical)
        .collect();
    let want: BTreeSet<String> = [
        json!({ "Field": "eventCategory", "Equals": ["Data"] }),
        json!({ "Field": "resources.type", "Equals": ["AWS::S3::Object"] }),
        json!({ "Field": "resources.ARN", "StartsWith": [{ "Fn::Sub": "${AuditBucket.Arn}/" }] }),
    ]
    .iter()
    .map(canonical)
    .collect();
    assert_eq!(fields, want);
    // CloudTrail may write the log bucket, for this trail only.
    let policy = r["AccessLogBucketPolicy"]["Properties"].to_string();
    let trail_arn = "trail/${AWS::StackName}-audit-access";
    assert!(p["TrailName"]["Fn::Sub"] == "${AWS::StackName}-audit-access");
    assert!(
        policy.contains("cloudtrail.") && policy.contains(trail_arn),
        "{policy}"
    );
    let key = r["AuditKey"]["Properties"]["KeyPolicy"].to_string();
    assert!(
        key.contains("cloudtrail.") && key.contains(trail_arn),
        "{key}"
    );
}

/// (name, query text) of every `AWS::Athena::NamedQuery`, with what is
/// wrong about its database or workgroup.
fn named_queries(t: &Value) -> (Vec<(String, String)>, Vec<String>) {
    let (mut found, mut bad) = (Vec::new(), Vec::new());
    for (id, r) in resources(t) {
        if r["Type"] != "AWS::Athena::NamedQuery" {
            continue;
        }
        let p = &r["Properties"];
        if p["Database"]["Ref"] != "AuditDatabase" || p["WorkGroup"]["Ref"] != "AuditWorkGroup" {
            bad.push(format!("{id}: not in AuditDatabase / AuditWorkGroup"));
        }
        let text = |k: &str| {
            p[k].as_str()
                .unwrap_or_else(|| panic!("{id} {k}"))
                .to_string()
        };
        found.push((text("Name"), text("QueryString")));
    }
    found.sort();
    (found, bad)
}

/// Differences between the saved queries and the query files.
fn query_drift(t: &Value) -> Vec<String> {
    let (saved, mut bad) = named_queries(t);
    let mut files = Vec::new();
    for e in std::fs::read_dir(repo().join(QUERIES)).expect(QUERIES) {
        let path = e.expect("entry").path();
        if path.extension().is_some_and(|x| x == "sql") {
            let name = path
                .file_stem()
                .expect("stem")
                .to_string_lossy()
                .into_owned();
            let sql = std::fs::read_to_string(&path).expect("query file");
            files.push((name, sql));
        }
    }
    files.sort();
    assert!(files.len() >= 7, "{QUERIES}: {} files", files.len());
    let names = |v: &[(String, String)]| v.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>();
    if names(&saved) != names(&files) {
        bad.push(format!(
            "saved {:?}, files {:?}",
            names(&saved),
            names(&files)
        ));
    }
    for (name, sql) in &files {
        match saved.iter().find(|(n, _)| n == name) {
            Some((_, q)) if q.trim_end() == sql.trim_end() => {}
            Some(_) => bad.push(format!(
                "{name}: QueryString differs from {QUERIES}/{name}.sql"
            )),
            None => {}
        }
    }
    bad
}

#[test]
fn the_saved_queries_are_the_query_files() {
    let t = template();
    let drift = query_drift(&t);
    assert!(
        drift.is_empty(),
        "{TEMPLATE} (copy each file into QueryString verbatim):\n{}",
        drift.join("\n")
    );
    // The comparison sees an edited query and a missing one.
    let mut edited = t.clone();
    let q = resources(&edited)
        .iter()
        .find(|(_, r)| r["Type"] == "AWS::Athena::NamedQuery")
        .map(|(id, _)| id.clone())
        .expect("a saved query");
    let text = &mut edited["Resources"][&q]["Properties"]["QueryString"];
    *text = format!("{}\nLIMIT 10", text.as_str().expect("text")).into();
    assert!(query_drift(&edited).iter().any(|d| d.contains("differs")));
    edited["Resources"].as_object_mut().expect("map").remove(&q);
    assert!(query_drift(&edited).iter().any(|d| d.contains("saved")));
}
