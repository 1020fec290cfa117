//! `mcp-interceptor audit verify|replay|tail`: check the audit trail and
//! read it back.

use std::{
    io::Write,
    path::{Path, PathBuf},
    process::ExitCode,
};

use clap::Subcommand;
use interceptor::{
    audit::{
        chain::{self, Checkpoint},
        replay,
    },
    config::Config,
};

use super::{ConfigArg, JsonArg, exit};

/// The `audit` subcommands.
#[derive(Subcommand)]
pub enum AuditCmd {
    /// Check every file and the signed manifest chain; name the first break.
    #[command(after_help = exit::VERIFY)]
    Verify(Box<VerifyArgs>),
    /// Print one session's exchanges in order.
    #[command(after_help = exit::REPLAY)]
    Replay {
        /// The session: its Mcp-Session-Id as the audit recorded it.
        #[arg(long)]
        session: String,
        #[command(flatten)]
        source: AuditSource,
        /// One JSON object per line instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Follow new audit rows as they are written (Ctrl-C to stop).
    #[command(after_help = exit::PLAIN)]
    Tail {
        #[command(flatten)]
        source: AuditSource,
        /// One JSON object per line instead of text.
        #[arg(long)]
        json: bool,
    },
}

/// The arguments of `audit verify`.
#[derive(clap::Args)]
pub struct VerifyArgs {
    #[command(flatten)]
    source: AuditSource,
    /// The audit directory, as an argument (the older spelling of --dir).
    #[arg(value_name = "DIR", conflicts_with = "dir")]
    dir_arg: Option<PathBuf>,
    /// The pinned Ed25519 public key (hex); default: the copy stored
    /// beside the manifest, which proves consistency, not origin.
    #[arg(long)]
    public_key: Option<String>,
    /// Anchor a host's chain at an entry you hold from an earlier
    /// verify (`HOST:SEQ:SHA256`, or `SEQ:SHA256` with one host);
    /// without it the chain must start at its genesis (entry 0).
    #[arg(long = "checkpoint")]
    checkpoints: Vec<Checkpoint>,
    /// A file of checkpoints, one per line (`#` comments), e.g. the
    /// `checkpoint` lines an earlier verify printed.
    #[arg(long)]
    checkpoint_file: Option<PathBuf>,
    #[command(flatten)]
    json: JsonArg,
}

/// Where the audit files are: a directory, or the config's `audit.dir`.
#[derive(clap::Args)]
pub struct AuditSource {
    /// The audit directory (e.g. a copy synced from S3); default:
    /// `audit.dir` of the config.
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
    #[command(flatten)]
    config: ConfigArg,
}

impl AuditSource {
    fn dir(&self) -> anyhow::Result<PathBuf> {
        match &self.dir {
            Some(d) => Ok(d.clone()),
            None => Ok(Config::load(&self.config.config)?.audit.dir),
        }
    }
}

/// Runs one `audit` subcommand.
pub fn run(cmd: AuditCmd) -> anyhow::Result<ExitCode> {
    match cmd {
        AuditCmd::Verify(a) => {
            let a = *a;
            let mut checkpoints = a.checkpoints;
            if let Some(f) = &a.checkpoint_file {
                checkpoints.extend(read_checkpoints(f)?);
            }
            let dir = match &a.dir_arg {
                Some(d) => d.clone(),
                None => a.source.dir()?,
            };
            verify(&dir, a.public_key.as_deref(), &checkpoints, a.json.json)
        }
        AuditCmd::Replay {
            session,
            source,
            json,
        } => replay_session(&source.dir()?, &session, json),
        AuditCmd::Tail { source, json } => {
            replay::tail(&source.dir()?, |s| {
                let line = if json {
                    serde_json::to_string(s).unwrap_or_default()
                } else {
                    s.to_string()
                };
                // Stop quietly when the reader (e.g. `head`) goes away.
                writeln!(std::io::stdout(), "{line}").is_ok() && std::io::stdout().flush().is_ok()
            })?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Checkpoints from a file: one per line, optionally after `checkpoint `.
fn read_checkpoints(path: &Path) -> anyhow::Result<Vec<Checkpoint>> {
    let text =
        std::fs::read_to_string(path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    text.lines()
        .map(|l| l.split('#').next().unwrap_or("").trim())
        .filter(|l| !l.is_empty())
        .map(|l| {
            l.trim_start_matches("checkpoint ")
                .parse()
                .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
        })
        .collect()
}

/// `audit verify`: a summary and the chain heads, or the first break
/// (as text, or one JSON object).
fn verify(
    dir: &Path,
    public_key: Option<&str>,
    checkpoints: &[Checkpoint],
    json: bool,
) -> anyhow::Result<ExitCode> {
    let result = chain::verify_from(dir, public_key, checkpoints);
    if json {
        let v = match &result {
            Ok(r) => serde_json::json!({
                "intact": true, "dir": dir, "hosts": r.hosts, "entries": r.entries,
                "files": r.files, "rows": r.rows,
                "checkpoints": r.heads.iter().map(ToString::to_string).collect::<Vec<_>>(),
            }),
            Err(b) => serde_json::json!({ "intact": false, "dir": dir, "break": b.to_string() }),
        };
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(if result.is_ok() {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        });
    }
    match result {
        Ok(r) => {
            println!(
                "ok: {} host(s), {} manifest entries, {} files, {} rows; chain and signatures intact, every object listed",
                r.hosts.len(),
                r.entries,
                r.files,
                r.rows
            );
            // Keep these: a later verify from them detects removed
            // entries, old or new, that a fresh verify cannot.
            for h in &r.heads {
                println!("checkpoint {h}");
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(b) => {
            println!("FAIL: {b}");
            Ok(ExitCode::FAILURE)
        }
    }
}

/// `audit replay`: one session's exchanges, as text or JSON lines.
fn replay_session(dir: &Path, session: &str, json: bool) -> anyhow::Result<ExitCode> {
    let steps = replay::session(dir, session)?;
    if steps.is_empty() {
        eprintln!("no rows for session {session}");
        return Ok(ExitCode::FAILURE);
    }
    for s in steps {
        if json {
            println!("{}", serde_json::to_string(&s)?);
        } else {
            println!("{s}");
        }
    }
    Ok(ExitCode::SUCCESS)
}
