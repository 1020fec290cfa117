use std::path::Path;

use super::{
    html, markdown,
    nist::{self, Check, Control, NistReport, Status, Verify},
    *,
};
use crate::{
    audit::{Audit, chain},
    config::Audit as AuditConfig,
};

const HOSTILE: &str = "<script>alert(1)</script>";

fn at(s: &str) -> i64 {
    parse_time(s).unwrap()
}

/// A row at `time` (µs) of `kind`, recorded by `a`.
fn row(a: &Audit, kind: &str, time: i64) -> AuditRow {
    a.stamp().row(kind, time)
}

fn call(
    a: &Audit,
    time: i64,
    subject: &str,
    tool: &str,
    decision: &str,
    rules: &[&str],
) -> AuditRow {
    let mut r = row(
        a,
        if decision == "deny" {
            "denied"
        } else {
            "exchange"
        },
        time,
    );
    r.subject = Some(subject.into());
    r.auth_method = Some("oidc".into());
    r.groups = vec!["dev".into()];
    r.token_id = Some(format!("jti-{time}"));
    r.src_addr = Some("10.0.0.7".into());
    r.dst_addr = Some("127.0.0.1".into());
    r.conn_id = Some(1);
    r.method = Some("tools/call".into());
    r.direction = Some("client_to_server".into());
    r.tool_name = Some(tool.into());
    r.decision = Some(decision.into());
    r.decided_by = (decision == "deny").then(|| "policy".into());
    r.rule_ids = rules.iter().map(|s| s.to_string()).collect();
    r.policy_version = Some("v1".into());
    r.http_status = Some(200);
    r
}

/// Writes the trail the tests read: 9 rows in 2026-03-01 10:00-12:00 and
/// one before and one after, in partitions of their own.
fn trail(dir: &Path) -> PathBuf {
    let cfg = AuditConfig {
        dir: dir.join("audit"),
        signing_key: dir.join("key"),
        host: Some("testhost".into()),
        roll_seconds: 3600,
        ..AuditConfig::default()
    };
    let a = Audit::start(&cfg, None).unwrap();
    let t = at("2026-03-01T10:00:00Z");
    let s = 1_000_000;
    a.append(row(&a, "agent_start", t));
    a.append(call(&a, t + s, "alice", "echo", "allow", &["dev-tools"]));
    a.append(call(&a, t + 2 * s, "alice", "add", "allow", &["dev-tools"]));
    a.append(call(
        &a,
        t + 3 * s,
        "alice",
        "echo",
        "allow",
        &["dev-tools"],
    ));
    a.append(call(
        &a,
        t + 4 * s,
        "bob",
        "delete_db",
        "deny",
        &["no-delete"],
    ));
    let mut refused = row(&a, "rejected", t + 5 * s);
    refused.decision = Some("deny".into());
    refused.decided_by = Some("identity".into());
    let refusal = crate::error::Refusal::new(crate::error::Reason::Unauthenticated, "no token");
    refused.error = Some(refusal.error().to_string());
    refused.error_code = Some(refusal.code() as i32);
    refused.http_status = Some(401);
    refused.src_addr = Some("10.0.0.9".into());
    refused.conn_id = Some(2);
    a.append(refused);
    // In the next hour: a subject that is markup, on a tools/list.
    let mut hostile = call(&a, t + 3600 * s, HOSTILE, "x", "allow", &[]);
    (hostile.method, hostile.tool_name) = (Some("tools/list".into()), None);
    hostile.groups = vec!["<b>g</b>".into()];
    a.append(hostile);
    let mut grant = row(&a, "grant_added", t + 3601 * s);
    grant.subject = Some("alice".into());
    grant.tool_name = Some("db.*".into());
    grant.decided_by = Some("grant".into());
    a.append(grant);
    a.append(row(&a, "agent_stop", t + 3602 * s));
    // Outside the period: the hour before, and the next day.
    a.append(call(&a, t - s, "early", "echo", "allow", &[]));
    a.append(call(
        &a,
        at("2026-03-02T05:00:00Z"),
        "late",
        "echo",
        "allow",
        &[],
    ));
    a.shutdown();
    cfg.dir
}

