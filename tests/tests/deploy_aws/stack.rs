//! The template created in moto's CloudFormation (tests/peers/cfn_stack.py
//! unrolls its loops first): 200 named hosts get 200 roles and profiles,
//! none shared, names that stripping would merge included; a fleet gets one
//! role and profile; and an agent named as a fleet instance uploads only
//! keys its role's policy (with `${aws:userid}` filled in) allows.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::Path,
    process::Output,
    time::Duration,
};

use mcp_interceptor_tests::{
    Agent, NetNs, TempDir,
    everything::repo,
    require_root, run_in,
    s3::{KEY_ID, SECRET, boto_in, free_port, moto, moto_in},
    wait_for,
};
use serde_json::Value;

use crate::{TEMPLATE, iam::FLEET_VAR, two_hundred_hosts, venv_bin};

const PORT: &str = "[[intercept.ports]]\nport = 8080\n";
const SIGTERM: i32 = 15;

/// Runs `cfn_stack.py create` of [`TEMPLATE`] for stack `name` in the
/// moto server on `port` (in network namespace `ns`, or here), writing
/// what it made to `out`.
fn try_create(
    ns: Option<&str>,
    port: u16,
    name: &str,
    params: &[(&str, String)],
    out: &Path,
) -> Output {
    try_create_from(TEMPLATE, ns, port, name, params, out)
}

/// [`try_create`] of `template` (relative to the repo).
fn try_create_from(
    template: &str,
    ns: Option<&str>,
    port: u16,
    name: &str,
    params: &[(&str, String)],
    out: &Path,
) -> Output {
    let root = repo();
    let mut args: Vec<String> = vec![
        root.join("tests/peers/cfn_stack.py").display().to_string(),
        "create".into(),
        root.join(template).display().to_string(),
        "--port".into(),
        port.to_string(),
        "--stack".into(),
        name.into(),
        "--out".into(),
        out.display().to_string(),
    ];
    for (k, v) in params {
        args.extend(["--param".into(), format!("{k}={v}")]);
    }
    run_in(ns, &venv_bin("python"), &args, Duration::from_secs(240))
}

/// Creates the stack of [`TEMPLATE`]; what it made.
fn create(ns: Option<&str>, port: u16, name: &str, params: &[(&str, String)]) -> Value {
    create_from(TEMPLATE, ns, port, name, params)
}

