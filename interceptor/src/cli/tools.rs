//! `mcp-interceptor tools`: what the agent pinned, and re-pinning after
//! an operator has reviewed a change. The running agent picks a re-pin up
//! within a second; no restart or SIGHUP.

use std::{path::Path, process::ExitCode};

use clap::Subcommand;
use interceptor::{
    audit::wal::hour_of,
    config::Config,
    escape,
    policy::tool_pins::{self, PinError, PinFile, PinStore, ToolPin},
};

use super::{ConfigArg, exit};

/// Fingerprint characters shown in the table (`--json` and `show` give
/// them whole).
const SHORT: usize = 16;

/// The `tools` subcommands.
#[derive(Subcommand)]
pub enum ToolsCmd {
    /// Every recorded tool per server: status (pinned or CHANGED) and
    /// fingerprints.
    #[command(after_help = exit::PLAIN)]
    List {
        #[command(flatten)]
        config: ConfigArg,
        /// Only this server (its port rule's `name`, else its port).
        #[arg(long)]
        server: Option<String>,
        /// The pins file as it is, JSON.
        #[arg(long)]
        json: bool,
    },
    /// One tool's pinned and last observed definition, to review a change.
    #[command(after_help = exit::TOOLS_SHOW)]
    Show {
        #[command(flatten)]
        config: ConfigArg,
        /// The server (its port rule's `name`, else its port).
        #[arg(long)]
        server: String,
        /// The tool's name.
        #[arg(long)]
        tool: String,
        /// The pin record as JSON (both definitions whole).
        #[arg(long)]
        json: bool,
    },
    /// Accept the observed definition as the new pin (lifts a block).
    #[command(after_help = exit::TOOLS_PIN)]
    Pin {
        #[command(flatten)]
        config: ConfigArg,
        /// The server (its port rule's `name`, else its port).
        #[arg(long)]
        server: String,
        /// The tool to re-pin (also when it has not changed).
        #[arg(long, required_unless_present = "all", conflicts_with = "all")]
        tool: Option<String>,
        /// Every changed tool of the server.
        #[arg(long)]
        all: bool,
        /// What was re-pinned, as JSON.
        #[arg(long)]
        json: bool,
    },
}

/// Runs one `tools` subcommand on the pins file of the config.
pub fn run(cmd: ToolsCmd) -> anyhow::Result<ExitCode> {
    match cmd {
        ToolsCmd::List {
            config,
            server,
            json,
        } => list(
            &Config::load(&config.config)?.pins_path(),
            server.as_deref(),
            json,
        ),
        ToolsCmd::Show {
            config,
            server,
            tool,
            json,
        } => show_one(
            &Config::load(&config.config)?.pins_path(),
            &server,
            &tool,
            json,
        ),
        ToolsCmd::Pin {
            config,
            server,
            tool,
            all: _,
            json,
        } => pin(
            &Config::load(&config.config)?.pins_path(),
            &server,
            tool.as_deref(),
            json,
        ),
    }
}

/// `tools list`: every recorded tool (of one server), as a table or JSON.
fn list(path: &Path, server: Option<&str>, json: bool) -> anyhow::Result<ExitCode> {
    let mut file = PinStore::new(path).read()?;
    if let Some(s) = server {
        file.servers.retain(|k, _| k == s);
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&file)?);
    } else if file.servers.is_empty() {
        println!("no tools recorded in {}", path.display());
    } else {
        print!("{}", table(&file));
    }
    Ok(ExitCode::SUCCESS)
}

/// `tools show`: one tool's pinned and observed definitions.
fn show_one(path: &Path, server: &str, tool: &str, json: bool) -> anyhow::Result<ExitCode> {
    let file = PinStore::new(path).read()?;
    let Some(p) = file.get(server, tool) else {
        eprintln!(
            "mcp-interceptor: server {server:?} has no tool {tool:?} in {}",
            path.display()
        );
        return Ok(ExitCode::FAILURE);
    };
    if json {
        println!("{}", serde_json::to_string_pretty(p)?);
    } else {
        print!("{}", show(server, tool, p)?);
    }
    Ok(ExitCode::SUCCESS)
}

