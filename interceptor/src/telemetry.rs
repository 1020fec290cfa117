//! Logging: tracing to stderr (journald picks it up), text or JSON lines.
//! Records from the kernel program (aya-log, through the `log` crate) land
//! in the same stream via tracing-subscriber's log bridge.
#![forbid(unsafe_code)]

use std::io::{self, Write};

use tracing_subscriber::{EnvFilter, fmt::MakeWriter};

use crate::{
    config::{Log, LogFormat},
    escape,
};

/// Installs the global subscriber; `RUST_LOG` overrides `log.level`.
pub fn init(cfg: &Log) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&cfg.level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let json = cfg.format == LogFormat::Json;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(SafeStderr { json })
        // No colour: every control character of a line is escaped on the
        // way out (see `SafeStderr`), colour codes included.
        .with_ansi(false)
        .with_target(true);
    // A second init (tests, or the CLI after a failed config) is harmless.
    let _ = match cfg.format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}

/// Stderr, one escaped line per event. tracing-subscriber 0.3.23 escapes
/// ESC, BEL, BS, FF, DEL and C1 in fields and messages, but not CR, LF,
/// tab, the other C0 controls or bidi overrides: a method name with a
/// newline forged a log line, one with U+202E reordered it. Messages that
/// interpolate caller text (`"{reason}"`) are covered the same way, at
/// whichever call site they are written.
struct SafeStderr {
    json: bool,
}

impl<'a> MakeWriter<'a> for SafeStderr {
    type Writer = LineWriter;

    fn make_writer(&'a self) -> LineWriter {
        LineWriter {
            json: self.json,
            buf: Vec::new(),
        }
    }
}

/// Collects one event's line (the formatter writes it whole) and writes it
/// escaped when dropped, in one write so lines of threads do not mix.
struct LineWriter {
    json: bool,
    buf: Vec<u8>,
}

impl Write for LineWriter {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(b);
        Ok(b.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for LineWriter {
    fn drop(&mut self) {
        if self.buf.is_empty() {
            return;
        }
        let raw = String::from_utf8_lossy(&self.buf);
        let line = match self.json {
            true => escape::json_line(&raw),
            false => escape::text_line(&raw),
        };
        let _ = io::stderr().lock().write_all(line.as_bytes());
    }
}
