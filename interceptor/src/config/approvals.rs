//! `[approvals]` (human approval of held calls, just-in-time grants) and
//! `[admin]` (the local socket and HTTP listener approvers act through).

mod store;

use std::{net::SocketAddr, path::PathBuf};

use educe::Educe;
use serde::{Deserialize, Serialize};

pub use store::{ApprovalStore, DynamoDbStore};

use super::ValidationError::{self, Conflict, Invalid};

/// Approval settings.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Educe)]
#[educe(Default)]
#[serde(deny_unknown_fields, default)]
pub struct Approvals {
    /// Where approvals, votes and grants live: `sqlite` (the file `db`,
    /// this agent's own) or `dynamodb://TABLE-NAME` (one table a fleet of
    /// agents shares; see `[approvals.dynamodb]`).
    #[educe(Default(expression = "sqlite".into()))]
    pub store: String,
    /// `store = "sqlite"`: the SQLite file with pending approvals and
    /// grants (they survive a restart); unset: `approvals.db` beside the
    /// audit directory.
    pub db: Option<PathBuf>,
    /// `store = "dynamodb://..."`: how the table is reached and polled.
    pub dynamodb: DynamoDbStore,
    /// `hold` mode: how long a call waits for its approvers, then is denied.
    #[educe(Default = 300)]
    pub hold_timeout_seconds: u64,
    /// `retry` mode: how long a request waits for its approvers.
    #[educe(Default = 3600)]
    pub pending_seconds: u64,
    /// `retry` mode: once approved, how long the identical call may be made
    /// (once).
    #[educe(Default = 900)]
    pub valid_seconds: u64,
    /// While a call is held, an SSE comment (and a progress notification
    /// when the request asked for progress) this often, so clients and
    /// load balancers do not time out.
    #[educe(Default = 15)]
    pub keepalive_seconds: u64,
    /// Where approvers act, shown to callers and in the webhook (e.g. the
    /// admin listener's `https://host:9443/v1/approvals`); unset: the CLI
    /// command is shown.
    pub approve_url: Option<String>,
    /// Groups whose members may add and revoke just-in-time grants.
    pub grant_groups: Vec<String>,
    /// The longest grant `grants add --ttl` accepts.
    #[educe(Default(expression = 8 * 3600))]
    pub max_grant_ttl_seconds: u64,
    /// Pending approval requests one caller (issuer and subject) may have
    /// at once; the next is refused (-32004 `approval_cap`), so one caller cannot bury
    /// others' requests under a flood.
    #[educe(Default = 20)]
    pub max_pending_per_caller: u32,
    /// Notify a webhook of new approvals, if set.
    pub webhook: Option<Webhook>,
}

/// A JSON POST announcing each new approval request. It names the request
/// and where to approve it; argument values only with `include_arguments`.
/// Posts are rate limited: past the limits, requests are counted per caller
/// and announced together in one summary post per interval.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Webhook {
    /// Where the POST goes (http or https).
    pub url: String,
    /// `json`: the request as JSON; `slack`: a Slack incoming-webhook
    /// payload (`text` and `blocks`, caller text escaped).
    #[serde(default)]
    pub format: WebhookFormat,
    /// How long one POST may take.
    #[serde(default = "default_webhook_timeout")]
    pub timeout_seconds: u64,
    /// A file whose first line is sent as the `Authorization` header.
    #[serde(default)]
    pub authorization_file: Option<PathBuf>,
    /// Carry the (masked) arguments; off: the chat channel sees no values.
    #[serde(default)]
    pub include_arguments: bool,
    /// The window the post limits count in.
    #[serde(default = "default_webhook_interval")]
    pub interval_seconds: u64,
    /// Posts per window, summaries included.
    #[serde(default = "default_webhook_max_posts")]
    pub max_posts: u32,
    /// Requests of one caller announced one by one per window; the rest
    /// are counted in the summary (a flood cannot crowd others out).
    #[serde(default = "default_webhook_max_posts_per_caller")]
    pub max_posts_per_caller: u32,
}

fn default_webhook_timeout() -> u64 {
    5
}

fn default_webhook_interval() -> u64 {
    60
}

fn default_webhook_max_posts() -> u32 {
    20
}

fn default_webhook_max_posts_per_caller() -> u32 {
    3
}

/// How the webhook payload is shaped.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum WebhookFormat {
    /// The request as JSON (fields named, values not escaped).
    #[default]
    Json,
    /// A Slack incoming-webhook payload, every caller value escaped.
    Slack,
}

