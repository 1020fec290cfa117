//! IA-2, IA-3 and AU-3 over rows of same-host callers (issue 23).

use super::*;

/// A loopback row whose process the kernel recorded (`exe` may be lost).
fn local(min: i64, auth: &str, exe: Option<&str>) -> AuditRow {
    AuditRow {
        src_addr: Some("127.0.0.1".into()),
        subject: Some("svc:ai-agent".into()),
        process_pid: Some(4242 + min),
        process_uid: Some(998),
        process_user: Some("aiagent".into()),
        process_exe: exe.map(str::to_owned),
        process_cgroup: Some("/system.slice/ai-agent.service".into()),
        process_unit: Some("ai-agent.service".into()),
        ..exchange(min, auth, Some("v1"))
    }
}

#[test]
fn process_callers_are_verified_and_ia3_wants_the_kernels_record_of_each_local_row() {
    let exe = Some("/usr/bin/python3.12");
    let mut no_capture = exchange(2, "oidc", Some("v1"));
    no_capture.src_addr = Some("::ffff:127.0.0.1".into());
    let rows = vec![
        local(0, "process", exe),
        local(1, "process", exe),
        no_capture,
        exchange(3, "oidc", Some("v1")),
    ];
    let r = judged(rows.clone());
    let ia2 = control(&r, "IA-2");
    assert_eq!(ia2.status, Status::Met, "process is a verified identity");
    assert!(
        ia2.facts
            .iter()
            .any(|(k, v)| k.starts_with("Non-person") && v == "1")
    );
    let ia3 = control(&r, "IA-3");
    assert_eq!(ia3.status, Status::Partial);
    assert_eq!(ia3.rule, controls::IA3_RULE);
    assert_eq!(
        ia3.gaps[0].cause,
        "1 of 3 (33.3%) exchange rows from this host carry no complete kernel record of their process"
    );
    assert_eq!(ia3.gaps[0].rows[0].event_id, "ev-2");
    assert_eq!(control(&r, "AU-3").status, Status::Met);

    // A recorded process whose executable was not resolved: AU-3 and
    // IA-3 fall short on that row.
    let mut lost = rows;
    lost[1] = local(1, "process", None);
    let r = judged(lost);
    let au3 = control(&r, "AU-3");
    assert_eq!(au3.status, Status::Partial);
    assert!(
        au3.gaps
            .iter()
            .any(|g| g.cause == "1 of 2 (50.0%) exchange rows lack source process (same-host rows) (process_uid, process_exe)"),
        "{:?}",
        au3.gaps
    );
    assert_eq!(control(&r, "IA-3").status, Status::Partial);

    // Remote callers only: nothing for IA-3 to judge; every local row
    // recorded: met; none: not met.
    let r = judged(vec![exchange(0, "oidc", Some("v1"))]);
    assert_eq!(control(&r, "IA-3").status, Status::NotAssessed);
    let r = judged(vec![local(0, "process", exe)]);
    assert_eq!(control(&r, "IA-3").status, Status::Met);
    let mut bare = exchange(0, "oidc", Some("v1"));
    bare.src_addr = Some("127.0.0.1".into());
    assert_eq!(control(&judged(vec![bare]), "IA-3").status, Status::NotMet);
}