/// The check without a pinned key, allowing two minutes of silence.
fn check(public_key: Option<String>) -> Check {
    Check {
        public_key,
        max_gap_us: 120_000_000,
        s3: false,
    }
}

/// Asserts that each control of `ids` has `status`.
fn assert_status(r: &NistReport, ids: &[&str], status: Status) {
    for id in ids {
        assert_eq!(control(r, id).status, status, "{id}");
    }
}

/// Asserts that each control of `ids` has `status`, and a first gap whose
/// cause starts with `cause`.
fn assert_first_cause(r: &NistReport, ids: &[&str], status: Status, cause: &str) {
    assert_status(r, ids, status);
    for id in ids {
        let gaps = &control(r, id).gaps;
        assert!(gaps[0].cause.starts_with(cause), "{id}: {gaps:?}");
    }
}

fn control<'a>(r: &'a NistReport, id: &str) -> &'a Control {
    r.controls.iter().find(|c| c.id == id).unwrap()
}

fn fact<'a>(c: &'a Control, key: &str) -> &'a str {
    c.facts
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
        .unwrap_or_else(|| panic!("{} has no fact {key:?}: {:?}", c.id, c.facts))
}

fn table<'a>(c: &'a Control, caption: &str) -> &'a [Vec<String>] {
    &c.tables.iter().find(|t| t.caption == caption).unwrap().rows
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

#[test]
fn times_parse_as_utc_dates_or_seconds() {
    assert_eq!(parse_time("1970-01-01").unwrap(), 0);
    assert_eq!(parse_time("1970-01-02T00:00:01Z").unwrap(), 86_401_000_000);
    let t = parse_time("2026-11-25T14:03:07Z").unwrap();
    assert_eq!(fmt_time(t), "2026-11-25T14:03:07Z");
    assert_eq!(
        fmt_time(parse_time("2024-02-29").unwrap()),
        "2024-02-29T00:00:00Z"
    );
    for bad in [
        "2026-02-30",
        "2026-13-01",
        "26-01-01",
        "2026-01-01T24:00:00Z",
        "2026-01-01T10:00:00",
        "2026-01-01T10:00Z",
        "2026-01-01 10:00:00",
        "yesterday",
    ] {
        assert!(
            matches!(parse_time(bad), Err(ReportError::Time(_))),
            "{bad}"
        );
    }
    assert!(matches!(
        Period::parse("2026-01-02", "2026-01-01"),
        Err(ReportError::EmptyPeriod { .. })
    ));
}

