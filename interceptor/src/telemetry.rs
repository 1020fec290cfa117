//! Logging: tracing to stderr (journald picks it up), text or JSON lines.
//! Records from the kernel program (aya-log, through the `log` crate) land
//! in the same stream via tracing-subscriber's log bridge.
#![forbid(unsafe_code)]

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

use crate::config::{Log, LogFormat};

/// Installs the global subscriber; `RUST_LOG` overrides `log.level`.
pub fn init(cfg: &Log) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&cfg.level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colour only for a person at a terminal, never into journald/files.
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(true);
    // A second init (tests, or the CLI after a failed config) is harmless.
    let _ = match cfg.format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}
