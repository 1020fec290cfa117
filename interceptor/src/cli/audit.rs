//! `mcp-interceptor audit verify|replay|tail`: check the audit trail and
//! read it back.

use std::{
    io::Write,
    path::{Path, PathBuf},
    process::ExitCode,
};

use clap::Subcommand;
use interceptor::{
    agent::bundle_watch,
    audit::{
        chain::{self, Bucket, Checkpoint, Dir, HostVerdict, Objects, Verdict},
        replay,
    },
    config::{Config, s3_location},
};

use super::{ConfigArg, JsonArg, exit};

/// The `audit` subcommands.
#[derive(Subcommand)]
pub enum AuditCmd {
    /// Check every file and the signed manifest chain, per host, in a
    /// directory or straight from S3; name the first break.
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
    /// The audit directory, as an argument (the older spelling of --dir),
    /// or `s3://bucket/prefix/`: the trail every host uploaded there,
    /// read straight from the bucket (region and endpoint from
    /// `[audit.s3]` of --config when it exists, credentials from the AWS
    /// environment).
    #[arg(value_name = "DIR|S3_URL", conflicts_with = "dir")]
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
            let (objs, at) = trail(&dir, &a.source.config.config)?;
            verify(
                objs.as_ref(),
                &at,
                a.public_key.as_deref(),
                &checkpoints,
                a.json.json,
            )
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

/// Where `audit verify` reads: a directory, or `s3://bucket/prefix/`
/// through the uploader's client (region, endpoint from `[audit.s3]` of
/// the config when it has one, credentials from the AWS environment).
fn trail(target: &Path, config: &Path) -> anyhow::Result<(Box<dyn Objects>, String)> {
    let text = target.to_string_lossy();
    if !text.starts_with("s3://") {
        return Ok((
            Box::new(Dir(target.to_path_buf())),
            target.display().to_string(),
        ));
    }
    let (bucket, prefix) =
        s3_location(&text).ok_or_else(|| anyhow::anyhow!("{text:?} is not s3://bucket/prefix/"))?;
    // The default config is optional here: an auditor's machine has none.
    let s3 = if config == Path::new(interceptor::config::DEFAULT_PATH) && !config.exists() {
        None
    } else {
        Config::load(config)?.audit.s3
    };
    let store = bundle_watch::store(&bucket, s3.as_ref())?;
    let bucket = Bucket::new(store, &bucket, &prefix)?;
    let name = bucket.name("");
    Ok((Box::new(bucket), name))
}

/// `audit verify`: each host's verdict, a summary and the chain heads, or
/// the first break (as text, or one JSON object).
fn verify(
    objs: &dyn Objects,
    at: &str,
    public_key: Option<&str>,
    checkpoints: &[Checkpoint],
    json: bool,
) -> anyhow::Result<ExitCode> {
    let verdict = chain::verify_objects(objs, public_key, checkpoints);
    let hosts = verdict
        .as_ref()
        .map(|v| v.hosts.clone())
        .unwrap_or_default();
    let unlisted = verdict
        .as_ref()
        .map(|v| v.unlisted.clone())
        .unwrap_or_default();
    let result = verdict.and_then(Verdict::into_result);
    let code = if result.is_ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    };
    if json {
        let per_host: Vec<_> = hosts.iter().map(host_json).collect();
        let v = match &result {
            Ok(r) => serde_json::json!({
                "intact": true, "dir": at, "hosts": r.hosts, "entries": r.entries,
                "files": r.files, "rows": r.rows, "verdicts": per_host,
                "checkpoints": r.heads.iter().map(ToString::to_string).collect::<Vec<_>>(),
            }),
            Err(b) => serde_json::json!({
                "intact": false, "dir": at, "break": b.to_string(), "verdicts": per_host,
                "unlisted": unlisted.iter().map(ToString::to_string).collect::<Vec<_>>(),
            }),
        };
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(code);
    }
    for h in &hosts {
        match &h.result {
            Ok(r) => println!(
                "host {}: ok, {} entries, {} files, {} rows",
                h.host, r.entries, r.files, r.rows
            ),
            Err(b) => println!("host {}: FAIL: {b}", h.host),
        }
    }
    for b in &unlisted {
        println!("unlisted: {b}");
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
        }
        Err(b) => println!("FAIL: {b}"),
    }
    Ok(code)
}

/// One host's verdict as JSON.
fn host_json(h: &HostVerdict) -> serde_json::Value {
    match &h.result {
        Ok(r) => serde_json::json!({
            "host": h.host, "intact": true, "entries": r.entries, "files": r.files, "rows": r.rows,
        }),
        Err(b) => serde_json::json!({
            "host": h.host, "intact": false, "object": b.path, "reason": b.reason,
        }),
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