/// `tools pin`: accept the observed definition of one tool, or of every
/// changed tool of the server (`tool` None: `--all`).
fn pin(path: &Path, server: &str, tool: Option<&str>, json: bool) -> anyhow::Result<ExitCode> {
    let done = match tool_pins::repin(path, server, tool) {
        Ok(d) => d,
        Err(PinError::NotFound(why)) => {
            eprintln!(
                "mcp-interceptor: nothing re-pinned: {why} (in {})",
                path.display()
            );
            return Ok(ExitCode::FAILURE);
        }
        Err(e) => return Err(e.into()),
    };
    if json {
        let v: Vec<serde_json::Value> = done
            .iter()
            .map(|r| serde_json::json!({ "server": server, "tool": r.tool, "from": r.from, "to": r.to }))
            .collect();
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(ExitCode::SUCCESS);
    }
    if done.is_empty() {
        println!("server {server}: no changed tools; nothing to re-pin");
    }
    for r in done {
        // With `--all`, the names are the server's, not typed here.
        let tool = escape::text(&r.tool);
        if r.from == r.to {
            println!("{server} {tool}: unchanged, already pinned at {}", r.to);
        } else {
            println!("{server} {tool}: re-pinned {} -> {}", r.from, r.to);
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The pins file as a table, one row per tool.
fn table(file: &PinFile) -> String {
    let mut rows = vec![[
        "SERVER".to_string(),
        "TOOL".into(),
        "STATUS".into(),
        "PINNED".into(),
        "OBSERVED".into(),
        "FIRST SEEN".into(),
        "CHANGED AT".into(),
    ]];
    for (server, tools) in &file.servers {
        for (tool, p) in tools {
            rows.push([
                escape::text(server).into_owned(),
                escape::text(tool).into_owned(),
                if p.changed() { "CHANGED" } else { "pinned" }.into(),
                short(&p.pinned),
                short(&p.observed),
                when(p.first_seen),
                p.changed_at.map_or_else(|| "-".into(), when),
            ]);
        }
    }
    let widths: Vec<usize> = (0..7)
        .map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for r in rows {
        let cells: Vec<String> = r
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:w$}"))
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}

/// One tool for review: status, fingerprints, both definitions.
fn show(server: &str, tool: &str, p: &ToolPin) -> anyhow::Result<String> {
    let mut out = format!("server {server} tool {tool}: ");
    match p.changed_at.filter(|_| p.changed()) {
        Some(t) => out.push_str(&format!("CHANGED since {}\n", when(t))),
        None => out.push_str("pinned\n"),
    }
    out.push_str(&format!(
        "pinned     {} (at {})\n",
        p.pinned,
        when(p.pinned_at)
    ));
    out.push_str(&format!("observed   {}\n", p.observed));
    out.push_str(&format!("first seen {}\n", when(p.first_seen)));
    if let Some(d) = &p.pinned_definition {
        out.push_str(&format!(
            "--- pinned definition\n{}\n",
            serde_json::to_string_pretty(&escape::value(d))?
        ));
        out.push_str("--- observed definition\n");
    } else {
        out.push_str("--- definition\n");
    }
    out.push_str(&serde_json::to_string_pretty(&escape::value(
        &p.definition,
    ))?);
    out.push('\n');
    Ok(out)
}

/// The head of a fingerprint, enough to tell two apart.
fn short(fingerprint: &str) -> String {
    fingerprint.chars().take(SHORT).collect()
}

/// UTC, whatever the host's zone, like the audit's partitions.
fn when(unix: u64) -> String {
    let secs = i64::try_from(unix).unwrap_or(i64::MAX / 1_000_000);
    let (day, hour) = hour_of(secs * 1_000_000);
    let (m, s) = (secs.rem_euclid(3600) / 60, secs.rem_euclid(60));
    format!("{day}T{hour}:{m:02}:{s:02}Z")
}
