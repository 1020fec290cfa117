//! Announces new approval requests with a JSON POST (plain, or a Slack
//! incoming-webhook payload). Off the request path: `announce` only
//! decides (under a short lock) and spawns; a slow chat server never
//! delays the held call or the agent, and a failure is logged (the request
//! is in the audit and `approvals list` either way). Rate limited per
//! window and per caller (`limit`); what is not posted one by one is
//! counted and posted as one summary naming the callers, so a flood can
//! neither spam the approvers' channel nor hide another caller's request.

mod limit;
mod payload;

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use serde_json::Value;
use tokio::time::Instant;

use super::{Approval, ApprovalError};
use crate::config::{Webhook as Cfg, WebhookFormat};
use limit::{Admit, Asker, Limiter};

/// The configured webhook and its post budget.
pub struct Webhook {
    inner: Arc<Inner>,
}

struct Inner {
    url: String,
    format: WebhookFormat,
    authorization: Option<String>,
    include_arguments: bool,
    /// Where all requests are listed, for the summary.
    list_at: String,
    http: reqwest::Client,
    limiter: Mutex<Limiter>,
}

impl Webhook {
    /// From `[approvals.webhook]`; `approve_url` is `[approvals]`'.
    pub fn new(cfg: &Cfg, approve_url: Option<&str>) -> Result<Self, ApprovalError> {
        let authorization = match &cfg.authorization_file {
            Some(f) => Some(
                std::fs::read_to_string(f)
                    .map_err(|e| {
                        ApprovalError::Invalid(format!(
                            "approvals.webhook.authorization_file {}: {e}",
                            f.display()
                        ))
                    })?
                    .lines()
                    .next()
                    .unwrap_or_default()
                    .trim()
                    .to_string(),
            ),
            None => None,
        };
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(cfg.timeout_seconds.max(1)))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| ApprovalError::Invalid(format!("approvals.webhook: {e}")))?;
        let limiter = Limiter::new(
            Duration::from_secs(cfg.interval_seconds.max(1)),
            cfg.max_posts.max(2),
            cfg.max_posts_per_caller.max(1),
            Instant::now(),
        );
        Ok(Self {
            inner: Arc::new(Inner {
                url: cfg.url.clone(),
                format: cfg.format,
                authorization,
                include_arguments: cfg.include_arguments,
                list_at: match approve_url {
                    Some(u) => u.trim_end_matches('/').to_string(),
                    None => "mcp-interceptor approvals list".into(),
                },
                http,
                limiter: Mutex::new(limiter),
            }),
        })
    }

    /// Posts `a` now, or counts it for the window's summary.
    pub fn announce(&self, a: &Approval, approve_at: &str) {
        let who = Asker {
            subject: a.call.subject.clone(),
            issuer: a.call.issuer.clone(),
        };
        let admit = self.inner.lock().admit(&who, Instant::now());
        match admit {
            Admit::Post => {
                let i = &self.inner;
                let body = match i.format {
                    WebhookFormat::Json => {
                        payload::json_request(a, approve_at, i.include_arguments)
                    }
                    WebhookFormat::Slack => {
                        payload::slack_request(a, approve_at, i.include_arguments)
                    }
                };
                let inner = self.inner.clone();
                let id = a.id.clone();
                tokio::spawn(async move { inner.post(&id, body).await });
            }
            Admit::Counted(None) => {
                tracing::debug!(approval = %a.id, "webhook limit reached; counted for the summary")
            }
            Admit::Counted(Some(at)) => {
                tracing::info!(approval = %a.id, subject = %a.call.subject, "webhook limit reached; further requests are summarized");
                let inner = self.inner.clone();
                tokio::spawn(async move { inner.flush_at(at).await });
            }
        }
    }
}

impl Inner {
    fn lock(&self) -> std::sync::MutexGuard<'_, Limiter> {
        self.limiter.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Closes the window at `at` and posts its summary, if any.
    async fn flush_at(&self, at: Instant) {
        tokio::time::sleep_until(at).await;
        let Some(s) = self.lock().flush(Instant::now()) else {
            return;
        };
        tracing::info!(
            requests = s.total,
            callers = s.by_caller.len(),
            "webhook summary of requests not announced one by one"
        );
        let body = match self.format {
            WebhookFormat::Json => payload::json_summary(&s, &self.list_at),
            WebhookFormat::Slack => payload::slack_summary(&s, &self.list_at),
        };
        self.post("summary", body).await;
    }

    async fn post(&self, what: &str, body: Value) {
        let mut req = self
            .http
            .post(&self.url)
            .header("content-type", "application/json");
        if let Some(auth) = &self.authorization {
            req = req.header("authorization", auth);
        }
        let url = &self.url;
        match req.body(body.to_string()).send().await {
            Ok(r) if r.status().is_success() => {
                tracing::debug!(approval = %what, "webhook delivered")
            }
            Ok(r) => {
                tracing::warn!(approval = %what, %url, status = r.status().as_u16(), "webhook refused the announcement")
            }
            Err(e) => tracing::warn!(approval = %what, %url, error = %e, "webhook failed"),
        }
    }
}