#[test]
fn the_report_counts_the_period_and_skips_other_partitions() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = trail(tmp.path());
    let period = Period::parse("2026-03-01T10:00:00Z", "2026-03-01T12:00:00Z").unwrap();
    let r = nist::build(&dir, period, &check(None)).unwrap();
    assert_eq!(r.rows, 9);
    assert_eq!(
        (r.sources.files_read, r.sources.files_skipped),
        (2, 2),
        "hour 09 and day 02 unopened"
    );
    assert!(matches!(&r.verify, Verify::Intact(v) if v.rows == 11));

    let ac3 = control(&r, "AC-3");
    assert_eq!(fact(ac3, "Allowed"), "4");
    assert_eq!(fact(ac3, "Denied"), "2", "policy and identity refusals");
    let by_method = table(ac3, "Decisions by method");
    assert!(
        by_method.contains(&strings(&["tools/call", "3", "1", "0"])),
        "{by_method:?}"
    );
    let rules = table(ac3, "Denials by policy rule");
    assert!(rules.contains(&strings(&["no-delete", "1"])), "{rules:?}");
    assert!(
        rules.contains(&strings(&["(identity stage)", "1"])),
        "{rules:?}"
    );
    assert_eq!(ac3.samples.len(), 2);
    assert_eq!(
        (
            ac3.samples[0].subject.as_str(),
            ac3.samples[0].rule_ids.as_str()
        ),
        ("bob", "no-delete")
    );

    let ac6 = control(&r, "AC-6");
    assert_eq!(fact(ac6, "Distinct subjects"), "3");
    let alice = table(ac6, "Tools per subject")
        .iter()
        .find(|r| r[0] == "alice")
        .unwrap();
    assert_eq!(alice[3..5], strings(&["3", "add, echo"]));
    assert_eq!(fact(ac6, "Approval and grant rows"), "1");

    let au2 = control(&r, "AU-2");
    assert!(table(au2, "Rows by event kind").contains(&strings(&["exchange", "4"])));
    assert!(fact(au2, "Kinds defined but not seen in the period").contains("approval_used"));

    let au3 = control(&r, "AU-3");
    let cols = table(au3, "Columns filled on exchange rows");
    assert!(
        cols.contains(&strings(&["identity", "subject", "5", "5", "100.0%"])),
        "{cols:?}"
    );
    assert!(cols.contains(&strings(&[
        "tool (tools/call rows)",
        "tool_name",
        "4",
        "4",
        "100.0%"
    ])));

    let au9 = control(&r, "AU-9");
    assert_eq!(au9.status, Status::Partial, "no pinned key");
    assert!(
        au9.gaps[0].fix.starts_with("pass --public-key"),
        "{:?}",
        au9.gaps
    );
    let au10 = control(&r, "AU-10");
    assert_eq!(
        fact(au10, "Exchange rows with subject and auth_method"),
        "5 of 5 (100.0%)"
    );
    let au12 = control(&r, "AU-12");
    assert_eq!(
        (
            fact(au12, "agent_start rows"),
            fact(au12, "agent_stop rows")
        ),
        ("1", "1")
    );
    assert_eq!(table(au12, "Rows per hour (UTC)").len(), 2);
    let ia2 = control(&r, "IA-2");
    assert_eq!(fact(ia2, "Refused authentications"), "1");
    assert!(table(ia2, "Exchange rows by auth_method").contains(&strings(&["oidc", "5"])));
    let sc8 = control(&r, "SC-8");
    assert_eq!(
        (sc8.status, fact(sc8, "Connections seen")),
        // Rows with a null tls_version were plaintext.
        (Status::NotMet, "2")
    );
    for id in ["AC-3", "AC-6", "IA-2"] {
        let c = control(&r, id);
        assert_eq!((c.status, c.gaps.len()), (Status::Met, 0), "{id}: {c:?}");
    }
    assert_eq!(
        control(&r, "AC-3").verdict,
        "5 of 5 client requests decided by a loaded policy"
    );
    // Silence from 10:00:05 to 11:00:00, and after the stop at 11:00:02.
    let gaps = &au12.gaps;
    assert_eq!(au12.status, Status::Partial, "{gaps:?}");
    assert_eq!(gaps.len(), 2, "{gaps:?}");
    assert!(
        gaps[0]
            .cause
            .starts_with("1 stretch (3598 s in all) after agent_stop"),
        "{gaps:?}"
    );
    assert_eq!(
        gaps[0].which,
        "testhost: 2026-03-01T11:00:02Z to 2026-03-01T12:00:00Z (3598 s)"
    );
    assert!(gaps[1].cause.contains("without any signed manifest entry"));
    assert_eq!(
        gaps[1].which,
        "testhost: 2026-03-01T10:00:05Z to 2026-03-01T11:00:00Z (3595 s)"
    );

    let out = tmp.path().join("out");
    let [md_path, html_path, json_path] = write_nist(&r, &out).unwrap();
    let md = std::fs::read_to_string(md_path).unwrap();
    assert!(
        md.contains("\n## Gaps\n\n### AU-2 Event logging: partial\n"),
        "{md}"
    );
    // The rows carry no tls_version: plaintext connections.
    assert!(md.contains("**Status:** not met\n\n**Rule:** Met when every connection"));
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(json_path).unwrap()).unwrap();
    assert_eq!(json["worst"], "not_met");
    assert_eq!(json["controls"][0]["id"], "AC-3");
    assert_eq!(json["controls"][0]["status"], "met");
    assert_eq!(json["controls"][4]["gaps"][0]["fix"], au9.gaps[0].fix);
    for c in [
        "AC-3", "AC-6", "AU-2", "AU-3", "AU-9", "AU-10", "AU-12", "IA-2", "SC-8",
    ] {
        assert!(md.contains(&format!("\n## {c} ")), "{c} heading");
    }
    assert!(md.contains("| tools/call | 3 | 1 | 0 |"), "{md}");
    assert!(md.contains("| no-delete | 1 |"));
    assert!(!md.contains(HOSTILE) && md.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));

    let page = std::fs::read_to_string(html_path).unwrap();
    assert!(page.contains("<section class=\"gaps\" id=\"gaps\"><h2>Gaps</h2>"));
    assert!(
        page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
        "escaped"
    );
    assert!(page.contains("&lt;b&gt;g&lt;/b&gt;"));
    for banned in ["<script", "<b>g", "<link", " src=", "url(", "@import"] {
        assert!(!page.contains(banned), "{banned} in the page");
    }
    assert!(page.starts_with("<!DOCTYPE html>") && page.trim_end().ends_with("</html>"));
}

