//! deploy/aws/fleet.yaml, the fleet additions beside the audit stack:
//! cfn-lint accepts it (without and with the autoscaling group); it fits
//! the inline body limit; moto's CloudFormation creates it from the
//! outputs of an audit stack created first, with the approvals table the
//! DynamoDB store needs, the agent policy attached to the fleet role, and
//! a group whose user data, run against a config, writes the fleet keys;
//! its IAM is least privilege; its saved query is
//! deploy/athena/fleet/fleet_health.sql.

use std::{collections::BTreeSet, path::Path, process::Command};

use mcp_interceptor_tests::{
    TempDir,
    everything::repo,
    s3::{boto, free_port, moto},
};
use serde_json::{Value, json};

use crate::{
    MAX_BODY, TEMPLATE, decoded,
    iam::{arn_text, as_list, check_statement, statements},
    resources, run,
    stack::{create_from, map},
};

const FLEET: &str = "deploy/aws/fleet.yaml";
const FLEET_QUERY: &str = "deploy/athena/fleet/fleet_health.sql";
/// What an agent calls beside the audit upload: the bundle's conditional
/// GET, and the approvals store's item reads, writes and index queries.
const AGENT_ACTIONS: &[&str] = &[
    "dynamodb:DescribeTable",
    "dynamodb:GetItem",
    "dynamodb:PutItem",
    "dynamodb:Query",
    "dynamodb:UpdateItem",
    "s3:GetObject",
];
/// Never an agent's: writing the bundle, reading the whole table,
/// deleting items or the table.
const NOT_AGENT: &[&str] = &[
    "s3:PutObject",
    "dynamodb:Scan",
    "dynamodb:DeleteItem",
    "dynamodb:DeleteTable",
];
const BUNDLE: &str = "${PolicyBucket.Arn}/${PolicyPrefix}/bundle.json";
const POLICY_PREFIX: &str = "${PolicyBucket.Arn}/${PolicyPrefix}/";
const TABLE: &str = r#"GetAtt:"ApprovalsTable"."Arn""#;
const INDEXES: &str = "${ApprovalsTable.Arn}/index/*";
const KEY: &str = "3b6a27bcceb6a42d62a3a8d02a6f0d73653215771de243a63ac048a18b59da29";

fn fleet() -> Value {
    decoded(FLEET)
}

#[test]
fn cfn_lint_accepts_the_fleet_template_without_and_with_a_group() {
    run("cfn-lint", &[FLEET]);
    // cfn-lint reads list parameters as lists only from a parameter file.
    let dir = TempDir::new("fleet-lint");
    let file = dir.path().join("params.json");
    let params = json!([
        { "ParameterKey": "AuditBucketName", "ParameterValue": "audit-bucket" },
        { "ParameterKey": "AgentRoleNames", "ParameterValue": ["audit-FleetRole-X", "host-role"] },
        { "ParameterKey": "FleetInstanceProfileName", "ParameterValue": "audit.us-east-1.fleet" },
        { "ParameterKey": "FleetHostPrefix", "ParameterValue": "AROAEXAMPLEROLEID1234:" },
        { "ParameterKey": "BundleKeys", "ParameterValue": [KEY] },
        { "ParameterKey": "ImageId", "ParameterValue": "ami-0123456789abcdef0" },
        { "ParameterKey": "SubnetIds", "ParameterValue": ["subnet-1", "subnet-2"] },
    ]);
    std::fs::write(&file, params.to_string()).expect("params");
    run(
        "cfn-lint",
        &[FLEET, "--parameter-files", &file.display().to_string()],
    );
    let body = std::fs::read(repo().join(FLEET)).expect("fleet template");
    assert!(
        body.len() < MAX_BODY,
        "{FLEET} is {} bytes, over {MAX_BODY}",
        body.len()
    );
}

