//! Driving the `mcp-peer` binary: a real rmcp server and client.

use std::{net::SocketAddr, path::Path, process::Output, time::Duration};

use serde_json::Value;

use crate::{Proc, bin, proc::run_in, proc::run_unprivileged};

/// Starts an MCP server (streamable HTTP) on `listen` inside `ns`.
pub fn server(ns: &str, listen: &str, dir: &Path) -> Proc {
    server_with(ns, listen, dir, &[])
}

/// Like [`server`], with more `mcp-peer server` flags (`--log-auth`,
/// `--require-auth VALUE`, `--tls-cert PEM --tls-key PEM`, ...); `ns` may
/// be `None` to run in this namespace.
pub fn server_with<'a>(
    ns: impl Into<Option<&'a str>>,
    listen: &str,
    dir: &Path,
    extra_args: &[&str],
) -> Proc {
    let name = format!("server-{}", listen.replace([':', '[', ']', '.'], "_"));
    let mut args = vec!["server".into(), "--listen".into(), listen.into()];
    args.extend(extra_args.iter().map(|a| (*a).to_owned()));
    let mut p = Proc::spawn(&name, ns.into(), &bin("mcp-peer"), &args, dir);
    p.wait_for_output("listening", Duration::from_secs(15));
    p
}

/// The address a running server printed as `listening <addr>`: the real
/// port when it was started on port 0.
pub fn listening(server: &Proc) -> SocketAddr {
    server
        .stdout()
        .lines()
        .find_map(|l| l.strip_prefix("listening "))
        .and_then(|a| a.trim().parse().ok())
        .unwrap_or_else(|| panic!("{} printed no address:\n{}", server.name, server.stdout()))
}

/// The `auth ...` lines a `--log-auth` server printed so far, one per
/// request: `auth <METHOD> <path> authorization=<v|-> x-upstream-auth=<v|->`.
pub fn auth_log(server: &Proc) -> Vec<String> {
    server
        .stdout()
        .lines()
        .filter(|l| l.starts_with("auth "))
        .map(str::to_owned)
        .collect()
}

/// Result of one client run.
#[derive(Debug)]
pub struct Call {
    pub output: Output,
}

impl Call {
    pub fn ok(&self) -> bool {
        self.output.status.success()
    }

    /// The client's JSON summary; panics with stderr if the call failed.
    pub fn json(&self) -> Value {
        assert!(
            self.ok(),
            "MCP client failed ({}): {}",
            self.output.status,
            String::from_utf8_lossy(&self.output.stderr)
        );
        serde_json::from_slice(&self.output.stdout).expect("client prints JSON")
    }

    /// The text of the first content item of the tool result.
    pub fn text(&self) -> String {
        self.json()["result"]["content"][0]["text"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.output.stderr).into_owned()
    }
}

fn client_args(url: &str, tool: &str, args: &Value) -> Vec<String> {
    vec![
        "client".into(),
        "--url".into(),
        url.into(),
        "--tool".into(),
        tool.into(),
        "--args".into(),
        args.to_string(),
        "--timeout-secs".into(),
        "5".into(),
    ]
}

/// initialize + tools/list + tools/call `tool` with `args`, from inside `ns`.
pub fn call(ns: &str, url: &str, tool: &str, args: Value) -> Call {
    call_with(ns, url, tool, args, &[])
}

/// Like [`call`], with more `mcp-peer client` flags (`--bearer TOKEN`,
/// `--ca PEM`, `--cert PEM --key PEM`, ...); `ns` may be `None`.
pub fn call_with<'a>(
    ns: impl Into<Option<&'a str>>,
    url: &str,
    tool: &str,
    args: Value,
    extra_args: &[&str],
) -> Call {
    let mut argv = client_args(url, tool, &args);
    argv.extend(extra_args.iter().map(|a| (*a).to_owned()));
    let output = run_in(ns.into(), &bin("mcp-peer"), &argv, Duration::from_secs(20));
    Call { output }
}

/// A plain HTTP POST of `initialize` from an optional fixed source address;
/// as `nobody` when `unprivileged`. Exit codes: 0 answered, 1 error or
/// timeout, 2 connect failed, 3 bind failed.
pub fn raw(ns: &str, connect: &str, source: Option<&str>, unprivileged: bool) -> Output {
    let mut args = vec![
        "raw".into(),
        "--connect".into(),
        connect.into(),
        "--timeout-secs".into(),
        "5".into(),
    ];
    if let Some(s) = source {
        args.extend(["--source".into(), s.into()]);
    }
    let limit = Duration::from_secs(20);
    if unprivileged {
        run_unprivileged(ns, &bin("mcp-peer"), &args, limit)
    } else {
        run_in(Some(ns), &bin("mcp-peer"), &args, limit)
    }
}
