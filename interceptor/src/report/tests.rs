use std::path::Path;

use super::{
    html, markdown,
    nist::{self, Control, NistReport, Status, Verify},
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
    let r = nist::build(&dir, period, None).unwrap();
    assert_eq!(r.rows, 9);
    assert_eq!(
        (r.files_read, r.files_skipped),
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
        cols.contains(&strings(&["identity", "subject", "5", "6", "83.3%"])),
        "{cols:?}"
    );
    assert!(cols.contains(&strings(&[
        "tool (tools/call rows)",
        "tool_name",
        "4",
        "4",
        "100.0%"
    ])));

    assert_eq!(control(&r, "AU-9").status, Status::Evidence);
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
        (Status::Limited, "2")
    );

    let out = tmp.path().join("out");
    let [md_path, html_path] = write_nist(&r, &out).unwrap();
    let md = std::fs::read_to_string(md_path).unwrap();
    for c in [
        "AC-3", "AC-6", "AU-2", "AU-3", "AU-9", "AU-10", "AU-12", "IA-2", "SC-8",
    ] {
        assert!(md.contains(&format!("\n## {c} ")), "{c} heading");
    }
    assert!(md.contains("| tools/call | 3 | 1 | 0 |"), "{md}");
    assert!(md.contains("| no-delete | 1 |"));
    assert!(!md.contains(HOSTILE) && md.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));

    let page = std::fs::read_to_string(html_path).unwrap();
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
    let r = nist::build(&dir, period, None).unwrap();
    assert_eq!(r.rows, 10, "the day's rows, the tampered file not opened");
    assert!(matches!(&r.verify, Verify::Broken(b) if b.path.contains("dt=2026-03-02")));
    assert_eq!(control(&r, "AU-9").status, Status::Failed);
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
