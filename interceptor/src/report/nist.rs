//! Evidence per NIST SP 800-53 control, computed from the audit rows of a
//! period: the report's model, and what the controls share. The controls
//! themselves are in `controls.rs`, the renderings in `markdown.rs` and
//! `html.rs`.

use std::{collections::BTreeMap, os::unix::fs::PermissionsExt, path::Path};

use sha2::{Digest, Sha256};

use super::{
    Loaded, Period, ReportError,
    controls::{ac3, ac6, au2, au3, au9, au10, au12, ia2, sc8},
    fmt_time, load, select_files,
};
use crate::audit::{
    chain::{self, PUBLIC_KEY_FILE},
    schema::AuditRow,
};

/// Rows of MCP traffic (one per request, notification or refusal).
pub const EXCHANGE_KINDS: &[&str] = &[
    "exchange",
    "notification",
    "denied",
    "unanswered",
    "unpaired",
    "rejected",
];

/// Every kind the agent writes (deploy/athena/README.md, and the tool
/// pinning kinds of `policy::tool_pins`).
pub const ALL_KINDS: &[&str] = &[
    "forwarded",
    "exchange",
    "notification",
    "denied",
    "unanswered",
    "unpaired",
    "session_closed",
    "rejected",
    "http",
    "connection_open",
    "connection_close",
    "agent_start",
    "agent_stop",
    "approval_requested",
    "approval_vote_approve",
    "approval_vote_deny",
    "approval_refused",
    "approval_approved",
    "approval_denied",
    "approval_expired",
    "approval_used",
    "approval_abandoned",
    "approval_interrupted",
    "grant_added",
    "grant_revoked",
    "grant_expired",
    "policy_loaded",
    "policy_rejected",
    "tool_pinned",
    "tool_changed",
    "tool_repinned",
    "tool_restored",
];

pub(super) const SAMPLES: usize = 5;
pub(super) const MAX_TABLE_ROWS: usize = 50;

/// The outcome of `audit verify` over the whole directory.
#[derive(Debug, Clone)]
pub enum Verify {
    /// The chain verified.
    Intact(chain::Report),
    /// The chain breaks.
    Broken(chain::Break),
}

/// A signing key and its host.
#[derive(Debug, Clone)]
pub struct Key {
    /// The host.
    pub host: String,
    /// The public key, in hex.
    pub public_key: String,
    /// SHA-256 of the raw 32-byte Ed25519 public key, hex.
    pub fingerprint: String,
}

/// How well the evidence supports a control.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// The trail holds evidence for the control.
    Evidence,
    /// Partly shown, or nothing in the period: read the note.
    Limited,
    /// The trail contradicts the control (a broken chain).
    Failed,
}

impl Status {
    /// The status's label as shown.
    pub fn label(self) -> &'static str {
        match self {
            Status::Evidence => "evidence",
            Status::Limited => "limited",
            Status::Failed => "FAILED",
        }
    }
}

/// A table in a control's section.
#[derive(Debug, Clone, Default)]
pub struct Table {
    /// The table's caption.
    pub caption: String,
    /// The column headings.
    pub head: Vec<&'static str>,
    /// The rows.
    pub rows: Vec<Vec<String>>,
}

/// What an evidence row shows.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// When the event happened.
    pub event_time: String,
    /// The row's kind.
    pub kind: String,
    /// The caller's subject.
    pub subject: String,
    /// The tool.
    pub tool_name: String,
    /// The decision taken.
    pub decision: String,
    /// The policy rules that matched.
    pub rule_ids: String,
}

impl From<&AuditRow> for Sample {
    fn from(r: &AuditRow) -> Self {
        let or = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
        Sample {
            event_time: fmt_time(r.event_time_us),
            kind: r.kind.clone(),
            subject: or(&r.subject),
            tool_name: or(&r.tool_name),
            decision: or(&r.decision),
            rule_ids: if r.rule_ids.is_empty() {
                "-".into()
            } else {
                r.rule_ids.join(", ")
            },
        }
    }
}

/// One NIST control's section of the report.
#[derive(Debug, Clone)]
pub struct Control {
    /// The control's id.
    pub id: &'static str,
    /// The control's title.
    pub title: &'static str,
    /// What the control asks, in one sentence.
    pub asks: &'static str,
    /// How the agent meets it.
    pub how: &'static str,
    /// How well the evidence supports it.
    pub status: Status,
    /// Facts as name and value.
    pub facts: Vec<(String, String)>,
    /// Tables of evidence.
    pub tables: Vec<Table>,
    /// The caption of the sample table.
    pub samples_caption: String,
    /// Sample audit rows.
    pub samples: Vec<Sample>,
    /// A note for the reader, if any.
    pub note: Option<String>,
}

/// The NIST evidence report over an audit directory.
#[derive(Debug, Clone)]
pub struct NistReport {
    /// The audit directory.
    pub dir: String,
    /// The period covered.
    pub period: Period,
    /// When the report was generated (microseconds since the epoch).
    pub generated_us: i64,
    /// How many rows were read.
    pub rows: usize,
    /// How many files were read.
    pub files_read: usize,
    /// How many files were skipped.
    pub files_skipped: usize,
    /// How many WAL segments were not yet sealed.
    pub pending_wal_segments: usize,
    /// The chain verification result.
    pub verify: Verify,
    /// The signing keys found.
    pub keys: Vec<Key>,
    /// The controls' sections.
    pub controls: Vec<Control>,
}

