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
    config::{self, Config},
};

/// The `audit` subcommands.
#[derive(Subcommand)]
pub enum AuditCmd {
    /// Check every file and the signed manifest chain; name the first break.
    Verify {
        /// The audit directory (a complete copy, e.g. synced from S3).
        dir: PathBuf,
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
    },
    /// Print one session's exchanges in order.
    Replay {
        #[arg(long)]
        session: String,
        #[command(flatten)]
        source: AuditSource,
        /// One JSON object per line instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Follow new audit rows as they are written (Ctrl-C to stop).
    Tail {
        #[command(flatten)]
        source: AuditSource,
        #[arg(long)]
        json: bool,
    },
}

/// Where the audit files are: a directory, or the config's `audit.dir`.
#[derive(clap::Args)]
pub struct AuditSource {
    /// The audit directory; default: `audit.dir` of the config.
    #[arg(long)]
    dir: Option<PathBuf>,
    #[arg(long, short, default_value = config::DEFAULT_PATH)]
    config: PathBuf,
}

impl AuditSource {
    fn dir(&self) -> anyhow::Result<PathBuf> {
        match &self.dir {
            Some(d) => Ok(d.clone()),
            None => Ok(Config::load(&self.config)?.audit.dir),
        }
    }
}

/// Runs one `audit` subcommand.
pub fn run(cmd: AuditCmd) -> anyhow::Result<ExitCode> {
    match cmd {
        AuditCmd::Verify {
            dir,
            public_key,
            mut checkpoints,
            checkpoint_file,
        } => {
            if let Some(f) = checkpoint_file {
                checkpoints.extend(read_checkpoints(&f)?);
            }
            Ok(verify(&dir, public_key.as_deref(), &checkpoints))
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

/// `audit verify`: a summary and the chain heads, or the first break.
fn verify(dir: &Path, public_key: Option<&str>, checkpoints: &[Checkpoint]) -> ExitCode {
    match chain::verify_from(dir, public_key, checkpoints) {
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
            ExitCode::SUCCESS
        }
        Err(b) => {
            println!("FAIL: {b}");
            ExitCode::FAILURE
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
