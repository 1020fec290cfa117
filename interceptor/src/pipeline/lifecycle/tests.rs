use std::sync::Mutex;

use super::*;

#[derive(Default)]
struct Kept(Mutex<Vec<LifecycleEvent>>);

impl LifecycleSink for Kept {
    fn lifecycle(&self, event: LifecycleEvent) {
        self.0.lock().unwrap().push(event);
    }
}

fn event() -> LifecycleEvent {
    let mut e = LifecycleEvent::new("tool_pinned", "server 8080 tool ada@example.org pinned");
    e.tool_name = Some("ada@example.org".into());
    e.resource_uri = Some("file:///home/ada@example.org".into());
    e.prompt_name = Some("plain".into());
    e.subject = Some("ada@example.org".into());
    e
}

fn email_mask() -> TextMask {
    Arc::new(|t: &str| {
        t.contains("ada@example.org")
            .then(|| t.replace("ada@example.org", "[EMAIL]"))
    })
}

/// Events made outside the pipeline keep no raw name or message once a
/// mask is in force; without one (masking off) they are recorded as made.
#[test]
fn events_are_masked_before_the_sink_sees_them() {
    let kept = Arc::new(Kept::default());
    Events::new(Some(kept.clone()), None).emit(event());
    Events::new(Some(kept.clone()), Some(email_mask())).emit(event());
    let got = std::mem::take(&mut *kept.0.lock().unwrap());
    assert_eq!(got[0], event(), "no mask: unchanged");
    let masked = &got[1];
    assert_eq!(masked.message, "server 8080 tool [EMAIL] pinned");
    assert_eq!(masked.tool_name.as_deref(), Some("[EMAIL]"));
    assert_eq!(masked.resource_uri.as_deref(), Some("file:///home/[EMAIL]"));
    assert_eq!(masked.prompt_name.as_deref(), Some("plain"));
    // The subject is who acted, as every exchange row keeps it.
    assert_eq!(masked.subject.as_deref(), Some("ada@example.org"));
}

/// No sink: nothing is recorded, and emitting is harmless.
#[test]
fn without_a_sink_events_are_dropped() {
    let e = Events::default();
    assert!(!e.is_recorded());
    e.emit(event());
}

#[test]
fn the_target_lands_in_the_column_of_its_method() {
    let mut e = LifecycleEvent::new("approval_requested", "m");
    e.set_target("tools/call", Some("db.drop".into()));
    e.set_target("prompts/get", Some("p".into()));
    e.set_target("resources/read", Some("file:///x".into()));
    e.set_target("ping", Some("ignored".into()));
    assert_eq!(e.tool_name.as_deref(), Some("db.drop"));
    assert_eq!(e.prompt_name.as_deref(), Some("p"));
    assert_eq!(e.resource_uri.as_deref(), Some("file:///x"));
}