/// Everything wrong with the fleet template's IAM (see the module doc):
/// wildcards, an agent granted more than [`AGENT_ACTIONS`] or on other
/// resources, a bundle writable by anyone but the publisher.
fn fleet_iam_violations(t: &Value) -> Vec<String> {
    let mut bad = Vec::new();
    for (id, r) in resources(t) {
        let ty = r["Type"].as_str().unwrap_or_default();
        let is_agent = id == "AgentPolicy";
        let mut granted = BTreeSet::new();
        for st in statements(t, r)
            .into_iter()
            .filter(|s| s["Effect"] == "Allow")
        {
            let actions = check_statement(ty, st, &mut bad);
            let arns: Vec<String> = as_list(&st["Resource"]).into_iter().map(arn_text).collect();
            for a in &actions {
                let ok = match a.as_str() {
                    "s3:PutObject" if is_agent => false,
                    "s3:PutObject" => arns.iter().all(|x| x.starts_with(POLICY_PREFIX)),
                    "s3:GetObject" if is_agent => arns == [BUNDLE],
                    a if a.starts_with("dynamodb:") => {
                        arns.iter().all(|x| x == TABLE || x == INDEXES)
                    }
                    _ => true,
                };
                if !ok {
                    bad.push(format!("{ty}: {a} on {arns:?}"));
                }
            }
            granted.extend(actions);
        }
        if is_agent {
            let want: BTreeSet<String> = AGENT_ACTIONS.iter().map(|a| a.to_string()).collect();
            if granted != want {
                bad.push(format!("agent policy grants {granted:?}, not {want:?}"));
            }
            for a in NOT_AGENT.iter().filter(|a| granted.contains(**a)) {
                bad.push(format!("agent policy grants {a}"));
            }
        }
    }
    // Beside what IAM grants: nobody but the publisher writes the bundle,
    // whatever their own policies allow.
    let deny = json!({ "ArnNotEquals": { "aws:PrincipalArn": { "Fn::GetAtt": ["PublisherRole", "Arn"] } } });
    let bucket = &t["Resources"]["PolicyBucketPolicy"]["Properties"]["PolicyDocument"];
    let guarded = as_list(&bucket["Statement"]).into_iter().any(|st| {
        st["Effect"] == "Deny"
            && as_list(&st["Action"]).contains(&&json!("s3:PutObject"))
            && arn_text(&st["Resource"]) == "${PolicyBucket.Arn}/*"
            && st["Condition"] == deny
    });
    if !guarded {
        bad.push("PolicyBucketPolicy lets principals other than PublisherRole write".into());
    }
    bad
}

/// The statements of managed policy `id`, to doctor.
fn policy_statements<'a>(t: &'a mut Value, id: &str) -> &'a mut Vec<Value> {
    t["Resources"][id]["Properties"]["PolicyDocument"]["Statement"]
        .as_array_mut()
        .unwrap_or_else(|| panic!("{id} statements"))
}

#[test]
fn fleet_iam_is_least_privilege_and_only_the_publisher_writes_the_bundle() {
    let t = fleet();
    let bad = fleet_iam_violations(&t);
    assert!(bad.is_empty(), "{FLEET}:\n{}", bad.join("\n"));
    let doctored = |id: &str, f: &dyn Fn(&mut Vec<Value>)| {
        let mut d = t.clone();
        f(policy_statements(&mut d, id));
        fleet_iam_violations(&d)
    };
    let push = |sid: &str, action: &'static str| {
        let sid = sid.to_string();
        move |sts: &mut Vec<Value>| {
            let st = sts
                .iter_mut()
                .find(|s| s["Sid"] == sid.as_str())
                .expect("sid");
            let mut actions = as_list(&st["Action"])
                .into_iter()
                .cloned()
                .collect::<Vec<_>>();
            actions.push(action.into());
            st["Action"] = actions.into();
        }
    };
    for (sid, action) in [
        ("ShareApprovalsAndGrants", "dynamodb:Scan"),
        ("ShareApprovalsAndGrants", "dynamodb:DeleteItem"),
        ("ShareApprovalsAndGrants", "dynamodb:DeleteTable"),
        ("ReadPolicyBundle", "s3:PutObject"),
    ] {
        let v = doctored("AgentPolicy", &push(sid, action));
        assert!(v.iter().any(|v| v.contains(action)), "{action}: {v:?}");
    }
    let v = doctored("AgentPolicy", &|sts| sts[1]["Resource"] = "*".into());
    assert!(v.iter().any(|v| v.contains("Resource [\"*\"]")), "{v:?}");
    let v = doctored("AgentPolicy", &|sts| {
        sts[0]["Resource"] = json!({ "Fn::Sub": "${PolicyBucket.Arn}/*" })
    });
    assert!(v.iter().any(|v| v.contains("s3:GetObject on")), "{v:?}");
    let v = doctored("PublisherPolicy", &|sts| {
        sts[0]["Resource"] = json!({ "Fn::Sub": "${PolicyBucket.Arn}/*" })
    });
    assert!(v.iter().any(|v| v.contains("s3:PutObject on")), "{v:?}");
    let mut d = t.clone();
    d["Resources"]["PolicyBucketPolicy"]["Properties"]["PolicyDocument"]["Statement"]
        .as_array_mut()
        .expect("bucket statements")
        .retain(|st| st["Sid"] != "OnlyThePublisherWrites");
    let v = fleet_iam_violations(&d);
    assert!(
        v.iter().any(|v| v.contains("other than PublisherRole")),
        "{v:?}"
    );
}