/// Loads the period from `dir`, verifies the chain (with the pinned
/// `public_key`, if given) and computes the evidence.
pub fn build(
    dir: &Path,
    period: Period,
    public_key: Option<&str>,
) -> Result<NistReport, ReportError> {
    let loaded = load(dir, period)?;
    let verify = match chain::verify(dir, public_key) {
        Ok(r) => Verify::Intact(r),
        Err(b) => Verify::Broken(b),
    };
    let keys = keys(dir, public_key);
    let (files, _) = select_files(&dir.join("events"), period)?;
    let private = files
        .iter()
        .filter(|f| std::fs::metadata(f).is_ok_and(|m| m.permissions().mode() & 0o007 == 0))
        .count();
    Ok(from_rows(
        dir,
        period,
        loaded,
        verify,
        keys,
        (private, files.len()),
    ))
}

fn keys(dir: &Path, pinned: Option<&str>) -> Vec<Key> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(dir.join("manifest")) else {
        return out;
    };
    let mut hosts: Vec<_> = rd
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    hosts.sort();
    for h in hosts {
        let stored = std::fs::read_to_string(h.join(PUBLIC_KEY_FILE)).unwrap_or_default();
        let public_key = pinned.unwrap_or(&stored).trim().to_string();
        let fingerprint = hex::decode(&public_key)
            .map(|b| hex::encode(Sha256::digest(b)))
            .unwrap_or_else(|_| "(not hex)".into());
        out.push(Key {
            host: h.file_name().unwrap_or_default().to_string_lossy().into(),
            public_key,
            fingerprint,
        });
    }
    out
}

pub(super) fn pct(n: usize, d: usize) -> String {
    if d == 0 {
        "n/a".into()
    } else {
        format!("{:.1}%", n as f64 * 100.0 / d as f64)
    }
}

pub(super) fn of(n: usize, d: usize) -> String {
    format!("{n} of {d} ({})", pct(n, d))
}

pub(super) fn count<'a>(it: impl Iterator<Item = &'a str>) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for k in it {
        *m.entry(k.to_string()).or_insert(0) += 1;
    }
    m
}

pub(super) fn count_table(caption: &str, head: &'static str, m: BTreeMap<String, usize>) -> Table {
    let mut rows: Vec<_> = m.into_iter().collect();
    rows.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    Table {
        caption: caption.into(),
        head: vec![head, "rows"],
        rows: rows
            .into_iter()
            .map(|(k, n)| vec![k, n.to_string()])
            .collect(),
    }
}

pub(super) fn samples<'a>(rows: impl Iterator<Item = &'a AuditRow>) -> Vec<Sample> {
    rows.take(SAMPLES).map(Sample::from).collect()
}

pub(super) fn fact(k: &str, v: impl ToString) -> (String, String) {
    (k.to_string(), v.to_string())
}

pub(super) fn is_exchange(r: &AuditRow) -> bool {
    EXCHANGE_KINDS.contains(&r.kind.as_str())
}

pub(super) fn is_deny(r: &AuditRow) -> bool {
    r.decision.as_deref() == Some("deny") && is_exchange(r)
}

/// A refusal before any identity was established (401/403 by identity).
pub(super) fn is_auth_refusal(r: &AuditRow) -> bool {
    r.kind == "rejected" && r.decided_by.as_deref() == Some("identity")
}

/// What an identity refusal means, from its error's `data.reason`.
/// Trails written before the codes moved (issue 20) carry no reason; their
/// old codes still read.
pub(super) fn auth_refusal_meaning(r: &AuditRow) -> &'static str {
    let reason = r
        .error
        .as_deref()
        .and_then(|e| serde_json::from_str::<serde_json::Value>(e).ok())
        .and_then(|v| v["data"]["reason"].as_str().map(str::to_owned));
    let old = match r.error_code {
        Some(-32087) => "unauthenticated",
        Some(-32088) => "insufficient_scope",
        Some(-32089) => "session_owner",
        Some(-32092) => "identity_unavailable",
        _ => "",
    };
    match reason.as_deref().unwrap_or(old) {
        "unauthenticated" => "no verified identity (missing or invalid credentials)",
        "insufficient_scope" => "token lacks the required scopes",
        "session_owner" => "session opened by another identity",
        "identity_unavailable" => "issuer keys unavailable",
        "tls_required" => "plaintext where TLS is required",
        _ => "other",
    }
}

/// The evidence from rows already loaded (tests call this directly).
pub fn from_rows(
    dir: &Path,
    period: Period,
    loaded: Loaded,
    verify: Verify,
    keys: Vec<Key>,
    private_files: (usize, usize),
) -> NistReport {
    let rows = &loaded.rows;
    let ex: Vec<&AuditRow> = rows.iter().filter(|r| is_exchange(r)).collect();
    let controls = vec![
        ac3(&ex),
        ac6(rows, &ex),
        au2(rows),
        au3(&ex),
        au9(&verify, &keys, private_files, &loaded),
        au10(&verify, &ex),
        au12(rows),
        ia2(&ex),
        sc8(rows),
    ];
    NistReport {
        dir: dir.display().to_string(),
        period,
        generated_us: crate::pipeline::event::now_us(),
        rows: rows.len(),
        files_read: loaded.files_read,
        files_skipped: loaded.files_skipped,
        pending_wal_segments: loaded.pending_wal_segments,
        verify,
        keys,
        controls,
    }
}
