//! `mcp-interceptor approvals ...` and `grants ...`: act on the running
//! agent through its admin socket (the Unix user is the approver, mapped
//! by `[admin] local_users`), or through its admin listener with an OIDC
//! token (`--url` and `--token-file`).

use std::{path::PathBuf, process::ExitCode};

use anyhow::Context;
use clap::{Args, Subcommand};
use http::Method;
use interceptor::{
    admin::client::{self, Target},
    config::{self, Config},
};
use serde_json::{Value, json};

#[derive(Args)]
pub struct Conn {
    #[arg(long, short, default_value = config::DEFAULT_PATH)]
    config: PathBuf,
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
    json: bool,
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
            None => Config::load(&self.config)?.admin.socket,
        };
        Ok(Target::Socket(socket))
    }
}

#[derive(Subcommand)]
pub enum ApprovalsCmd {
    /// Approval requests (default: pending ones), oldest first, one page.
    List {
        #[command(flatten)]
        conn: Conn,
        /// pending, approved, denied, expired, used, abandoned,
        /// interrupted or all.
        #[arg(long, default_value = "pending")]
        status: String,
        /// Requests per page (at most 500).
        #[arg(long, default_value_t = 50)]
        limit: u32,
        /// Continue after a previous page (the `next` it printed).
        #[arg(long)]
        cursor: Option<String>,
        /// Newest first instead.
        #[arg(long)]
        newest_first: bool,
    },
    /// One request: the exact call, who asked, votes so far.
    Show {
        id: String,
        /// Also the real (unmasked) arguments; each look is an audit row.
        #[arg(long)]
        values: bool,
        #[command(flatten)]
        conn: Conn,
    },
    /// Approve a request (as the socket's user or the token's subject).
    Approve {
        id: String,
        #[arg(long)]
        reason: String,
        #[command(flatten)]
        conn: Conn,
    },
    /// Deny a request: the held call is refused at once.
    Deny {
        id: String,
        #[arg(long)]
        reason: String,
        #[command(flatten)]
        conn: Conn,
    },
}

#[derive(Subcommand)]
pub enum GrantsCmd {
    /// Give a subject temporary access: policies see it in
    /// `context.grants` until the TTL ends.
    Add {
        #[arg(long)]
        subject: String,
        /// The issuer the subject is of (token issuer URL, or a client
        /// certificate's issuer DN); default: the only `[[identity.oidc]]`
        /// issuer, when the agent has just one and no client CA.
        #[arg(long)]
        issuer: Option<String>,
        /// Tool name glob (`db.*`).
        #[arg(long)]
        tool: String,
        /// Server name (port rule `name`, else its port); default: any.
        #[arg(long, default_value = "*")]
        server: String,
        /// How long: `90s`, `30m`, `8h`.
        #[arg(long)]
        ttl: String,
        /// Why (e.g. the incident id); recorded in the audit.
        #[arg(long)]
        reason: String,
        #[command(flatten)]
        conn: Conn,
    },
    /// Grants in force (`--all`: also expired and revoked ones).
    List {
        #[arg(long)]
        all: bool,
        #[command(flatten)]
        conn: Conn,
    },
    /// End a grant now.
    Revoke {
        id: String,
        #[arg(long)]
        reason: String,
        #[command(flatten)]
        conn: Conn,
    },
}

/// `30m` → 1800.
pub fn parse_ttl(s: &str) -> anyhow::Result<u64> {
    let s = s.trim();
    let (num, mult) = match s.chars().last() {
        Some('s') => (&s[..s.len() - 1], 1),
        Some('m') => (&s[..s.len() - 1], 60),
        Some('h') => (&s[..s.len() - 1], 3600),
        Some('d') => (&s[..s.len() - 1], 86400),
        _ => (s, 1),
    };
    let n: u64 = num
        .parse()
        .with_context(|| format!("--ttl {s:?}: expected a number with s, m, h or d"))?;
    Ok(n * mult)
}

fn block_on<F: std::future::Future>(f: F) -> anyhow::Result<F::Output> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?
        .block_on(f))
}

fn call(conn: &Conn, method: Method, path: &str, body: Option<Value>) -> anyhow::Result<Value> {
    let target = conn.target()?;
    Ok(block_on(client::call(&target, method, path, body))??)
}

/// `2026-11-25 14:03:07Z`.
fn time(us: Option<i64>) -> String {
    let Some(us) = us else { return "-".into() };
    let (day, hour) = interceptor::audit::wal::hour_of(us);
    let secs = us.div_euclid(1_000_000).rem_euclid(3600);
    format!("{day} {hour}:{:02}:{:02}Z", secs / 60, secs % 60)
}

