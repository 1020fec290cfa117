//! `mcp-interceptor approvals ...`: list, show, approve and deny the
//! calls the running agent holds for human approval.

use std::process::ExitCode;

use clap::Subcommand;
use http::Method;
use serde_json::{Value, json};

use super::{
    admin::{Conn, call, list, print, time},
    exit,
};

/// The `approvals` subcommands.
#[derive(Subcommand)]
pub enum ApprovalsCmd {
    /// Approval requests (default: pending ones), oldest first, one page.
    #[command(after_help = exit::AGENT)]
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
    #[command(after_help = exit::AGENT)]
    Show {
        /// The request's id (from `approvals list`).
        id: String,
        /// Also the real (unmasked) arguments; each look is an audit row.
        #[arg(long)]
        values: bool,
        #[command(flatten)]
        conn: Conn,
    },
    /// Approve a request (as the socket's user or the token's subject).
    #[command(after_help = exit::AGENT)]
    Approve {
        /// The request's id (from `approvals list`).
        id: String,
        /// Why (recorded in the audit with the vote).
        #[arg(long)]
        reason: String,
        #[command(flatten)]
        conn: Conn,
    },
    /// Deny a request: the held call is refused at once.
    #[command(after_help = exit::AGENT)]
    Deny {
        /// The request's id (from `approvals list`).
        id: String,
        /// Why (recorded in the audit with the vote).
        #[arg(long)]
        reason: String,
        #[command(flatten)]
        conn: Conn,
    },
}

/// One request as text: the call, its masked arguments, quorum, votes.
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

/// Runs one `approvals` subcommand against the agent.
pub fn run(cmd: ApprovalsCmd) -> anyhow::Result<ExitCode> {
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
        ApprovalsCmd::Show { id, values, conn } => show(&conn, &id, values)?,
        ApprovalsCmd::Approve { id, reason, conn } => vote(&conn, &id, "approve", &reason)?,
        ApprovalsCmd::Deny { id, reason, conn } => vote(&conn, &id, "deny", &reason)?,
    }
    Ok(ExitCode::SUCCESS)
}

/// `approvals show`: the request, and with `values` its real arguments
/// (the agent audits that look).
fn show(conn: &Conn, id: &str, values: bool) -> anyhow::Result<()> {
    let v = call(conn, Method::GET, &format!("/v1/approvals/{id}"), None)?;
    print(conn, &v, show_approval);
    if !values {
        return Ok(());
    }
    let real = call(
        conn,
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
    Ok(())
}

/// `approvals approve|deny`: one vote, which must say why.
fn vote(conn: &Conn, id: &str, verb: &str, reason: &str) -> anyhow::Result<()> {
    anyhow::ensure!(!reason.trim().is_empty(), "--reason must say why");
    let v = call(
        conn,
        Method::POST,
        &format!("/v1/approvals/{id}/{verb}"),
        Some(json!({ "reason": reason })),
    )?;
    print(conn, &v, show_approval);
    Ok(())
}