/// What is wrong with the saved query against the fleet query file.
fn fleet_query_drift(t: &Value) -> Vec<String> {
    let sql = std::fs::read_to_string(repo().join(FLEET_QUERY)).expect(FLEET_QUERY);
    let saved: Vec<&Value> = resources(t)
        .values()
        .filter(|r| r["Type"] == "AWS::Athena::NamedQuery")
        .map(|r| &r["Properties"])
        .collect();
    let [p] = saved[..] else {
        return vec![format!("{} saved queries, expected 1", saved.len())];
    };
    let mut bad = Vec::new();
    if p["Name"] != "fleet_health" {
        bad.push(format!("named {}", p["Name"]));
    }
    if p["Database"]["Ref"] != "GlueDatabase" || p["WorkGroup"]["Ref"] != "AthenaWorkGroup" {
        bad.push("not in the audit stack's database and workgroup".into());
    }
    if p["QueryString"].as_str().map(str::trim_end) != Some(sql.trim_end()) {
        bad.push(format!("QueryString differs from {FLEET_QUERY}"));
    }
    bad
}

#[test]
fn the_saved_fleet_query_is_the_fleet_health_file() {
    let t = fleet();
    let drift = fleet_query_drift(&t);
    assert!(drift.is_empty(), "{FLEET}:\n{}", drift.join("\n"));
    let mut edited = t.clone();
    let text = &mut edited["Resources"]["QueryFleetHealth"]["Properties"]["QueryString"];
    *text = format!("{}\nLIMIT 10", text.as_str().expect("text")).into();
    assert!(
        fleet_query_drift(&edited)
            .iter()
            .any(|d| d.contains("differs"))
    );
}

#[test]
fn the_approvals_table_expires_items_and_keeps_point_in_time_recovery() {
    // moto's CloudFormation drops these properties: checked as written.
    let t = fleet();
    let table = &resources(&t)["ApprovalsTable"];
    let p = &table["Properties"];
    assert_eq!(p["BillingMode"], "PAY_PER_REQUEST");
    assert_eq!(
        p["TimeToLiveSpecification"],
        json!({ "AttributeName": "ttl", "Enabled": true })
    );
    assert_eq!(
        p["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"],
        true
    );
    assert_eq!(p["SSESpecification"]["SSEEnabled"], true);
    assert_eq!(table["DeletionPolicy"], "Retain");
}

/// (name, type) pairs of a key schema, as DynamoDB describes it.
fn keys(schema: &Value, attrs: &Value) -> Vec<(String, String, String)> {
    let ty = |name: &str| {
        as_list(attrs)
            .into_iter()
            .find(|a| a["AttributeName"] == name)
            .map(|a| a["AttributeType"].as_str().unwrap_or_default().to_string())
            .unwrap_or_default()
    };
    as_list(schema)
        .into_iter()
        .map(|k| {
            let name = k["AttributeName"].as_str().expect("name");
            (
                name.into(),
                k["KeyType"].as_str().expect("type").into(),
                ty(name),
            )
        })
        .collect()
}

fn key(name: &str, kind: &str, ty: &str) -> (String, String, String) {
    (name.into(), kind.into(), ty.into())
}

