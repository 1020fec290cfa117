//! SC-8 (transmission confidentiality and integrity), judged per
//! connection from how its wire was protected.

use std::collections::{BTreeMap, BTreeSet};

use super::{
    judge::{by_rows, setting_gap, worse},
    nist::*,
};
use crate::audit::schema::AuditRow;

/// SC-8's rule, as printed under its status.
pub const SC8_RULE: &str = "Met when every connection that carried exchange rows negotiated TLS 1.2 or later (tls_version); not met when none did; partial in between; not assessed while the trail does not record the negotiated TLS version of its connections.";

/// How a connection's wire was protected, as the trail records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Wire {
    /// TLS, with the negotiated version as recorded ("TLSv1.3").
    Tls(String),
    /// Plaintext.
    Plain,
    /// The trail does not say.
    Unrecorded,
}

/// What a row says of its connection's wire. This trail's rows hold no
/// TLS column (`transport` is the MCP transport, and a certificate
/// fingerprint proves TLS but not its version), so every connection reads
/// as unrecorded; with a `tls_version` column, `Some(v)` is `Tls(v)` and
/// `None` is `Plain`.
fn wire_of(_: &AuditRow) -> Wire {
    Wire::Unrecorded
}

/// Whether a recorded TLS version ("TLSv1.2", "TLSv1.3", "TLS1.2") is 1.2
/// or later. Anything else (SSLv3, an unknown spelling) is not.
pub fn tls_1_2_or_later(version: &str) -> bool {
    let Some(rest) = version
        .strip_prefix("TLSv")
        .or_else(|| version.strip_prefix("TLS"))
    else {
        return false;
    };
    let mut parts = rest.split(['.', '_']);
    let major = parts.next().and_then(|p| p.parse::<u32>().ok());
    let minor = parts.next().and_then(|p| p.parse::<u32>().ok());
    match (major, minor) {
        (Some(1), Some(minor)) => minor >= 2,
        (Some(major), _) => major > 1,
        _ => false,
    }
}

/// SC-8's status over the connections' wires: recorded connections by
/// [`by_rows`] (short: plaintext, or TLS before 1.2), at best partial
/// while some are unrecorded, not assessed when none is recorded.
pub fn judge_wires(wires: &BTreeMap<(String, i64), Wire>) -> (Status, String, Vec<Gap>) {
    let total = wires.len();
    let unrecorded = wires.values().filter(|w| **w == Wire::Unrecorded).count();
    let judged = total - unrecorded;
    let weak: Vec<String> = wires
        .iter()
        .filter_map(|((host, conn), w)| match w {
            Wire::Plain => Some(format!("{host} conn {conn}: plaintext")),
            Wire::Tls(v) if !tls_1_2_or_later(v) => Some(format!("{host} conn {conn}: {v}")),
            _ => None,
        })
        .collect();
    let mut status = by_rows(judged, weak.len());
    let mut gaps = Vec::new();
    if !weak.is_empty() {
        gaps.push(setting_gap(
            format!(
                "{} connections carried exchange rows in plaintext or before TLS 1.2",
                of(weak.len(), judged)
            ),
            &weak.iter().take(10).cloned().collect::<Vec<_>>().join("; "),
            "serve TLS on the steered ports ([tls] cert and key) and set tls.require_tls = true",
        ));
    }
    if unrecorded > 0 {
        status = if judged == 0 {
            Status::NotAssessed
        } else {
            worse(status, Status::Partial)
        };
        gaps.push(setting_gap(
            format!(
                "{} connections with no recorded TLS version",
                of(unrecorded, total)
            ),
            "tls_version not recorded (rows of an agent that writes no TLS columns)",
            "upgrade the agent to one that records tls_version, and meanwhile check tls.require_tls in its configuration",
        ));
    }
    let verdict = format!(
        "{} of {} connections recorded as TLS 1.2 or later; {} unrecorded",
        judged - weak.len(),
        total,
        unrecorded
    );
    (status, verdict, gaps)
}

pub(super) fn sc8(rows: &[AuditRow]) -> Control {
    let mut conns: BTreeSet<(&str, i64)> = BTreeSet::new();
    let mut mtls: BTreeSet<(&str, i64)> = BTreeSet::new();
    for r in rows {
        if let Some(c) = r.conn_id {
            conns.insert((&r.host, c));
            if r.cert_fingerprint.is_some() {
                mtls.insert((&r.host, c));
            }
        }
    }
    let tls_refusals: Vec<&AuditRow> = rows
        .iter()
        .filter(|r| r.decided_by.as_deref() == Some("tls"))
        .collect();
    let unknown = conns.len() - mtls.len();
    let mut wires = BTreeMap::new();
    for r in rows.iter().filter(|r| is_exchange(r)) {
        if let Some(c) = r.conn_id {
            wires.insert((r.host.clone(), c), wire_of(r));
        }
    }
    let (status, verdict, gaps) = judge_wires(&wires);
    Control {
        id: "SC-8",
        title: "Transmission confidentiality and integrity",
        asks: "Information in transit is protected against disclosure and modification.",
        how: "The agent serves TLS and mTLS on the steered ports (rustls), can refuse plaintext (`tls.require_tls`, answered 426), and verifies TLS to upstreams marked `upstream_tls`.",
        status,
        rule: SC8_RULE,
        verdict,
        gaps,
        facts: vec![
            fact("Connections seen", conns.len()),
            fact(
                "Connections with a client certificate (mTLS, hence TLS)",
                of(mtls.len(), conns.len()),
            ),
            fact(
                "Refused by the TLS stage (plaintext under require_tls, failed handshakes)",
                tls_refusals.len(),
            ),
            fact("Connections whose transport security is not recorded", unknown),
        ],
        tables: Vec::new(),
        samples_caption: "Refusals by the TLS stage".into(),
        samples: samples(tls_refusals.into_iter()),
        note: Some(
            "`transport` is the MCP transport (streamable-http, sse, stateless, http), not the wire. A client certificate fingerprint proves TLS, but not its version."
                .into(),
        ),
    }
}