/// Admin API settings.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Educe)]
#[educe(Default)]
#[serde(deny_unknown_fields, default)]
pub struct Admin {
    /// The local admin socket (`mcp-interceptor approvals|grants` use it).
    /// File permissions guard it; callers are named by `local_users`.
    #[educe(Default(expression = PathBuf::from("/run/mcp-interceptor/admin.sock")))]
    pub socket: PathBuf,
    /// Permission bits of the socket (0o600: its owner, root, only).
    #[educe(Default = 0o600)]
    pub socket_mode: u32,
    /// Group owning the socket (with `socket_mode = 0o660`, its members
    /// may connect).
    pub socket_group: Option<String>,
    /// Local users (by name) and who they are for approvals and grants.
    /// A connecting user not listed acts as `local:<name>` with no groups
    /// (it sees only its own requests and grants).
    pub local_users: Vec<LocalUser>,
    /// An HTTP listener for the approval API (every request needs a bearer
    /// token from a configured OIDC issuer) and `/metrics`, `/healthz` (no
    /// token). TLS with `[tls]` cert and key when set; without TLS only a
    /// loopback address is accepted.
    pub listen: Option<SocketAddr>,
    /// The `aud` a bearer token must carry on the admin listener: the
    /// admin API's own, never one of the `[[identity.oidc]]` audiences, so
    /// a token an AI agent holds for the MCP servers cannot approve.
    #[educe(Default(expression = vec![ADMIN_AUDIENCE.into()]))]
    pub audiences: Vec<String>,
}

/// The admin API's default audience.
pub const ADMIN_AUDIENCE: &str = "mcp-interceptor-admin";

/// A local Unix user mapped to an admin identity.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LocalUser {
    /// The Unix user name.
    pub user: String,
    /// The subject the user acts as.
    pub subject: String,
    /// The groups the user acts in.
    #[serde(default)]
    pub groups: Vec<String>,
    /// The `[[identity.oidc]]` issuer of this person's OIDC identity (with
    /// `oidc_subject`): both names are one human, who votes once and never
    /// on their own call under either name.
    #[serde(default)]
    pub oidc_issuer: Option<String>,
    /// The `sub` of this person's tokens from `oidc_issuer`.
    #[serde(default)]
    pub oidc_subject: Option<String>,
}

pub(super) fn validate(cfg: &super::Config) -> Result<(), ValidationError> {
    let a = &cfg.approvals;
    if a.hold_timeout_seconds == 0 || a.pending_seconds == 0 || a.valid_seconds == 0 {
        return Err(Invalid(
            "approvals: hold_timeout_seconds, pending_seconds and valid_seconds must be > 0".into(),
        ));
    }
    if a.keepalive_seconds == 0 {
        return Err(Invalid("approvals.keepalive_seconds must be > 0".into()));
    }
    if a.max_grant_ttl_seconds == 0 {
        return Err(Invalid(
            "approvals.max_grant_ttl_seconds must be > 0".into(),
        ));
    }
    store::validate(a)?;
    if a.max_pending_per_caller == 0 {
        return Err(Invalid(
            "approvals.max_pending_per_caller must be > 0".into(),
        ));
    }
    if let Some(w) = &a.webhook {
        validate_webhook(w)?;
    }
    let m = &cfg.admin;
    if m.socket_mode & !0o777 != 0 || m.socket_mode & 0o007 != 0 {
        return Err(Invalid(format!(
            "admin.socket_mode {:o}: other users must not reach the admin socket (use socket_group)",
            m.socket_mode
        )));
    }
    if m.audiences.is_empty() || m.audiences.iter().any(|a| a.trim().is_empty()) {
        return Err(Invalid(
            "admin.audiences is empty: name the admin API's own token audience".into(),
        ));
    }
    for o in &cfg.identity.oidc {
        if let Some(shared) = m.audiences.iter().find(|a| o.audiences.contains(a)) {
            return Err(Conflict(format!(
                "admin.audiences {shared:?} is also an audience of [[identity.oidc]] {:?}: \
                 tokens for the MCP servers would work on the admin API; give it its own",
                o.issuer
            )));
        }
    }
    for u in &m.local_users {
        validate_link(cfg, u)?;
    }
    if let Some(addr) = m.listen {
        // Without an OIDC issuer only /metrics and /healthz answer there.
        if cfg.tls.cert.is_none() && !addr.ip().is_loopback() {
            return Err(Conflict(format!(
                "admin.listen {addr}: bearer tokens would cross the network in clear; set [tls] cert and key or listen on loopback"
            )));
        }
    }
    Ok(())
}

