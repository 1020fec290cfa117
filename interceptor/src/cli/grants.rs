//! `mcp-interceptor grants ...`: just-in-time grants on the running
//! agent: add, list, revoke.

use std::process::ExitCode;

use anyhow::Context;
use clap::Subcommand;
use http::Method;
use serde_json::{Value, json};

use super::{
    admin::{Conn, call, print, time},
    exit,
};

/// The `grants` subcommands.
#[derive(Subcommand)]
pub enum GrantsCmd {
    /// Give a subject temporary access: policies see it in
    /// `context.grants` until the TTL ends.
    #[command(after_help = exit::AGENT)]
    Add {
        /// Who gets it: the token's `sub`, or the client certificate's
        /// subject.
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
    #[command(after_help = exit::AGENT)]
    List {
        /// Also expired and revoked grants.
        #[arg(long)]
        all: bool,
        #[command(flatten)]
        conn: Conn,
    },
    /// End a grant now.
    #[command(after_help = exit::AGENT)]
    Revoke {
        /// The grant's id (from `grants list`).
        id: String,
        /// Why (recorded in the audit).
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

/// One grant as a line: who may use what, until when, and why.
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

/// Runs one `grants` subcommand against the agent.
pub fn run(cmd: GrantsCmd) -> anyhow::Result<ExitCode> {
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
