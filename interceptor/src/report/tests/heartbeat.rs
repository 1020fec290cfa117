//! Heartbeat rows (issue 24): they prove the host recorded through a quiet
//! stretch (AU-2, AU-12) and are no client request (AC-3, AU-3, AU-10).

use super::*;

/// A `heartbeat` row at minute `min`, as the agent writes it.
fn beat(min: i64) -> AuditRow {
    AuditRow {
        policy_version: Some("v1".into()),
        bundle_version: Some(7),
        message: Some(r#"{"steer":null}"#.into()),
        ..at_minute(min, "heartbeat", "hb")
    }
}

#[test]
fn heartbeats_cover_a_quiet_stretch_and_are_no_client_requests() {
    let calls = || {
        vec![
            exchange(0, "oidc", Some("v1")),
            exchange(9, "oidc", Some("v1")),
        ]
    };
    // Two calls nine minutes apart: a silent stretch longer than the gap.
    let quiet = judged(calls());
    assert_eq!(control(&quiet, "AU-12").status, Status::Partial);
    // With a heartbeat every minute in between: recorded throughout.
    let mut rows = calls();
    rows.extend((1..9).map(beat));
    let r = judged(rows);
    let all = ["AC-3", "AC-6", "AU-2", "AU-3", "AU-10", "AU-12", "IA-2"];
    assert_status(&r, &all, Status::Met);
    // The beats have no caller, method nor destination: counted as
    // requests, they would make IA-2, AU-3 and AU-10 partial.
    assert_eq!(fact(control(&r, "AU-3"), "Exchange rows"), "2");
    assert_eq!(fact(control(&r, "AC-3"), "Allowed"), "2");
    assert!(
        table(control(&r, "AU-2"), "Rows by event kind").contains(&strings(&["heartbeat", "8"]))
    );
}