fn show_approval(a: &Value) -> String {
    let s = |k: &str| a.get(k).and_then(Value::as_str).unwrap_or("").to_string();
    let mut out = format!(
        "{}  {}  {} asks for {} on {} (server {})\n",
        s("id"),
        s("status"),
        s("subject"),
        s("method"),
        a.get("target").and_then(Value::as_str).unwrap_or("-"),
        s("server"),
    );
    out.push_str(&format!(
        "  arguments (masked): {}\n  needs {} approver(s) from: {}\n  policy: {} (version {})\n  requested {}, expires {}\n",
        a.get("arguments").map(Value::to_string).unwrap_or_else(|| "none".into()),
        a.get("quorum").and_then(Value::as_u64).unwrap_or(1),
        list(a.get("approver_groups")),
        list(a.get("policies")),
        s("policy_version").get(..12).unwrap_or(""),
        time(a.get("created_us").and_then(Value::as_i64)),
        time(a.get("expires_us").and_then(Value::as_i64)),
    ));
    for v in a
        .get("votes")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        out.push_str(&format!(
            "  vote: {} {} at {}: {}\n",
            v.get("approver").and_then(Value::as_str).unwrap_or(""),
            if v.get("approve").and_then(Value::as_bool) == Some(true) {
                "approved"
            } else {
                "denied"
            },
            time(v.get("at_us").and_then(Value::as_i64)),
            v.get("reason").and_then(Value::as_str).unwrap_or(""),
        ));
    }
    out
}

/// `["a", "b"]` as `a, b`.
fn list(v: Option<&Value>) -> String {
    v.and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default()
}

fn show_grant(g: &Value) -> String {
    let s = |k: &str| g.get(k).and_then(Value::as_str).unwrap_or("").to_string();
    let state = if g.get("revoked_us").is_some_and(|v| !v.is_null()) {
        format!("revoked by {}", s("revoked_by"))
    } else {
        format!(
            "until {}",
            time(g.get("expires_us").and_then(Value::as_i64))
        )
    };
    format!(
        "{}  {} ({}) may use {} on {}  {state}  (granted by {}: {})\n",
        s("id"),
        s("subject"),
        s("issuer"),
        s("tool"),
        s("server"),
        s("granted_by"),
        s("reason")
    )
}

fn print(conn: &Conn, v: &Value, human: impl Fn(&Value) -> String) {
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

pub fn approvals(cmd: ApprovalsCmd) -> anyhow::Result<ExitCode> {
    match cmd {
        ApprovalsCmd::List {
            conn,
            status,
            limit,
            cursor,
            newest_first,
        } => {
            let mut path = format!("/v1/approvals?status={status}&limit={limit}");
            if let Some(c) = cursor {
                path.push_str(&format!("&cursor={c}"));
            }
            if newest_first {
                path.push_str("&order=newest");
            }
            let v = call(&conn, Method::GET, &path, None)?;
            if conn.json {
                print(&conn, &v, show_approval);
            } else {
                print(&conn, &v["approvals"], show_approval);
                if let Some(c) = v["next_cursor"].as_str() {
                    println!("more: --cursor {c}");
                }
            }
        }
        ApprovalsCmd::Show { id, values, conn } => {
            let v = call(&conn, Method::GET, &format!("/v1/approvals/{id}"), None)?;
            print(&conn, &v, show_approval);
            if values {
                let real = call(
                    &conn,
                    Method::GET,
                    &format!("/v1/approvals/{id}/values"),
                    None,
                )?;
                if conn.json {
                    println!(
                        "{}",
                        serde_json::to_string_pretty(&real).unwrap_or_default()
                    );
                } else {
                    println!(
                        "  arguments (REAL, this look is audited): {}",
                        real["arguments"]
                    );
                }
            }
        }
        ApprovalsCmd::Approve { id, reason, conn } | ApprovalsCmd::Deny { id, reason, conn }
            if reason.trim().is_empty() =>
        {
            let _ = (id, conn);
            anyhow::bail!("--reason must say why");
        }
        ApprovalsCmd::Approve { id, reason, conn } => {
            let v = call(
                &conn,
                Method::POST,
                &format!("/v1/approvals/{id}/approve"),
                Some(json!({ "reason": reason })),
            )?;
            print(&conn, &v, show_approval);
        }
        ApprovalsCmd::Deny { id, reason, conn } => {
            let v = call(
                &conn,
                Method::POST,
                &format!("/v1/approvals/{id}/deny"),
                Some(json!({ "reason": reason })),
            )?;
            print(&conn, &v, show_approval);
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub fn grants(cmd: GrantsCmd) -> anyhow::Result<ExitCode> {
    match cmd {
        GrantsCmd::Add {
            subject,
            issuer,
            tool,
            server,
            ttl,
            reason,
            conn,
        } => {
            let mut body = json!({
                "subject": subject, "tool": tool, "server": server,
                "ttl_seconds": parse_ttl(&ttl)?, "reason": reason,
            });
            if let Some(i) = issuer {
                body["issuer"] = json!(i);
            }
            let v = call(&conn, Method::POST, "/v1/grants", Some(body))?;
            print(&conn, &v, show_grant);
        }
        GrantsCmd::List { all, conn } => {
            let v = call(&conn, Method::GET, &format!("/v1/grants?all={all}"), None)?;
            print(&conn, &v, show_grant);
        }
        GrantsCmd::Revoke { id, reason, conn } => {
            let v = call(
                &conn,
                Method::POST,
                &format!("/v1/grants/{id}/revoke"),
                Some(json!({ "reason": reason })),
            )?;
            print(&conn, &v, show_grant);
        }
    }
    Ok(ExitCode::SUCCESS)
}