fn validate_webhook(w: &Webhook) -> Result<(), ValidationError> {
    if !(w.url.starts_with("http://") || w.url.starts_with("https://")) {
        return Err(Invalid(format!(
            "approvals.webhook.url {:?} is not an http(s) URL",
            w.url
        )));
    }
    if w.interval_seconds == 0 || w.max_posts == 0 || w.max_posts_per_caller == 0 {
        return Err(Invalid("approvals.webhook: interval_seconds, max_posts and max_posts_per_caller must be > 0 (a limit of 0 would announce nothing one by one)".into()));
    }
    if w.max_posts < 2 {
        return Err(Invalid(
            "approvals.webhook.max_posts must be >= 2: a window's summary takes one post".into(),
        ));
    }
    Ok(())
}

/// A local user's link to an OIDC identity names both halves, and an issuer
/// the agent trusts: a typo would silently leave one human two approvers.
fn validate_link(cfg: &super::Config, u: &LocalUser) -> Result<(), ValidationError> {
    match (&u.oidc_issuer, &u.oidc_subject) {
        (None, None) => Ok(()),
        (Some(i), Some(s)) if !s.trim().is_empty() => {
            if cfg.identity.oidc.iter().any(|o| &o.issuer == i) {
                Ok(())
            } else {
                Err(Conflict(format!(
                    "admin.local_users {:?}: oidc_issuer {i:?} is not an [[identity.oidc]] issuer",
                    u.user
                )))
            }
        }
        _ => Err(Conflict(format!(
            "admin.local_users {:?}: set both oidc_issuer and oidc_subject (the same human's OIDC identity), or neither",
            u.user
        ))),
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::super::Config;

    const MIN: &str = "[identity]\nallow_anonymous = true\n[[intercept.ports]]\nport = 8080\n";

    #[test]
    fn webhook_defaults_send_no_values_and_limits_are_checked() {
        let hook = "[approvals.webhook]\nurl = \"https://hooks.example/a\"\n";
        let cfg = Config::parse(&format!("{MIN}{hook}"), Path::new("t.toml")).unwrap();
        let w = cfg.approvals.webhook.unwrap();
        assert!(!w.include_arguments);
        assert_eq!(
            (w.interval_seconds, w.max_posts, w.max_posts_per_caller),
            (60, 20, 3)
        );
        for (line, want) in [
            ("max_posts = 1", "max_posts must be >= 2"),
            ("max_posts = 0", "must be > 0"),
            ("interval_seconds = 0", "must be > 0"),
            ("max_posts_per_caller = 0", "must be > 0"),
            ("burst = 3", "unknown field"),
        ] {
            let err = Config::parse(&format!("{MIN}{hook}{line}\n"), Path::new("t.toml"))
                .expect_err(line)
                .to_string();
            assert!(err.contains(want), "{line}: {err}");
        }
    }

    const BASE: &str = "[[intercept.ports]]\nport = 8080\n[[identity.oidc]]\n\
                        issuer = \"https://idp.example\"\naudiences = [\"mcp\"]\n";

    fn parse(extra: &str) -> Result<Config, String> {
        Config::parse(&format!("{BASE}{extra}"), Path::new("t.toml")).map_err(|e| e.to_string())
    }

    #[test]
    fn links_and_the_pending_cap_are_checked() {
        let cfg = parse("").unwrap();
        assert_eq!(cfg.approvals.max_pending_per_caller, 20);
        let user = "[[admin.local_users]]\nuser = \"root\"\nsubject = \"bob\"\n";
        let linked =
            format!("{user}oidc_issuer = \"https://idp.example\"\noidc_subject = \"robert\"\n");
        assert!(parse(&linked).is_ok());
        let cases = [
            (
                format!("{user}oidc_issuer = \"https://idp.example\"\n"),
                "set both",
            ),
            (
                format!("{user}oidc_issuer = \"https://other\"\noidc_subject = \"r\"\n"),
                "not an [[identity.oidc]] issuer",
            ),
            (
                "[approvals]\nmax_pending_per_caller = 0\n".to_string(),
                "max_pending_per_caller",
            ),
        ];
        for (text, want) in cases {
            let err = parse(&text).expect_err(&text);
            assert!(err.contains(want), "{text}: {err}");
        }
    }
}