#[test]
fn a_tampered_file_outside_the_period_fails_au9_without_being_read() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = trail(tmp.path());
    let late = chain::data_files(&dir.join("events/dt=2026-03-02")).remove(0);
    let mut bytes = std::fs::read(&late).unwrap();
    bytes.push(0);
    std::fs::write(&late, bytes).unwrap();
    let period = Period::parse("2026-03-01", "2026-03-02").unwrap();
    let r = nist::build(&dir, period, &check(None)).unwrap();
    assert_eq!(r.rows, 10, "the day's rows, the tampered file not opened");
    assert!(matches!(&r.verify, Verify::Broken(b) if b.path.contains("dt=2026-03-02")));
    assert_first_cause(
        &r,
        &["AU-9", "AU-10"],
        Status::NotMet,
        "audit verify: FAIL: ",
    );
    assert_eq!(r.worst(), Status::NotMet);
    let text = markdown::markdown(&r);
    assert!(text.contains("FAIL: "), "{text}");
    assert!(html::render(&r).contains("BROKEN"));
}

#[test]
fn cells_show_controls_and_bidi_escaped_and_cannot_break_the_table() {
    let cell = markdown::md("a|b\nc\u{1b}[2J\u{202e}d\u{9b}");
    assert_eq!(cell, "a\\|b c\\\\x1b\\[2J\\\\u{202e}d\\\\u{9b}");
    assert!(!cell.chars().any(crate::escape::is_unsafe));
    let page = html::esc("x\u{202e}y\u{2066}\u{1b}");
    assert_eq!(page, "x\u{fffd}y\u{fffd}\u{fffd}");
}

#[test]
fn a_pinned_key_meets_au9_and_au10_and_a_wrong_one_fails_them() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = trail(tmp.path());
    let key = std::fs::read_to_string(dir.join("manifest/testhost/public-key.hex")).unwrap();
    let period = Period::parse("2026-03-01T10:00:00Z", "2026-03-01T12:00:00Z").unwrap();
    let r = nist::build(&dir, period, &check(Some(key.trim().into()))).unwrap();
    for id in ["AU-9", "AU-10"] {
        let c = control(&r, id);
        assert_eq!((c.status, c.gaps.len()), (Status::Met, 0), "{id}: {c:?}");
    }
    let wrong = "11".repeat(32);
    let r = nist::build(&dir, period, &check(Some(wrong))).unwrap();
    assert_eq!(control(&r, "AU-9").status, Status::NotMet);
    // On S3 the report cannot see Object Lock: partial, whatever the key.
    let s3 = Check {
        s3: true,
        ..check(Some(key.trim().into()))
    };
    let r = nist::build(&dir, period, &s3).unwrap();
    let au9 = control(&r, "AU-9");
    assert_eq!(au9.status, Status::Partial);
    assert!(au9.gaps[0].fix.starts_with("enable S3 Object Lock"));
}