/// The table DynamoDB made is the store's: keys, indexes, billing.
fn assert_store_table(t: &Value) {
    let attrs = &t["AttributeDefinitions"];
    assert_eq!(
        keys(&t["KeySchema"], attrs),
        [key("pk", "HASH", "S"), key("sk", "RANGE", "S")]
    );
    assert_eq!(t["BillingModeSummary"]["BillingMode"], "PAY_PER_REQUEST");
    let gsi = |name: &str| {
        as_list(&t["GlobalSecondaryIndexes"])
            .into_iter()
            .find(|g| g["IndexName"] == name)
            .unwrap_or_else(|| panic!("index {name}: {t}"))
    };
    let by_kind = gsi("by_kind");
    assert_eq!(
        keys(&by_kind["KeySchema"], attrs),
        [key("kind", "HASH", "S"), key("order", "RANGE", "S")]
    );
    let by_digest = gsi("by_digest");
    assert_eq!(
        keys(&by_digest["KeySchema"], attrs),
        [key("digest", "HASH", "S"), key("created_us", "RANGE", "N")]
    );
    for g in [by_kind, by_digest] {
        assert_eq!(g["Projection"]["ProjectionType"], "ALL");
    }
    assert_eq!(as_list(&t["GlobalSecondaryIndexes"]).len(), 2);
}

/// Runs the launch template's user data against `config` with stand-ins
/// for curl (IMDSv2: a token, then the instance id), `mcp-interceptor`
/// and `systemctl`; the config after it, as JSON, and the commands run.
fn run_user_data(script: &str, dir: &Path, config: &str) -> (Value, String) {
    const CFG: &str = "/etc/mcp-interceptor/config.toml";
    assert!(script.contains(CFG), "{script}");
    let (bin, cfg, calls) = (dir.join("bin"), dir.join("config.toml"), dir.join("calls"));
    std::fs::create_dir_all(&bin).expect("bin");
    let curl = "#!/bin/sh\ncase \"$*\" in\n*api/token*) echo tok;;\n*meta-data/instance-id*) echo i-0123456789abcdef0;;\n*) exit 22;;\nesac\n";
    let record = format!(
        "#!/bin/sh\necho \"$(basename \"$0\") $*\" >> {}\n",
        calls.display()
    );
    for (name, text) in [
        ("curl", curl),
        ("systemctl", &record),
        ("mcp-interceptor", &record),
    ] {
        std::fs::write(bin.join(name), text).expect("stand-in");
        run_ok(Command::new("chmod").args(["+x", &bin.join(name).display().to_string()]));
    }
    std::fs::write(&cfg, config).expect("config");
    let script = script.replace(CFG, &cfg.display().to_string());
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    // Twice: a second boot's run leaves the same file.
    for _ in 0..2 {
        run_ok(
            Command::new("bash")
                .args(["-c", &script])
                .env("PATH", &path),
        );
    }
    const TOML: &str =
        "import json, sys, tomllib\njson.dump(tomllib.load(open(sys.argv[1], 'rb')), sys.stdout)";
    let parsed = run("python", &["-c", TOML, &cfg.display().to_string()]);
    let calls = std::fs::read_to_string(calls).expect("calls");
    (serde_json::from_slice(&parsed).expect("config JSON"), calls)
}

