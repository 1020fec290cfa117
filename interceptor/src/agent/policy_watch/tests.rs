use super::*;

const ONE: &str = r#"@id("ping") permit (principal, action == Mcp::Action::"ping", resource);"#;
const TWO: &str = r#"@id("ping") permit (principal, action == Mcp::Action::"ping", resource);
@id("list") permit (principal, action == Mcp::Action::"tools/list", resource);"#;

/// A policy file holding `text`, loaded and installed as at start.
fn installed(text: &str) -> (tempfile::TempDir, Vec<PathBuf>, Running) {
    let dir = tempfile::tempdir().unwrap();
    let files = vec![dir.path().join("policy.cedar")];
    std::fs::write(&files[0], text).unwrap();
    let running = empty(Default::default());
    install(&running, Some(load(&files).unwrap()), &Events::default());
    (dir, files, running)
}

/// One poll with the default `[mask]` and no audit.
fn poll_now(running: &Running, files: &[PathBuf]) -> bool {
    poll(running, files, &MaskConfig::default(), &Events::default())
}

/// The agent loads at start and starts polling later: a change made in
/// between is the next poll's to find, not its baseline.
#[test]
fn a_change_before_the_first_poll_is_picked_up() {
    let (_dir, files, running) = installed(ONE);
    let first = running.version();

    std::fs::write(&files[0], TWO).unwrap();
    assert!(poll_now(&running, &files), "the first poll reloads");
    assert_ne!(running.version(), first);
    assert_eq!(running.policies.read().unwrap().count, 2);
    assert!(!poll_now(&running, &files), "unchanged: nothing to do");
}

#[test]
fn unchanged_files_are_not_reloaded() {
    let (_dir, files, running) = installed(ONE);
    assert!(!poll_now(&running, &files));
}

/// A broken change keeps the running set, and is refused once, not at
/// every poll; fixing it installs the fix.
#[test]
fn a_broken_change_keeps_the_running_set() {
    let (_dir, files, running) = installed(ONE);
    let first = running.version();

    std::fs::write(&files[0], "permit (principal, action,").unwrap();
    assert!(!poll_now(&running, &files));
    assert_eq!(running.version(), first, "the old set decides");
    assert_eq!(running.policies.read().unwrap().count, 1);
    assert_eq!(
        running.seen().as_ref(),
        Some(&stamp(&files)),
        "the refused read is remembered"
    );

    std::fs::write(&files[0], TWO).unwrap();
    assert!(poll_now(&running, &files));
    assert_eq!(running.policies.read().unwrap().count, 2);
}
