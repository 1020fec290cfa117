use super::*;

fn stamp() -> Stamp {
    Stamp {
        host: "h".into(),
        agent_version: "0".into(),
        max_field_bytes: 1 << 10,
        scrub: Scrub::default(),
    }
}

fn row(s: &Stamp) -> AuditRow {
    let mut r = s.lifecycle("tool_pinned", "server 8080 tool ada@example.org pinned");
    r.tool_name = Some("ada@example.org".into());
    r.resource_uri = Some("file:///home/ada@example.org".into());
    r.prompt_name = Some("plain".into());
    r
}

/// Rows made outside the pipeline keep no raw name or message once the
/// agent has set the scrub; before it (masking off) they are as made.
#[test]
fn the_scrub_masks_names_and_messages_of_every_row() {
    let s = stamp();
    let mut r = row(&s);
    s.scrub.row(&mut r);
    assert_eq!(
        r.tool_name.as_deref(),
        Some("ada@example.org"),
        "unset: unchanged"
    );

    s.scrub.set(Arc::new(|t: &str| {
        t.contains("ada@example.org")
            .then(|| t.replace("ada@example.org", "[EMAIL]"))
    }));
    let mut r = row(&s);
    s.scrub.row(&mut r);
    assert_eq!(
        r.message.as_deref(),
        Some("server 8080 tool [EMAIL] pinned")
    );
    assert_eq!(r.tool_name.as_deref(), Some("[EMAIL]"));
    assert_eq!(r.resource_uri.as_deref(), Some("file:///home/[EMAIL]"));
    assert_eq!(r.prompt_name.as_deref(), Some("plain"));
    // A clone of the stamp shares the scrub (the audit hands out clones).
    let mut r = row(&s);
    s.clone().scrub.row(&mut r);
    assert_eq!(r.tool_name.as_deref(), Some("[EMAIL]"));
}
