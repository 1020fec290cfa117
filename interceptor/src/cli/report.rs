//! `mcp-interceptor report ...`: evidence documents generated from the
//! audit files.

use std::{path::PathBuf, process::ExitCode};

use super::{ConfigArg, JsonArg};
use clap::Subcommand;
use interceptor::{
    config::Config,
    report::{self, Period, nist},
};

/// The `report` subcommands.
#[derive(Subcommand)]
pub enum ReportCmd {
    /// NIST SP 800-53 evidence (AC-3, AC-6, AU-2, AU-3, AU-9, AU-10,
    /// AU-12, IA-2, SC-8) for a period: `<out>/nist-report.md`, a
    /// self-contained `<out>/nist-report.html` and the verdicts as
    /// `<out>/nist-report.json`. Each control is met, partial, not met or
    /// not assessed, by the rule printed under its status.
    #[command(after_help = super::exit::REPORT_NIST)]
    Nist {
        /// Start, inclusive: `YYYY-MM-DD` or `YYYY-MM-DDTHH:MM:SSZ` (UTC).
        #[arg(long)]
        from: String,
        /// End, exclusive: `YYYY-MM-DD` or `YYYY-MM-DDTHH:MM:SSZ` (UTC).
        #[arg(long)]
        to: String,
        /// The audit directory; default: `audit.dir` of the config.
        #[arg(long)]
        dir: Option<PathBuf>,
        #[command(flatten)]
        config: ConfigArg,
        /// Where to write the three files.
        #[arg(long, default_value = ".")]
        out: PathBuf,
        /// The pinned Ed25519 public key (hex) for the chain check;
        /// default: the copy stored beside the manifest, which leaves
        /// AU-9 and AU-10 partial at best.
        #[arg(long)]
        public_key: Option<String>,
        /// The longest stretch (seconds) without a manifest entry or row
        /// that AU-2 and AU-12 still count as recording; default: twice
        /// `audit.roll_seconds` of the config, or 120 without one.
        #[arg(long)]
        max_gap: Option<u64>,
        #[command(flatten)]
        json: JsonArg,
    },
}

fn print_summary(r: &nist::NistReport, written: &[PathBuf]) {
    for path in written {
        println!("wrote {}", path.display());
    }
    println!(
        "{} rows from {} file(s); audit verify: {}",
        r.rows,
        r.sources.files_read,
        report::markdown::verify_line(&r.verify)
    );
    for c in r.short_of_met() {
        println!("{} {}: {}", c.id, c.status.label(), c.verdict);
    }
}

/// Runs one `report` subcommand.
pub fn run(cmd: ReportCmd) -> anyhow::Result<ExitCode> {
    match cmd {
        ReportCmd::Nist {
            from,
            to,
            dir,
            config,
            out,
            public_key,
            max_gap,
            json,
        } => {
            let config = config.config;
            let period = Period::parse(&from, &to)?;
            // The config tells the heartbeat interval and S3 shipping; with
            // --dir it is optional.
            let (dir, cfg) = match dir {
                Some(d) => (d, Config::load(&config).ok()),
                None => {
                    let cfg = Config::load(&config)?;
                    (cfg.audit.dir.clone(), Some(cfg))
                }
            };
            let check = nist::Check::new(&dir, cfg.as_ref(), public_key, max_gap);
            let r = nist::build(&dir, period, &check)?;
            let written = report::write_nist(&r, &out)?;
            if json.json {
                // The same verdicts as nist-report.json, for a pipeline
                // that reads stdout.
                println!("{}", report::json::render(&r));
            } else {
                print_summary(&r, &written);
            }
            Ok(match r.worst() {
                nist::Status::Met => ExitCode::SUCCESS,
                nist::Status::NotMet => ExitCode::from(3),
                nist::Status::Partial | nist::Status::NotAssessed => ExitCode::from(4),
            })
        }
    }
}
