//! Evidence per NIST SP 800-53 control, computed from the audit rows of a
//! period: the report's model, and what the controls share. The controls
//! themselves are in `controls.rs`, the renderings in `markdown.rs` and
//! `html.rs`.

use std::{collections::BTreeMap, os::unix::fs::PermissionsExt, path::Path};

use sha2::{Digest, Sha256};

use super::{
    Loaded, Period, ReportError, Sources,
    controls::{ac3, ac6, ia2, ia3},
    coverage::{coverage, entry_times},
    fmt_time, load,
    records::{au2, au3, au12},
    seal::{Seal, au9, au10},
    select_files,
    wire::sc8,
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
    "heartbeat",
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

/// How far the audit data of the period proves a control. Ordered from
/// best to worst: a report's worst status decides its exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// The data proves it: every row the control is judged on holds, and
    /// the evidence was checked the strong way.
    Met,
    /// It holds for some rows only, or the evidence could only be checked
    /// the weak way: the control's gaps say which rows and why.
    Partial,
    /// The trail does not record what the control is judged on, or the
    /// period holds no row it judges.
    NotAssessed,
    /// The data shows the control was not in force.
    NotMet,
}

impl Status {
    /// The status's label as shown.
    pub fn label(self) -> &'static str {
        match self {
            Status::Met => "met",
            Status::Partial => "partial",
            Status::NotAssessed => "not assessed",
            Status::NotMet => "not met",
        }
    }
}

