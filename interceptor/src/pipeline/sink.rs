//! A `record` phase that appends each event as one JSON line to a file.
//! Lines are written whole and flushed per event, so a reader tailing the
//! file never sees half a line from a live agent.

use std::{
    fs::{File, OpenOptions},
    io::Write,
    path::Path,
    sync::Mutex,
};

use super::{ExchangeEvent, Phase};

/// Writes events as JSON lines to a file.
pub struct JsonLines {
    file: Mutex<File>,
}

impl JsonLines {
    /// Opens (appending) the file at `path`.
    pub fn open(path: &Path) -> std::io::Result<Self> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        Ok(Self {
            file: Mutex::new(file),
        })
    }
}

impl Phase for JsonLines {
    fn name(&self) -> &'static str {
        "events-jsonl"
    }

    fn record(&self, event: &ExchangeEvent) {
        let mut line = match serde_json::to_vec(event) {
            Ok(l) => l,
            Err(e) => {
                tracing::error!(error = %e, "event not serializable");
                return;
            }
        };
        line.push(b'\n');
        let mut f = match self.file.lock() {
            Ok(f) => f,
            Err(poisoned) => poisoned.into_inner(),
        };
        if let Err(e) = f.write_all(&line) {
            tracing::error!(error = %e, "writing the events file failed");
        }
    }
}
