//! `mcp-interceptor policy explain|test|check`: the policy the agent
//! runs, asked from the command line.

use std::{
    net::IpAddr,
    path::{Path, PathBuf},
    process::ExitCode,
};

use anyhow::Context;
use clap::Subcommand;
use interceptor::{
    config::Config,
    policy::{Policies, explain, input::ProcessContext},
};

use super::{ConfigArg, JsonArg, exit};

/// The `policy` subcommands.
#[derive(Subcommand)]
pub enum PolicyCmd {
    /// The decision for one request, the determining policies and why.
    #[command(after_help = exit::PLAIN)]
    Explain(Box<ExplainArgs>),
    /// Check a table of cases (TOML `[[case]]` with `expect`); exit 1 on
    /// any mismatch. For the policy files' own CI.
    #[command(after_help = exit::POLICY_TEST)]
    Test {
        /// The table of cases (TOML, `[[case]]` entries with `expect`).
        cases: PathBuf,
        #[command(flatten)]
        config: ConfigArg,
        #[command(flatten)]
        json: JsonArg,
    },
    /// Make an Ed25519 key pair for signing policy bundles: KEY (0600)
    /// and KEY.pub; prints the public key for `[policy] bundle_keys`.
    #[command(after_help = exit::PLAIN)]
    Keygen {
        /// The private key file to create (never overwritten).
        key: PathBuf,
        #[command(flatten)]
        json: JsonArg,
    },
    /// Test, sign and upload DIR as the policy bundle agents load from
    /// `[policy] source`.
    #[command(after_help = exit::PLAIN)]
    Publish(Box<super::publish::PublishArgs>),
}

/// The request `policy explain` asks about.
#[derive(clap::Args)]
pub struct ExplainArgs {
    #[command(flatten)]
    config: ConfigArg,
    /// The caller's subject (the token's `sub`, or the certificate's).
    #[arg(long)]
    subject: String,
    /// A group of the subject (repeat for several).
    #[arg(long = "group")]
    groups: Vec<String>,
    /// oidc (default), mtls, process or anonymous.
    #[arg(long)]
    auth_method: Option<String>,
    /// Ask as a same-host caller whose process is this JSON object
    /// (`context.process`): pid, uid, user, unit, cgroup, exe,
    /// exe_sha256, container, pod; e.g. '{"unit":"ai-agent.service"}'.
    #[arg(long)]
    process: Option<String>,
    /// The JSON-RPC method (`tools/call`, `resources/read`, ...).
    #[arg(long)]
    method: String,
    /// The tool called (tools/call).
    #[arg(long)]
    tool: Option<String>,
    /// The resource read (resources/read).
    #[arg(long)]
    uri: Option<String>,
    /// The prompt asked for (prompts/get).
    #[arg(long)]
    prompt: Option<String>,
    /// Arguments as a JSON object.
    #[arg(long)]
    args: Option<String>,
    /// The server's policy name; default: the first port's.
    #[arg(long)]
    server: Option<String>,
    /// The client's address.
    #[arg(long)]
    source_ip: Option<IpAddr>,
    /// The client's `clientInfo.name` from `initialize`.
    #[arg(long)]
    client_name: Option<String>,
    /// Unix seconds; default now.
    #[arg(long)]
    time: Option<i64>,
    /// Ask as if the subject held a just-in-time grant with this tool
    /// pattern covering the call (repeat for several): `context.grants`.
    #[arg(long = "grant")]
    grants: Vec<String>,
    /// Ask as a tools/list filter would (no arguments).
    #[arg(long)]
    listing: bool,
    /// Print the decision as JSON.
    #[arg(long)]
    json: bool,
}

fn load(config: &Path) -> anyhow::Result<(Config, Policies)> {
    let cfg = Config::load(config)?;
    anyhow::ensure!(
        !cfg.policy.files.is_empty(),
        "{}: [policy] files is empty: there is no policy to ask",
        config.display()
    );
    let p = Policies::load(&cfg.policy.files)?;
    Ok((cfg, p))
}

/// Runs one `policy` subcommand.
pub fn run(cmd: PolicyCmd) -> anyhow::Result<ExitCode> {
    match cmd {
        PolicyCmd::Explain(a) => explain(*a),
        PolicyCmd::Test {
            cases,
            config,
            json,
        } => test(&cases, &config.config, json.json),
        PolicyCmd::Keygen { key, json } => super::publish::keygen(&key, json.json),
        PolicyCmd::Publish(a) => super::publish::publish(*a),
    }
}

/// `policy explain`: the decision for one request, as the agent would
/// take it.
fn explain(a: ExplainArgs) -> anyhow::Result<ExitCode> {
    let (cfg, policies) = load(&a.config.config)?;
    let arguments = a
        .args
        .as_deref()
        .map(serde_json::from_str::<serde_json::Value>)
        .transpose()
        .context("--args must be JSON")?;
    // The agent refuses a call whose JSON servers could read
    // otherwise; explain does too.
    if let Some(text) = &a.args {
        interceptor::jsonrpc::check_json(text.as_bytes()).context("--args")?;
    }
    let process = a
        .process
        .as_deref()
        .map(serde_json::from_str::<ProcessContext>)
        .transpose()
        .context("--process must be a JSON object of pid, uid, user, unit, cgroup, exe, exe_sha256, container, pod")?;
    let q = explain::Question {
        subject: a.subject,
        groups: a.groups,
        auth_method: a.auth_method,
        method: a.method,
        tool: a.tool,
        uri: a.uri,
        prompt: a.prompt,
        arguments,
        server: a.server,
        source_ip: a.source_ip,
        client_name: a.client_name,
        time: a.time,
        grants: a.grants,
        listing: a.listing,
        process,
        ..Default::default()
    };
    let d = policies.decide(&q.input(&cfg))?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&d)?);
    } else {
        print!(
            "{}",
            interceptor::escape::lines(&explain::render(&d, &policies))
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `policy test`: every case of the table against the policy; exit 1 on
/// a mismatch.
fn test(cases: &Path, config: &Path, json: bool) -> anyhow::Result<ExitCode> {
    let (cfg, policies) = load(config)?;
    let table = explain::load_cases(cases)?;
    let results = explain::run_cases(&policies, &cfg, &table)?;
    let failed = results.iter().filter(|r| !r.passed).count();
    let code = if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    };
    if json {
        let cases: Vec<serde_json::Value> = results
            .iter()
            .map(|r| {
                serde_json::json!({
                    "name": r.name, "passed": r.passed, "want": r.want,
                    "got": r.decision.effect.as_str(), "policies": r.decision.policies,
                    "reason": r.decision.reason,
                })
            })
            .collect();
        let v = serde_json::json!({ "passed": failed == 0, "failed": failed, "cases": cases });
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(code);
    }
    for r in &results {
        let ids = r.decision.policies.join(", ");
        if r.passed {
            println!("ok   {}: {} ({ids})", r.name, r.decision.effect.as_str());
        } else {
            println!(
                "FAIL {}: want {}, got {} ({ids}): {}",
                r.name,
                r.want,
                r.decision.effect.as_str(),
                r.decision.reason
            );
        }
    }
    println!(
        "{} of {} cases passed",
        results.len() - failed,
        results.len()
    );
    Ok(code)
}
