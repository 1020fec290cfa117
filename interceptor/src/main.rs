//! `mcp-interceptor`: CLI parse, logging init, hand off.

mod cli;

use cli::{approvals as approvals_cmd, policy as policy_cmd, report as report_cmd, tools as cli_tools};

use std::{path::PathBuf, process::ExitCode};

use anyhow::Context;
use clap::{Parser, Subcommand};
use interceptor::{
    agent,
    config::{self, Config},
    doctor, steer, telemetry,
};

#[derive(Parser)]
#[command(
    name = "mcp-interceptor",
    version,
    about = "Transparent security boundary for MCP servers"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the agent: steer the configured ports and proxy them.
    Run {
        #[arg(long, short, default_value = config::DEFAULT_PATH)]
        config: PathBuf,
    },
    /// Write a starter config for the MCP servers listening on this host
    /// (each listening port is probed with an MCP `initialize`).
    Init {
        /// Where to write it; `-`: standard output.
        #[arg(long, short, default_value = config::DEFAULT_PATH)]
        output: PathBuf,
        /// Replace an existing file.
        #[arg(long)]
        force: bool,
        /// The OIDC issuer callers' tokens come from (else anonymous
        /// callers are allowed until you add one).
        #[arg(long)]
        oidc_issuer: Option<String>,
        /// The audience tokens must name (with --oidc-issuer).
        #[arg(long, requires = "oidc_issuer")]
        audience: Option<String>,
        /// How long each probe may take.
        #[arg(long, default_value_t = 500)]
        probe_timeout_ms: u64,
    },
    /// Validate a config file and print it with every default filled in.
    CheckConfig { file: PathBuf },
    /// Check the host and the running agent; exit 1 if anything fails.
    Doctor {
        #[arg(long, short, default_value = config::DEFAULT_PATH)]
        config: PathBuf,
    },
    /// Print the pinned steering state (rules, sockets, counters) as JSON.
    Status {
        #[arg(long, short, default_value = config::DEFAULT_PATH)]
        config: PathBuf,
    },
    /// Remove the pinned program and maps: steering stops for good.
    Detach {
        #[arg(long, short, default_value = config::DEFAULT_PATH)]
        config: PathBuf,
    },
    /// Read and check the audit trail.
    Audit {
        #[command(subcommand)]
        cmd: AuditCmd,
    },
    /// Ask the policy: explain one decision, or test a table of cases.
    Policy {
        #[command(subcommand)]
        cmd: policy_cmd::PolicyCmd,
    },
    /// Tool pinning: list what was pinned, review and re-pin changes.
    Tools {
        #[command(subcommand)]
        cmd: cli_tools::ToolsCmd,
    },
    /// Human approval of held calls: list, show, approve, deny.
    Approvals {
        #[command(subcommand)]
        cmd: approvals_cmd::ApprovalsCmd,
    },
    /// Just-in-time grants: add, list, revoke.
    Grants {
        #[command(subcommand)]
        cmd: approvals_cmd::GrantsCmd,
    },
    /// Evidence reports from the audit files (NIST SP 800-53).
    Report {
        #[command(subcommand)]
        cmd: report_cmd::ReportCmd,
    },
}