fn run_ok(c: &mut Command) {
    let out = c.output().expect("spawn");
    assert!(
        out.status.success(),
        "{c:?}: {}\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The config an AMI carries: the host's own settings, a local policy
/// directory and a host name the fleet keys replace.
const AMI_CONFIG: &str = r#"[audit]
dir = "/var/lib/mcp-interceptor/audit"
host = "baked-into-the-ami"   # replaced

[policy] # local files until the fleet
files = "/etc/mcp-interceptor/policy"
reload_poll_seconds = 2

[[intercept.ports]]
port = 8080

[approvals]
hold_timeout_seconds = 300
"#;

#[test]
fn moto_creates_the_fleet_stack_from_the_audit_stacks_outputs() {
    let dir = TempDir::new("cfn-fleet-add");
    let port = free_port();
    let _moto = moto(port, dir.path(), "cfn-fleet-add");
    let audit = create_from(TEMPLATE, None, port, "audit", &[]);
    let out = map(&audit["outputs"]);
    let o = |k: &str| {
        out[k]
            .as_str()
            .unwrap_or_else(|| panic!("output {k}"))
            .to_string()
    };
    let subnets = boto(
        port,
        "ec2 = boto3.client('ec2', endpoint_url=s3.meta.endpoint_url, region_name='us-east-1',\n\
         \x20   aws_access_key_id='testing', aws_secret_access_key='testing')\n\
         print(','.join(s['SubnetId'] for s in ec2.describe_subnets()['Subnets'][:2]))",
    );
    let params = [
        ("AuditBucketName", o("AuditBucketName")),
        ("AuditS3Prefix", o("AuditS3Prefix")),
        ("AgentRoleNames", o("FleetRoleName")),
        ("FleetInstanceProfileName", o("FleetInstanceProfileName")),
        ("FleetHostPrefix", o("FleetHostPrefix")),
        ("BundleKeys", KEY.to_string()),
        ("ImageId", "ami-0123456789abcdef0".to_string()),
        ("SubnetIds", subnets.trim().to_string()),
    ];
    let made = create_from(FLEET, None, port, "fleet", &params);
    let fo = map(&made["outputs"]);
    let tables = map(&made["tables"]);
    assert_eq!(tables.len(), 1, "{:?}", tables.keys());
    let (table, described) = tables.iter().next().expect("table");
    assert_store_table(described);
    assert_eq!(fo["ApprovalsStore"], format!("dynamodb://{table}"));
    let bucket = fo["PolicyBucketName"].as_str().expect("bucket");
    let source = format!("s3://{bucket}/mcp-interceptor/");
    assert_eq!(fo["PolicySource"], source.as_str());

    // The agent policy is on the audit stack's fleet role, the publisher's
    // on the publisher role only.
    let roles = map(&made["policy_roles"]);
    let on = |id: &str| {
        let arn = roles.keys().find(|a| a.contains(id)).expect(id);
        roles[arn].clone()
    };
    assert_eq!(on("-AgentPolicy-"), json!([o("FleetRoleName")]));
    assert_eq!(
        on("-PublisherPolicy-"),
        json!([]),
        "attached by ManagedPolicyArns"
    );

    // The group launches from the template, with the fleet's profile and
    // IMDSv2 only.
    let groups = map(&made["groups"]);
    assert_eq!(groups.len(), 1);
    let group = groups.values().next().expect("group");
    assert_eq!(group["VPCZoneIdentifier"], subnets.trim());
    let lts = map(&made["launch_templates"]);
    let (lt, data) = lts.iter().next().expect("launch template");
    assert_eq!(group["LaunchTemplate"]["LaunchTemplateId"], lt.as_str());
    assert_eq!(
        data["IamInstanceProfile"]["Name"],
        o("FleetInstanceProfileName")
    );
    assert_eq!(data["MetadataOptions"]["HttpTokens"], "required");

    let (cfg, calls) = run_user_data(
        data["UserData"].as_str().expect("user data"),
        dir.path(),
        AMI_CONFIG,
    );
    let host = format!("{}i-0123456789abcdef0", o("FleetHostPrefix"));
    assert_eq!(cfg["audit"]["host"], host.as_str());
    assert_eq!(cfg["audit"]["dir"], "/var/lib/mcp-interceptor/audit");
    let s3 = json!({ "bucket": o("AuditBucketName"), "prefix": o("AuditS3Prefix"), "region": "us-east-1" });
    assert_eq!(cfg["audit"]["s3"], s3);
    let policy = json!({ "source": source, "bundle_keys": [KEY], "reload_poll_seconds": 2 });
    assert_eq!(cfg["policy"], policy, "files gone, source in");
    assert_eq!(cfg["approvals"]["store"], format!("dynamodb://{table}"));
    assert_eq!(cfg["approvals"]["hold_timeout_seconds"], 300);
    assert_eq!(cfg["approvals"]["dynamodb"]["region"], "us-east-1");
    assert_eq!(cfg["intercept"]["ports"], json!([{ "port": 8080 }]));
    let cfg_path = dir.path().join("config.toml").display().to_string();
    let once = format!(
        "mcp-interceptor check-config {cfg_path}\nsystemctl enable --now mcp-interceptor\n"
    );
    assert_eq!(calls, once.repeat(2));
}
