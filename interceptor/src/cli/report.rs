//! `mcp-interceptor report ...`: evidence documents generated from the
//! audit files.

use std::{path::PathBuf, process::ExitCode};

use clap::Subcommand;
use interceptor::{
    config::{self, Config},
    report::{self, Period, nist},
};

/// The `report` subcommands.
#[derive(Subcommand)]
pub enum ReportCmd {
    /// NIST SP 800-53 evidence (AC-3, AC-6, AU-2, AU-3, AU-9, AU-10,
    /// AU-12, IA-2, SC-8) for a period: `<out>/nist-report.md` and a
    /// self-contained `<out>/nist-report.html`. Exits 1 (after writing
    /// both) when `audit verify` finds a break.
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
        #[arg(long, short, default_value = config::DEFAULT_PATH)]
        config: PathBuf,
        /// Where to write the two files.
        #[arg(long, default_value = ".")]
        out: PathBuf,
        /// The pinned Ed25519 public key (hex) for the chain check;
        /// default: the copy stored beside the manifest.
        #[arg(long)]
        public_key: Option<String>,
    },
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
        } => {
            let period = Period::parse(&from, &to)?;
            let dir = match dir {
                Some(d) => d,
                None => Config::load(&config)?.audit.dir,
            };
            let r = nist::build(&dir, period, public_key.as_deref())?;
            for path in report::write_nist(&r, &out)? {
                println!("wrote {}", path.display());
            }
            println!(
                "{} rows from {} file(s); audit verify: {}",
                r.rows,
                r.files_read,
                report::markdown::verify_line(&r.verify)
            );
            Ok(match r.verify {
                nist::Verify::Intact(_) => ExitCode::SUCCESS,
                nist::Verify::Broken(_) => ExitCode::FAILURE,
            })
        }
    }
}