/// A row of `kind` at minute `min` of 2026-03-01T10 on host `h`, with
/// event id `{id}-{min}`.
pub(super) fn at_minute(min: i64, kind: &str, id: &str) -> AuditRow {
    AuditRow {
        event_time_us: at("2026-03-01T10:00:00Z") + min * 60_000_000,
        event_id: format!("{id}-{min}"),
        kind: kind.into(),
        host: "h".into(),
        ..AuditRow::default()
    }
}

/// An exchange row at minute `min` of 2026-03-01T10, a client's tools/call
/// as `auth` (`anonymous`, `oidc`), decided under `policy` if given.
fn exchange(min: i64, auth: &str, policy: Option<&str>) -> AuditRow {
    AuditRow {
        direction: Some("client_to_server".into()),
        method: Some("tools/call".into()),
        tool_name: Some("echo".into()),
        subject: Some(
            if auth == "anonymous" {
                "anonymous"
            } else {
                "alice"
            }
            .into(),
        ),
        auth_method: Some(auth.into()),
        token_id: (auth == "oidc").then(|| format!("jti-{min}")),
        decision: Some("allow".into()),
        policy_version: policy.map(str::to_owned),
        src_addr: Some("10.0.0.7".into()),
        dst_addr: Some("127.0.0.1".into()),
        conn_id: Some(min),
        http_status: Some(200),
        ..at_minute(min, "exchange", "ev")
    }
}

/// The report over `rows` (one host, every row time vouched for by an
/// entry, an intact chain checked with a pinned key) for 10:00-10:10.
fn judged(rows: Vec<AuditRow>) -> NistReport {
    let period = Period::parse("2026-03-01T10:00:00Z", "2026-03-01T10:10:00Z").unwrap();
    let times = rows.iter().map(|r| r.event_time_us).collect();
    let evidence = nist::Evidence {
        loaded: Loaded {
            rows,
            ..Loaded::default()
        },
        verify: Verify::Intact(chain::Report {
            entries: 3,
            ..chain::Report::default()
        }),
        keys: Vec::new(),
        private_files: (1, 1),
        entries: std::collections::BTreeMap::from([("h".to_string(), times)]),
    };
    nist::from_rows(
        Path::new("/audit"),
        period,
        &check(Some("00".repeat(32))),
        evidence,
    )
}

#[test]
fn anonymous_rows_make_ia2_and_au10_partial_then_not_met() {
    let v = Some("v1");
    let all_minutes = |auth: &dyn Fn(i64) -> &'static str| -> Vec<AuditRow> {
        (0..10).map(|m| exchange(m, auth(m), v)).collect()
    };
    let r = judged(all_minutes(&|_| "oidc"));
    let all = [
        "AC-3", "AC-6", "AU-2", "AU-3", "AU-9", "AU-10", "AU-12", "IA-2",
    ];
    assert_status(&r, &all, Status::Met);
    let r = judged(all_minutes(&|m| if m < 3 { "anonymous" } else { "oidc" }));
    let ia2 = control(&r, "IA-2");
    assert_eq!(ia2.status, Status::Partial);
    assert_eq!(
        ia2.gaps[0].cause,
        "3 of 10 (30.0%) exchange rows carry no verified identity (anonymous)"
    );
    assert_eq!(
        ia2.gaps[0]
            .rows
            .iter()
            .map(|s| s.event_id.as_str())
            .collect::<Vec<_>>(),
        ["ev-0", "ev-1", "ev-2"]
    );
    assert_eq!(control(&r, "AU-10").status, Status::Partial);
    let r = judged(all_minutes(&|_| "anonymous"));
    assert_status(&r, &["IA-2", "AU-10"], Status::NotMet);
    assert!(
        control(&r, "IA-2").gaps[0]
            .fix
            .starts_with("add [[identity.oidc]]")
    );
}

