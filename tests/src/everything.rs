//! The second implementations: the reference TypeScript server
//! (`@modelcontextprotocol/server-everything`) and the official Python
//! client (`mcp`), both installed by `cargo xtask setup` under the repo.

use std::{path::PathBuf, process::Output, time::Duration};

use serde_json::Value;

use crate::{Proc, proc::run_in};

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("repo root")
        .to_path_buf()
}

fn installed(p: PathBuf) -> PathBuf {
    assert!(
        p.exists(),
        "{} is missing: run `cargo xtask setup`",
        p.display()
    );
    p
}

/// Starts server-everything (`streamableHttp` or `sse`) on 127.0.0.1:`port`
/// inside `ns`.
pub fn server(ns: &str, mode: &str, port: u16, dir: &std::path::Path) -> Proc {
    let launcher = installed(repo().join("tests/peers/server_everything.mjs"));
    installed(repo().join("tests/peers/node_modules/@modelcontextprotocol/server-everything"));
    let args = vec![
        launcher.display().to_string(),
        mode.into(),
        "--host".into(),
        "127.0.0.1".into(),
        "--port".into(),
        port.to_string(),
    ];
    let mut p = Proc::spawn(
        &format!("everything-{mode}-{port}"),
        Some(ns),
        std::path::Path::new("node"),
        &args,
        dir,
    );
    p.wait_for_output("server-everything ready", Duration::from_secs(30));
    p
}

/// Runs the Python SDK client scenario against `url`; returns its JSON.
pub fn client(ns: &str, url: &str, transport: &str, scenario: &str) -> Value {
    let out = client_raw(ns, url, transport, scenario);
    assert!(
        out.status.success(),
        "python client ({scenario}, {transport}) failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("client prints JSON")
}

pub fn client_raw(ns: &str, url: &str, transport: &str, scenario: &str) -> Output {
    let python = installed(repo().join(".venv/bin/python"));
    let script = installed(repo().join("tests/peers/mcp_client.py"));
    let args = vec![
        script.display().to_string(),
        "--url".into(),
        url.into(),
        "--transport".into(),
        transport.into(),
        "--scenario".into(),
        scenario.into(),
        "--timeout".into(),
        "40".into(),
    ];
    run_in(Some(ns), &python, &args, Duration::from_secs(60))
}

/// The output with the fields the client itself lists as volatile removed.
pub fn stable(mut v: Value) -> Value {
    let pointers: Vec<String> = v["volatile"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|p| p["path"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    for p in pointers {
        if let Some(slot) = v.pointer_mut(&p) {
            *slot = Value::Null;
        }
    }
    v
}
