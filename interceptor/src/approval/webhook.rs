//! Announces each new approval request with a JSON POST (plain, or a
//! Slack incoming-webhook payload). Fire and forget, bounded by a timeout:
//! a slow chat server never delays the held call or the agent; a failure
//! is logged (the request is in the audit and `approvals list` either way).

use std::time::Duration;

use serde_json::{Value, json};

use super::{Approval, ApprovalError, what};
use crate::config::{Webhook as Cfg, WebhookFormat};

pub struct Webhook {
    url: String,
    format: WebhookFormat,
    authorization: Option<String>,
    http: reqwest::Client,
}

impl Webhook {
    pub fn new(cfg: &Cfg) -> Result<Self, ApprovalError> {
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
        Ok(Self {
            url: cfg.url.clone(),
            format: cfg.format,
            authorization,
            http,
        })
    }

    pub fn announce(&self, a: &Approval, approve_at: &str) {
        let body = match self.format {
            WebhookFormat::Json => json_payload(a, approve_at),
            WebhookFormat::Slack => slack_payload(a, approve_at),
        };
        let mut req = self
            .http
            .post(&self.url)
            .header("content-type", "application/json");
        if let Some(auth) = &self.authorization {
            req = req.header("authorization", auth);
        }
        let req = req.body(body.to_string());
        let (id, url) = (a.id.clone(), self.url.clone());
        tokio::spawn(async move {
            match req.send().await {
                Ok(r) if r.status().is_success() => {
                    tracing::debug!(approval = %id, "webhook delivered")
                }
                Ok(r) => {
                    tracing::warn!(approval = %id, %url, status = r.status().as_u16(), "webhook refused the announcement")
                }
                Err(e) => tracing::warn!(approval = %id, %url, error = %e, "webhook failed"),
            }
        });
    }
}

fn json_payload(a: &Approval, approve_at: &str) -> Value {
    json!({
        "type": "approval_requested",
        "approval": a,
        "approve": approve_at,
    })
}

fn slack_payload(a: &Approval, approve_at: &str) -> Value {
    let args = a
        .arguments
        .as_ref()
        .map(|v| v.to_string())
        .unwrap_or_else(|| "(none)".into());
    let text = format!(
        "Approval {} requested: {} asks for {} on server {}. Needs {} approver(s) from {}.",
        a.id,
        a.subject,
        what(a),
        a.server,
        a.quorum,
        a.approver_groups.join(", ")
    );
    json!({
        "text": text,
        "blocks": [
            { "type": "section", "text": { "type": "mrkdwn", "text": text } },
            { "type": "section", "text": { "type": "mrkdwn", "text": format!("*Arguments* (masked): `{args}`") } },
            { "type": "context", "elements": [ { "type": "mrkdwn", "text": format!("Approve or deny: `{approve_at}`") } ] },
        ],
    })
}