#[derive(Subcommand)]
enum AuditCmd {
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
        checkpoints: Vec<interceptor::audit::chain::Checkpoint>,
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

#[derive(clap::Args)]
struct AuditSource {
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

#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match dispatch(cli.cmd) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("mcp-interceptor: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn dispatch(cmd: Cmd) -> anyhow::Result<ExitCode> {
    match cmd {
        Cmd::Run { config } => {
            let cfg = Config::load(&config)?;
            telemetry::init(&cfg.log);
            // Before any thread exists: setns moves only the calling thread.
            if let Some(ns) = &cfg.intercept.netns {
                steer::netns::enter(ns)?;
            }
            raise_fd_limit(cfg.http.max_connections);
            let rt = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .context("starting the runtime")?;
            rt.block_on(agent::run(config, cfg)).inspect_err(|e| {
                tracing::error!(error = %e, "agent failed");
            })?;
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Init {
            output,
            force,
            oidc_issuer,
            audience,
            probe_timeout_ms,
        } => {
            let defaults = Config::default();
            let skip: Vec<u16> = defaults
                .intercept
                .proxy_listen
                .iter()
                .map(|a| a.port())
                .collect();
            let found = interceptor::init::discover(
                &skip,
                std::time::Duration::from_millis(probe_timeout_ms),
            );
            let text =
                interceptor::init::render(&found, oidc_issuer.as_deref(), audience.as_deref());
            for f in &found {
                eprintln!(
                    "found an MCP server on port {} ({})",
                    f.port,
                    f.paths.join(", ")
                );
            }
            if found.is_empty() {
                eprintln!(
                    "no MCP server answered on this host; the config has a commented rule to fill in"
                );
            }
            if oidc_issuer.is_none() {
                eprintln!(
                    "warning: no --oidc-issuer: the config allows anonymous callers until you add an identity source"
                );
            }
            if output.as_os_str() == "-" {
                print!("{text}");
            } else {
                anyhow::ensure!(
                    force || !output.exists(),
                    "{} exists; use --force to replace it",
                    output.display()
                );
                if let Some(dir) = output.parent() {
                    std::fs::create_dir_all(dir)
                        .with_context(|| format!("creating {}", dir.display()))?;
                }
                std::fs::write(&output, &text)
                    .with_context(|| format!("writing {}", output.display()))?;
                eprintln!(
                    "wrote {}; check it with `mcp-interceptor check-config {}`",
                    output.display(),
                    output.display()
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::CheckConfig { file } => {
            let cfg = Config::load(&file)?;
            // The files the agent reads at start and reload, read now, so a
            // bad certificate or key fails here and not at 3 a.m.
            if interceptor::proxy::tls::server(&cfg.tls)?.is_some() {
                println!(
                    "# tls: {}",
                    interceptor::proxy::tls::plaintext_policy(&cfg.tls)
                );
            }
            interceptor::proxy::upstream_for(&cfg)?;
            // Every mask profile compiles (a bad custom regex fails here,
            // not at start); the key only matters for masking, not here.
            let masker = interceptor::mask::Masker::new(&cfg.mask, [0; 32])?;
            if !cfg.policy.files.is_empty() {
                let p = interceptor::policy::Policies::load(&cfg.policy.files)?;
                p.check_mask_profiles(|name| masker.has_profile(name))?;
                println!(
                    "# policy: {} policies valid against the schema, version {}",
                    p.count, p.version
                );
            }
            uncovered_listeners(&cfg);
            println!("# {} is valid; effective configuration:", file.display());
            print!("{}", toml::to_string(&cfg).context("printing the config")?);
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Doctor { config } => {
            let checks = doctor::run(&config);
            for c in &checks {
                println!("{c}");
            }
            let failed = checks
                .iter()
                .filter(|c| c.status == doctor::Status::Fail)
                .count();
            if failed == 0 {
                println!("all {} checks passed", checks.len());
                Ok(ExitCode::SUCCESS)
            } else {
                println!("{failed} of {} checks failed", checks.len());
                Ok(ExitCode::FAILURE)
            }
        }
        Cmd::Status { config } => {
            let cfg = Config::load(&config)?;
            let state = steer::pins::read(&cfg.intercept.pin_dir)?;
            println!("{}", serde_json::to_string_pretty(&state)?);
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Audit { cmd } => audit_cmd(cmd),
        Cmd::Policy { cmd } => policy_cmd::run(cmd),
        Cmd::Tools { cmd } => cli_tools::run(cmd),
        Cmd::Approvals { cmd } => approvals_cmd::approvals(cmd),
        Cmd::Grants { cmd } => approvals_cmd::grants(cmd),
        Cmd::Report { cmd } => report_cmd::run(cmd),
        Cmd::Detach { config } => {
            let cfg = Config::load(&config)?;
            let removed = steer::detach(&cfg.intercept.pin_dir)?;
            if removed.is_empty() {
                println!("nothing pinned under {}", cfg.intercept.pin_dir.display());
            }
            for p in removed {
                println!("removed {}", p.display());
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// `check-config`: server sockets steering would not cover, as warnings
/// on stderr (read in `intercept.netns` when it can be entered).
fn uncovered_listeners(cfg: &Config) {
    if let Some(ns) = &cfg.intercept.netns
        && let Err(e) = steer::netns::enter(ns)
    {
        eprintln!(
            "# note: listeners not checked, cannot enter {}: {e}",
            ns.display()
        );
        return;
    }
    let all = match steer::listeners::read() {
        Ok(l) => l,
        Err(e) => return eprintln!("# note: listeners not checked: {e}"),
    };
    for w in steer::listeners::wider(&cfg.intercept, &all) {
        eprintln!("# warning: {w}");
    }
    for (port, on) in steer::listeners::shared_ports(&cfg.intercept, &all) {
        let socks: Vec<String> = on
            .iter()
            .map(|l| format!("{} (uid {})", l.addr, l.uid))
            .collect();
        eprintln!(
            "# warning: a second listener on steered port {port}: {}; set the rule's `upstream`",
            socks.join(", ")
        );
    }
}

/// Checkpoints from a file: one per line, optionally after `checkpoint `.
fn read_checkpoints(
    path: &std::path::Path,
) -> anyhow::Result<Vec<interceptor::audit::chain::Checkpoint>> {
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

fn audit_cmd(cmd: AuditCmd) -> anyhow::Result<ExitCode> {
    use interceptor::audit::{chain, replay};
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
            match chain::verify_from(&dir, public_key.as_deref(), &checkpoints) {
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
        AuditCmd::Replay {
            session,
            source,
            json,
        } => {
            let steps = replay::session(&source.dir()?, &session)?;
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
        AuditCmd::Tail { source, json } => {
            replay::tail(&source.dir()?, |s| {
                let line = if json {
                    serde_json::to_string(s).unwrap_or_default()
                } else {
                    s.to_string()
                };
                // Stop quietly when the reader (e.g. `head`) goes away.
                use std::io::Write;
                writeln!(std::io::stdout(), "{line}").is_ok() && std::io::stdout().flush().is_ok()
            })?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Raises the soft open-file limit to the hard one, as nginx's
/// `worker_rlimit_nofile` does: each client connection holds a descriptor,
/// and another for its upstream while a request is in flight, so the
/// usual soft limit of 1024 would cap the agent near 500 clients. Warns
/// when `http.max_connections` cannot fit: the limit would then show as
/// failed accepts and upstream connects instead of counted 503s.
fn raise_fd_limit(max_connections: usize) {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else {
        return;
    };
    let limit = if soft < hard {
        match setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
            Ok(()) => hard,
            Err(e) => {
                tracing::warn!(error = %e, soft, hard, "could not raise the open-file limit");
                soft
            }
        }
    } else {
        soft
    };
    tracing::info!(nofile = limit, was = soft, "open-file limit");
    // Upstream connections (in ebpf mode at most the bypass range, 324 by
    // default), listeners, audit files, the admin socket: besides the
    // clients, a few hundred.
    let needed = max_connections as u64 + 2048;
    if limit < needed {
        tracing::warn!(
            nofile = limit,
            max_connections,
            needed,
            "http.max_connections needs more descriptors than the open-file limit allows: \
             lower it, or raise LimitNOFILE (systemd) / ulimit -n"
        );
    }
}
