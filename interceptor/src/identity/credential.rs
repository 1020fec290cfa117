//! The upstream credential: what the agent presents to the MCP server in
//! place of the caller's own `Authorization` (which the MCP spec forbids
//! passing through). Read from a file or a command's stdout, refreshed in
//! the background; a failed refresh keeps the last good value.

use std::{
    path::PathBuf,
    process::Stdio,
    sync::{Arc, RwLock},
    time::Duration,
};

use http::{HeaderName, HeaderValue};

use crate::config::UpstreamCredential;

/// Why an upstream credential could not be loaded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CredentialError {
    /// The credential file could not be read (path, error).
    #[error("reading {0}: {1}")]
    File(PathBuf, String),
    /// The credential command failed (command, error).
    #[error("running {0:?}: {1}")]
    Command(String, String),
    /// The credential is not a valid header value.
    #[error("the credential is empty or not a valid header value")]
    Invalid,
}

/// A credential the proxy adds to upstream requests.
pub struct Credential {
    /// The header it is sent in.
    pub header: HeaderName,
    cfg: UpstreamCredential,
    value: RwLock<Option<HeaderValue>>,
}

impl Credential {
    /// Loads the first value now (so a broken source fails the start or
    /// the reload, loudly) and refreshes it in the background.
    pub async fn start(cfg: &UpstreamCredential) -> Result<Arc<Self>, CredentialError> {
        let header =
            HeaderName::from_bytes(cfg.header.as_bytes()).map_err(|_| CredentialError::Invalid)?;
        let first = load(cfg).await?;
        let this = Arc::new(Self {
            header,
            cfg: cfg.clone(),
            value: RwLock::new(Some(first)),
        });
        let weak = Arc::downgrade(&this);
        let every = Duration::from_secs(cfg.refresh_seconds);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                let Some(this) = weak.upgrade() else { return };
                match load(&this.cfg).await {
                    Ok(v) => *this.value.write().unwrap_or_else(|p| p.into_inner()) = Some(v),
                    Err(e) => {
                        tracing::warn!(error = %e, "upstream credential not refreshed; keeping the previous value")
                    }
                }
            }
        });
        Ok(this)
    }

    /// The current value, if one is loaded.
    pub fn value(&self) -> Option<HeaderValue> {
        self.value.read().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

async fn load(cfg: &UpstreamCredential) -> Result<HeaderValue, CredentialError> {
    let raw = if let Some(path) = &cfg.value_file {
        tokio::fs::read(path)
            .await
            .map_err(|e| CredentialError::File(path.clone(), e.to_string()))?
    } else {
        let argv = cfg.command.clone();
        let shown = argv.join(" ");
        let out = tokio::time::timeout(
            Duration::from_secs(30),
            tokio::task::spawn_blocking(move || {
                std::process::Command::new(&argv[0])
                    .args(&argv[1..])
                    .stdin(Stdio::null())
                    .stderr(Stdio::piped())
                    .output()
            }),
        )
        .await
        .map_err(|_| CredentialError::Command(shown.clone(), "timed out after 30 s".into()))?
        .map_err(|e| CredentialError::Command(shown.clone(), e.to_string()))?
        .map_err(|e| CredentialError::Command(shown.clone(), e.to_string()))?;
        if !out.status.success() {
            let err = String::from_utf8_lossy(&out.stderr);
            return Err(CredentialError::Command(
                shown,
                format!("{}: {}", out.status, err.trim()),
            ));
        }
        out.stdout
    };
    let text = String::from_utf8_lossy(&raw);
    let text = text.trim();
    if text.is_empty() {
        return Err(CredentialError::Invalid);
    }
    let mut v = HeaderValue::from_str(text).map_err(|_| CredentialError::Invalid)?;
    // Keeps it out of hyper's debug output and HPACK tables.
    v.set_sensitive(true);
    Ok(v)
}
