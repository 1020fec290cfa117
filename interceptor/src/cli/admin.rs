//! The running agent's admin API, shared by `approvals` and `grants`:
//! through its admin socket (the Unix user is the approver, mapped by
//! `[admin] local_users`), or through its admin listener with an OIDC
//! token (`--url` and `--token-file`).

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use http::Method;
use interceptor::{
    admin::client::{self, Target},
    config::Config,
};
use serde_json::Value;

/// How to reach the running agent: its admin socket, or its admin
/// listener with a token.
#[derive(Args)]
pub struct Conn {
    #[command(flatten)]
    config: super::ConfigArg,
    /// The admin socket; default: `admin.socket` of the config.
    #[arg(long)]
    socket: Option<PathBuf>,
    /// The agent's admin listener (e.g. https://host:9443) instead of the
    /// socket; needs `--token-file`.
    #[arg(long, requires = "token_file")]
    url: Option<String>,
    /// A file holding an OIDC token of the approver.
    #[arg(long)]
    token_file: Option<PathBuf>,
    /// CA bundle to verify the admin listener's certificate.
    #[arg(long)]
    ca: Option<PathBuf>,
    /// Print the agent's JSON answer.
    #[arg(long)]
    pub(super) json: bool,
}

impl Conn {
    fn target(&self) -> anyhow::Result<Target> {
        if let Some(url) = &self.url {
            let file = self
                .token_file
                .as_ref()
                .context("--url needs --token-file")?;
            let token = std::fs::read_to_string(file)
                .with_context(|| format!("reading {}", file.display()))?
                .trim()
                .to_string();
            return Ok(Target::Url {
                base: url.clone(),
                token,
                ca: self.ca.clone(),
            });
        }
        let socket = match &self.socket {
            Some(s) => s.clone(),
            None => Config::load(&self.config.config)?.admin.socket,
        };
        Ok(Target::Socket(socket))
    }
}

fn block_on<F: std::future::Future>(f: F) -> anyhow::Result<F::Output> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?
        .block_on(f))
}

pub(super) fn call(
    conn: &Conn,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> anyhow::Result<Value> {
    let target = conn.target()?;
    Ok(block_on(client::call(&target, method, path, body))??)
}

/// `2026-11-25 14:03:07Z`.
pub(super) fn time(us: Option<i64>) -> String {
    let Some(us) = us else { return "-".into() };
    let (day, hour) = interceptor::audit::wal::hour_of(us);
    let secs = us.div_euclid(1_000_000).rem_euclid(3600);
    format!("{day} {hour}:{:02}:{:02}Z", secs / 60, secs % 60)
}

/// `["a", "b"]` as `a, b`.
pub(super) fn list(v: Option<&Value>) -> String {
    v.and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default()
}

/// The agent's answer: as JSON with `--json`, else each item through
/// `human`, its strings escaped for the terminal.
pub(super) fn print(conn: &Conn, v: &Value, human: impl Fn(&Value) -> String) {
    if conn.json {
        println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
    } else if let Some(items) = v.as_array() {
        if items.is_empty() {
            println!("(none)");
        }
        for i in items {
            print!("{}", human(&interceptor::escape::value(i)));
        }
    } else {
        print!("{}", human(&interceptor::escape::value(v)));
    }
}