/// Why a control falls short of met: what the data showed, which rows (or
/// which setting) caused it, and what fixes it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Gap {
    /// What falls short, with counts ("12 of 12 exchange rows are anonymous").
    pub cause: String,
    /// Which rows, as a condition on the audit table's columns, or the
    /// setting or stretch of time concerned.
    pub which: String,
    /// What to change so that the control can be met.
    pub fix: String,
    /// Some of those rows.
    pub rows: Vec<Sample>,
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
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Sample {
    /// When the event happened.
    pub event_time: String,
    /// The row's id (`event_id`), to find it in the trail.
    pub event_id: String,
    /// The row's kind.
    pub kind: String,
    /// The JSON-RPC method.
    pub method: String,
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
            event_id: r.event_id.clone(),
            kind: r.kind.clone(),
            method: or(&r.method),
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
    /// How far the period's data proves it.
    pub status: Status,
    /// The rule that decides the status, in one line.
    pub rule: &'static str,
    /// What the rule found in this period.
    pub verdict: String,
    /// Why it falls short of met (empty when met).
    pub gaps: Vec<Gap>,
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

/// How the evidence is checked: what `report nist` was given and what it
/// found out about the trail's storage.
#[derive(Debug, Clone)]
pub struct Check {
    /// The pinned Ed25519 public key (hex) for the chain check; `None`:
    /// the copy stored beside the manifest, which proves consistency only.
    pub public_key: Option<String>,
    /// The longest stretch without a manifest entry or row that still
    /// counts as recording, in microseconds.
    pub max_gap_us: i64,
    /// Whether the trail is shipped to S3 (`[audit.s3]` in the config, or
    /// an upload `outbox/` in the directory).
    pub s3: bool,
}

impl Check {
    /// The allowed gap when the config is not known: twice the default
    /// `audit.roll_seconds`.
    pub const DEFAULT_MAX_GAP_SECS: u64 = 120;

    /// The check of `dir`: `public_key` as given, the allowed gap
    /// `max_gap_secs` or twice the config's `audit.roll_seconds`, and S3
    /// from the config or an `outbox/` in `dir`.
    pub fn new(
        dir: &Path,
        cfg: Option<&crate::config::Config>,
        public_key: Option<String>,
        max_gap_secs: Option<u64>,
    ) -> Self {
        let secs = max_gap_secs
            .or_else(|| cfg.map(|c| c.audit.roll_seconds.saturating_mul(2)))
            .unwrap_or(Self::DEFAULT_MAX_GAP_SECS);
        Self {
            public_key,
            max_gap_us: i64::try_from(secs.saturating_mul(1_000_000)).unwrap_or(i64::MAX),
            s3: cfg.is_some_and(|c| c.audit.s3.is_some()) || dir.join("outbox").is_dir(),
        }
    }
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
    /// The files the rows came from, and those left out.
    pub sources: Sources,
    /// The chain verification result.
    pub verify: Verify,
    /// Whether the chain was checked with a pinned key.
    pub pinned: bool,
    /// The controls' sections.
    pub controls: Vec<Control>,
}

impl NistReport {
    /// The worst status of any control (met for an empty list).
    pub fn worst(&self) -> Status {
        self.controls
            .iter()
            .map(|c| c.status)
            .max()
            .unwrap_or(Status::Met)
    }

    /// The controls short of met, in report order.
    pub fn short_of_met(&self) -> impl Iterator<Item = &Control> {
        self.controls.iter().filter(|c| c.status != Status::Met)
    }
}

/// What was read and checked for a period, before it is judged.
pub struct Evidence {
    /// The rows of the period.
    pub loaded: Loaded,
    /// `audit verify` over the whole directory.
    pub verify: Verify,
    /// The signing keys shown.
    pub keys: Vec<Key>,
    /// Data files of the period closed to other users, of all of them.
    pub private_files: (usize, usize),
    /// The times each host's manifest entries vouch for.
    pub entries: BTreeMap<String, Vec<i64>>,
}

/// Loads the period from `dir`, verifies the chain (with the pinned key,
/// if given) and judges each control.
pub fn build(dir: &Path, period: Period, check: &Check) -> Result<NistReport, ReportError> {
    let loaded = load(dir, period)?;
    let public_key = check.public_key.as_deref();
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
    let evidence = Evidence {
        loaded,
        verify,
        keys,
        private_files: (private, files.len()),
        entries: entry_times(dir),
    };
    Ok(from_rows(dir, period, check, evidence))
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

/// A request the client made of the server: its row records the request
/// and its outcome (allowed and answered, denied, or left unanswered).
pub(super) fn is_client_request(r: &AuditRow) -> bool {
    matches!(r.kind.as_str(), "exchange" | "denied" | "unanswered")
        && r.direction.as_deref() == Some("client_to_server")
        && r.method.is_some()
}

/// A refusal before any identity could be established: by the identity
/// stage (401/403), or by the TLS stage (plaintext, failed handshake).
pub(super) fn before_identity(r: &AuditRow) -> bool {
    r.kind == "rejected" && matches!(r.decided_by.as_deref(), Some("identity" | "tls"))
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
        "process_unmatched" => "a process on this host that no [identity.process] rule admits",
        _ => "other",
    }
}

/// The report from evidence already gathered (tests call this directly).
pub fn from_rows(dir: &Path, period: Period, check: &Check, e: Evidence) -> NistReport {
    let generated_us = crate::pipeline::event::now_us();
    let rows = &e.loaded.rows;
    let ex: Vec<&AuditRow> = rows.iter().filter(|r| is_exchange(r)).collect();
    let cov = coverage(
        (period.from_us, period.to_us),
        generated_us,
        check.max_gap_us,
        &e.entries,
        rows,
    );
    let seal = Seal {
        verify: &e.verify,
        pinned: check.public_key.is_some(),
        s3: check.s3,
    };
    let controls = vec![
        ac3(&ex),
        ac6(rows, &ex),
        au2(rows, &cov, check.max_gap_us),
        au3(&ex),
        au9(&seal, &e.keys, e.private_files, &e.loaded),
        au10(&seal, &ex),
        au12(rows, &cov, check.max_gap_us),
        ia2(&ex),
        ia3(&ex),
        sc8(rows),
    ];
    NistReport {
        dir: dir.display().to_string(),
        period,
        generated_us,
        rows: rows.len(),
        sources: e.loaded.sources,
        verify: e.verify,
        pinned: check.public_key.is_some(),
        controls,
    }
}
