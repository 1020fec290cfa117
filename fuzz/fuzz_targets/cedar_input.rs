//! The Cedar question built from a client's request: the tool, resource or
//! prompt (`Message::target`), the arguments (`policy::phase::arguments_of`)
//! flattened into tags with absolute paths normalized, `sql_kinds`, the
//! canonical `arguments_json`, then a decision by the example policies
//! (deploy/policy/examples), whose `like` and tag lookups run on them.
//!
//! Input: one control byte (method, server, groups), then the request's
//! `params` as JSON (an object or array, as JSON-RPC allows); any other
//! JSON is the arguments themselves; bytes that are not JSON are one
//! string used as the target and as the `path`, `query` and `command`
//! arguments (what the example policies look at).
#![no_main]

use std::{net::IpAddr, sync::OnceLock};

use bytes::Bytes;
use interceptor::{
    jsonrpc::{self, Body},
    pipeline::Effect,
    policy::{
        Input, Policies,
        input::{self, normalize, sql_kinds},
        phase::arguments_of,
    },
};
use libfuzzer_sys::fuzz_target;
use serde_json::{Value, json};

const METHODS: [&str; 8] = [
    "tools/call",
    "tools/call",
    "prompts/get",
    "resources/read",
    "resources/subscribe",
    "tools/list",
    "initialize",
    "x-vendor/op",
];
const SERVERS: [&str; 4] = ["files", "db", "shell", "8080"];
const GROUPS: [&[&str]; 8] = [
    &[],
    &["dev"],
    &["analysts"],
    &["data-eng"],
    &["oncall"],
    &["dba", "data-eng"],
    &["dev", "oncall", "analysts"],
    &["", "Mcp::Group::\"dev\""],
];

fn policies() -> &'static Policies {
    static P: OnceLock<Policies> = OnceLock::new();
    P.get_or_init(|| {
        let src = |name: &str, text: &str| (name.to_string(), text.to_string());
        Policies::from_sources(&[
            src(
                "base.cedar",
                include_str!("../../deploy/policy/examples/base.cedar"),
            ),
            src(
                "database.cedar",
                include_str!("../../deploy/policy/examples/database.cedar"),
            ),
            src(
                "filesystem.cedar",
                include_str!("../../deploy/policy/examples/filesystem.cedar"),
            ),
            src(
                "shell.cedar",
                include_str!("../../deploy/policy/examples/shell.cedar"),
            ),
        ])
        .expect("the example policies load")
    })
}

fn strings<'a>(v: &'a Value, out: &mut Vec<&'a str>) {
    match v {
        Value::String(s) => out.push(s),
        Value::Array(a) => a.iter().for_each(|x| strings(x, out)),
        Value::Object(m) => m.iter().for_each(|(k, x)| {
            out.push(k);
            strings(x, out)
        }),
        _ => {}
    }
}

fn check_normalize(s: &str) {
    let n = normalize(s);
    assert_eq!(normalize(&n), n, "normalize is not idempotent on {s:?}");
    let path = n.strip_prefix("file://").unwrap_or(&n);
    if path.starts_with('/') {
        assert!(
            !path.split('/').any(|seg| seg == ".." || seg == "."),
            "{s:?} normalized to {n:?}"
        );
    } else {
        assert_eq!(n, s, "only absolute paths change");
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&ctl, rest)) = data.split_first() else {
        return;
    };
    let method = METHODS[usize::from(ctl & 7)];
    let (target, arguments) = match serde_json::from_slice::<Value>(rest) {
        Ok(params @ (Value::Object(_) | Value::Array(_))) => {
            let req = json!({ "jsonrpc": "2.0", "id": 1, "method": method, "params": params });
            let Ok(Body::Single(msg)) = jsonrpc::parse(&Bytes::from(req.to_string())) else {
                panic!("a request with object or array params parses");
            };
            (msg.target().map(str::to_owned), arguments_of(&msg))
        }
        Ok(other) => (None, Some(other)),
        Err(_) => {
            let text = String::from_utf8_lossy(rest).into_owned();
            let args = json!({ "path": text, "query": text, "command": text });
            (Some(text), Some(args))
        }
    };
    let input = Input {
        subject: "alice".into(),
        groups: GROUPS[usize::from(ctl >> 5)]
            .iter()
            .map(|g| g.to_string())
            .collect(),
        auth_method: "oidc".into(),
        issuer: "https://issuer.example".into(),
        client_id: "client".into(),
        scopes: vec!["mcp:call".into()],
        server: SERVERS[usize::from((ctl >> 3) & 3)].into(),
        server_address: "10.0.0.2".into(),
        server_port: 8080,
        method: method.into(),
        target,
        arguments,
        client_name: "fuzz".into(),
        client_version: "1".into(),
        source_ip: IpAddr::from([10, 0, 0, 5]),
        session_id: "s".into(),
        transport: "streamable-http".into(),
        // A Wednesday, 10:00 UTC (office hours for the example policies).
        time: 1_789_552_800,
        grants: Vec::new(),
        listing: false,
        process: None,
    };
    if let Some(args) = &input.arguments {
        let mut all = Vec::new();
        strings(args, &mut all);
        all.iter().for_each(|s| check_normalize(s));
        for k in sql_kinds(args) {
            assert!(
                !k.is_empty() && k.bytes().all(|b| b.is_ascii_lowercase()),
                "{k:?}"
            );
        }
    }
    if let Some(t) = &input.target {
        check_normalize(t);
    }
    // Never fails for these inputs today; if it did, the live proxy denies.
    let _ = input::cedar(&input);
    if let Ok(d) = policies().decide(&input) {
        if d.effect != Effect::Deny {
            assert!(!d.policies.is_empty(), "allowed by no policy: {d:?}");
            // The guards must hold on what the server will act on: the raw
            // text (commands) and the resolved path (files).
            if let (Some(Value::Object(args)), "tools/call") = (&input.arguments, method) {
                let arg = |k: &str| args.get(k).and_then(Value::as_str).unwrap_or_default();
                if input.server == "shell" {
                    let c = arg("command");
                    for bad in ["rm -rf /", "| sh", "| bash", "/etc/shadow"] {
                        assert!(!c.contains(bad), "shell guard passed {c:?}: {d:?}");
                    }
                }
                let path = arg("path");
                if input.server == "files" && path.starts_with('/') {
                    assert!(
                        normalize(path).starts_with("/srv/data/"),
                        "files guard passed {path:?}: {d:?}"
                    );
                }
            }
        }
        // A policy that errors is skipped by Cedar: for a forbid rule that
        // would be a hole. The examples are written so none can.
        assert!(
            d.errors.is_empty(),
            "policy evaluation errors: {:?}",
            d.errors
        );
    }
});