#[test]
fn rows_without_a_policy_version_make_ac3_and_ac6_partial_then_not_met() {
    let r = judged(
        (0..4)
            .map(|m| exchange(m, "oidc", (m > 0).then_some("v1")))
            .collect(),
    );
    assert_first_cause(&r, &["AC-3", "AC-6"], Status::Partial, "1 of 4 (25.0%) ");
    let r = judged((0..4).map(|m| exchange(m, "oidc", None)).collect());
    for id in ["AC-3", "AC-6"] {
        let c = control(&r, id);
        assert_eq!(c.status, Status::NotMet, "{id}");
        assert!(c.gaps[0].fix.starts_with("load a policy"), "{:?}", c.gaps);
    }
    // A row without a credential id: identified, but not non-repudiable.
    let mut rows: Vec<AuditRow> = (0..4).map(|m| exchange(m, "oidc", Some("v1"))).collect();
    rows[1].token_id = None;
    let au10 = control(&judged(rows), "AU-10").clone();
    assert_eq!(au10.status, Status::Partial);
    assert_eq!(
        au10.gaps[0].cause,
        "1 of 4 (25.0%) identified exchange rows carry no credential id (token_id or cert_fingerprint)"
    );
}

#[test]
fn an_empty_period_is_not_met_for_recording_and_not_assessed_elsewhere() {
    let r = judged(Vec::new());
    assert_status(&r, &["AU-2", "AU-12"], Status::NotMet);
    let unjudged = ["AC-3", "AC-6", "AU-3", "AU-10", "IA-2", "SC-8"];
    assert_status(&r, &unjudged, Status::NotAssessed);
}

#[test]
fn sc8_is_judged_per_connection_from_the_tls_version() {
    use super::wire::{Wire, judge_wires, tls_1_2_or_later};
    for ok in ["TLSv1.2", "TLSv1.3", "TLS1.2", "TLSv1_3"] {
        assert!(tls_1_2_or_later(ok), "{ok}");
    }
    for weak in ["TLSv1.1", "TLSv1.0", "SSLv3", "", "tls1.3", "TLSv"] {
        assert!(!tls_1_2_or_later(weak), "{weak}");
    }
    let wires = |w: &[Wire]| {
        w.iter()
            .enumerate()
            .map(|(i, w)| (("h".to_string(), i as i64), w.clone()))
            .collect()
    };
    let tls = |v: &str| Wire::Tls(v.into());
    let status = |w: &[Wire]| judge_wires(&wires(w)).0;
    assert_eq!(status(&[tls("TLSv1.3"), tls("TLSv1.2")]), Status::Met);
    assert_eq!(status(&[tls("TLSv1.3"), Wire::Plain]), Status::Partial);
    assert_eq!(status(&[tls("TLSv1.1"), Wire::Plain]), Status::NotMet);
    assert_eq!(status(&[Wire::Unrecorded]), Status::NotAssessed);
    assert_eq!(status(&[tls("TLSv1.3"), Wire::Unrecorded]), Status::Partial);
    assert_eq!(status(&[]), Status::NotAssessed);
    let (_, verdict, gaps) = judge_wires(&wires(&[tls("TLSv1.3"), Wire::Plain]));
    assert_eq!(
        verdict,
        "1 of 2 connections recorded as TLS 1.2 or later; 0 unrecorded"
    );
    assert_eq!(gaps[0].which, "h conn 1: plaintext");
}

mod heartbeat;
mod process;