/// Creates the stack of `template`; what it made.
pub fn create_from(
    template: &str,
    ns: Option<&str>,
    port: u16,
    name: &str,
    params: &[(&str, String)],
) -> Value {
    let dir = TempDir::new("cfn-made");
    let file = dir.path().join("made.json");
    let out = try_create_from(template, ns, port, name, params, &file);
    assert!(
        out.status.success(),
        "cfn_stack.py create: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let made: Value =
        serde_json::from_slice(&std::fs::read(&file).expect("made.json")).expect("JSON");
    assert_eq!(made["status"], "CREATE_COMPLETE", "{}", made["reason"]);
    made
}

/// `v` as an object, or a panic naming it.
pub fn map(v: &Value) -> &serde_json::Map<String, Value> {
    v.as_object().unwrap_or_else(|| panic!("an object: {v}"))
}

/// The logical ids of what moto made, by type.
fn made_ids(made: &Value, ty: &str) -> BTreeSet<String> {
    made["resources"]
        .as_array()
        .expect("resources")
        .iter()
        .filter(|r| r["type"] == ty)
        .map(|r| r["logical"].as_str().expect("id").to_string())
        .collect()
}

#[test]
fn a_stack_for_200_named_hosts_gives_each_its_own_role_and_profile() {
    let dir = TempDir::new("cfn-200");
    let port = free_port();
    let _moto = moto(port, dir.path(), "cfn-200");
    let hosts = two_hundred_hosts();
    // Entry 5 emptied: its slot stays free and the others keep theirs.
    let mut entries = hosts.clone();
    entries[5] = String::new();
    let made = create(
        None,
        port,
        "audit",
        &[
            ("AgentHosts", entries.join(",")),
            ("CreateFleetRole", "false".into()),
        ],
    );
    let profiles = map(&made["profiles"]);
    let roles = map(&made["roles"]);
    assert_eq!(profiles.len(), 199, "{:?}", profiles.keys());
    let mut used = BTreeSet::new();
    for (slot, host) in entries.iter().enumerate().filter(|(_, h)| !h.is_empty()) {
        let name = format!("audit.us-east-1.host.{host}");
        let members = profiles[&name].as_array().expect("roles");
        assert_eq!(members.len(), 1, "{name}: {members:?}");
        let role = members[0].as_str().expect("role name");
        assert!(
            role.starts_with(&format!("audit-AgentRole{slot}-")),
            "{host}: {role}"
        );
        assert_eq!(roles[role]["tags"]["mcp-interceptor-host"], host.as_str());
        assert!(used.insert(role.to_string()), "{role} shared");
    }
    assert!(profiles.contains_key("audit.us-east-1.host.ip-10-0-1-23"));
    assert!(profiles.contains_key("audit.us-east-1.host.ip-10-0-12-3"));
    assert!(!made_ids(&made, "AWS::IAM::Role").contains("AgentRole5"));
    assert!(!made_ids(&made, "AWS::IAM::Role").contains("FleetRole"));
    // 199 host roles + the auditor; one upload policy serves them all.
    assert_eq!(roles.len(), 200);
    let upload: Vec<&Value> = map(&made["policies"])
        .iter()
        .filter(|(arn, _)| arn.contains("HostUploadPolicy"))
        .map(|(_, d)| d)
        .collect();
    assert_eq!(upload.len(), 1);
    let doc = upload[0].to_string();
    assert!(
        doc.contains("manifest/${aws:PrincipalTag/mcp-interceptor-host}/"),
        "{doc}"
    );
    let outputs = map(&made["outputs"]);
    assert_eq!(
        outputs["HostInstanceProfilePrefix"],
        "audit.us-east-1.host."
    );
    assert!(!outputs.contains_key("FleetHostPrefix"));
    assert!(!outputs.contains_key("AgentHostsOverflow"));

    // A host listed twice would share a profile: the stack refuses.
    let twice = ("AgentHosts", "ip-10-9-0-1,ip-10-9-0-1".to_string());
    let out = try_create(
        None,
        port,
        "twice",
        &[twice],
        &dir.path().join("twice.json"),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a repeated host was accepted");
    assert!(
        err.contains("twice.us-east-1.host.ip-10-9-0-1 already exists"),
        "{err}"
    );
}

/// The fleet role's object patterns with `${aws:userid}` = `user_id`, as
/// IAM evaluates them.
fn fleet_patterns(made: &Value, user_id: &str) -> Vec<String> {
    let role = map(&made["roles"])
        .iter()
        .find(|(n, _)| n.contains("-FleetRole-"))
        .map(|(_, r)| r)
        .expect("fleet role");
    let doc = &role["inline"]["audit-upload"];
    let st = doc["Statement"]
        .as_array()
        .expect("statements")
        .iter()
        .find(|s| s["Sid"] == "AddOwnAuditFiles")
        .expect("AddOwnAuditFiles");
    let var = FLEET_VAR.replace("${!", "${");
    st["Resource"]
        .as_array()
        .expect("resources")
        .iter()
        .map(|r| r.as_str().expect("arn").replace(&var, user_id))
        .collect()
}

/// IAM's ARN wildcards: `*` any run of characters, `?` any one.
fn arn_like(pattern: &str, s: &str) -> bool {
    match pattern.chars().next() {
        None => s.is_empty(),
        Some('*') => (0..=s.len())
            .filter(|&i| s.is_char_boundary(i))
            .any(|i| arn_like(&pattern[1..], &s[i..])),
        Some(c) => {
            s.chars().next().is_some_and(|d| c == '?' || c == d)
                && arn_like(
                    &pattern[c.len_utf8()..],
                    &s[s.chars().next().map_or(0, char::len_utf8)..],
                )
        }
    }
}

fn allowed(patterns: &[String], bucket: &str, key: &str) -> bool {
    let arn = format!("arn:aws:s3:::{bucket}/{key}");
    patterns.iter().any(|p| arn_like(p, &arn))
}

#[test]
fn arn_like_matches_as_iam_does() {
    assert!(arn_like("a/*/b-????.json", "a/x/y/b-1234.json"));
    assert!(!arn_like("a/*/b-????.json", "a/x/b-123.json"));
    assert!(!arn_like("a/AROA1:i-1/*", "a/AROA1:i-2/x"));
}

/// Every object key under `prefix/` in `bucket`.
fn keys_in(ns: &NetNs, port: u16, bucket: &str, prefix: &str) -> Vec<String> {
    let out = boto_in(
        Some(ns.name()),
        port,
        &format!(
            "print(json.dumps([o['Key'] for o in s3.list_objects_v2(Bucket='{bucket}', Prefix='{prefix}/').get('Contents', [])]))"
        ),
    );
    serde_json::from_str(out.trim()).expect("keys")
}

fn drain_outbox(agent: &Agent) {
    let outbox = agent.audit_dir().join("outbox");
    wait_for("the outbox to drain", Duration::from_secs(30), || {
        let marks = std::fs::read_dir(&outbox)
            .map(|d| {
                d.filter_map(Result::ok)
                    .filter(|e| e.file_name().to_string_lossy().ends_with(".mark"))
                    .count()
            })
            .unwrap_or(0);
        (marks == 0).then_some(())
    });
}

#[test]
fn a_fleet_stack_shares_one_role_and_its_agents_upload_only_their_own_keys() {
    require_root();
    let (ns, dir) = (NetNs::new("cfn-fleet"), TempDir::new("cfn-fleet"));
    let port = free_port();
    let _moto = moto_in(Some(ns.name()), port, dir.path(), "cfn-fleet");
    let made = create(Some(ns.name()), port, "fleet", &[]);
    let profiles = map(&made["profiles"]);
    let outputs = map(&made["outputs"]);
    assert_eq!(
        profiles.keys().collect::<Vec<_>>(),
        ["fleet.us-east-1.fleet"]
    );
    assert_eq!(outputs["FleetInstanceProfileName"], "fleet.us-east-1.fleet");
    let role = profiles["fleet.us-east-1.fleet"][0].as_str().expect("role");
    let role_id = made["roles"][role]["id"].as_str().expect("role id");
    let prefix = outputs["FleetHostPrefix"]
        .as_str()
        .expect("FleetHostPrefix");
    assert_eq!(prefix, format!("{role_id}:"));
    assert!(
        made_ids(&made, "AWS::IAM::Role")
            .iter()
            .all(|id| !id.starts_with("AgentRole"))
    );

    // An instance of the fleet, named as the README says, writing to the
    // stack's bucket (moto made it) with the stack's prefix.
    let me = format!("{prefix}i-0123456789abcdef0");
    let bucket = outputs["AuditBucketName"].as_str().expect("bucket");
    let other = format!("{prefix}i-0fedcba9876543210");
    let s3 = format!(
        "host = \"{me}\"\n[audit.s3]\nbucket = \"{bucket}\"\nprefix = \"{}\"\nendpoint = \"http://127.0.0.1:{port}\"\n",
        outputs["AuditS3Prefix"].as_str().expect("prefix")
    );
    let env = vec![
        ("AWS_ACCESS_KEY_ID".to_string(), KEY_ID.to_string()),
        ("AWS_SECRET_ACCESS_KEY".to_string(), SECRET.to_string()),
    ];
    let mut agent = Agent::start_with_env(&ns, dir.path(), "", PORT, &s3, env);
    // Stopped, its file closed; started again, it ships what is left.
    agent.stop(SIGTERM);
    agent.restart();
    drain_outbox(&agent);
    let keys = keys_in(&ns, port, bucket, "mcp-interceptor");
    let kinds: BTreeMap<bool, usize> = keys.iter().fold(BTreeMap::new(), |mut m, k| {
        *m.entry(k.ends_with(".parquet")).or_default() += 1;
        m
    });
    assert!(
        kinds.len() == 2,
        "a Parquet file and a manifest entry: {keys:?}"
    );
    let mine = fleet_patterns(&made, &me);
    let theirs = fleet_patterns(&made, &other);
    for key in &keys {
        assert!(allowed(&mine, bucket, key), "{key} is outside {mine:?}");
        assert!(
            !allowed(&theirs, bucket, key),
            "{key} is also another instance's"
        );
    }
}
