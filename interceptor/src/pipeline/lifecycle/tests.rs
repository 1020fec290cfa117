use std::sync::Mutex;

use super::*;
use crate::pipeline::CallFacts;

#[derive(Default)]
struct Kept(Mutex<Vec<LifecycleEvent>>);

impl LifecycleSink for Kept {
    fn lifecycle(&self, event: LifecycleEvent) {
        self.0.lock().unwrap().push(event);
    }
}

fn event(target: &str) -> LifecycleEvent {
    LifecycleEvent::approval_requested(
        "tool ada@example.org asked for",
        CallFacts {
            subject: "ada@example.org".into(),
            method: "tools/call".into(),
            target: Some(target.into()),
            ..CallFacts::default()
        },
    )
}

fn grant(tool: &str) -> LifecycleEvent {
    let mut e = LifecycleEvent::new("grant_added", "granted");
    e.about = About::Grant {
        id: None,
        subject: "ada@example.org".into(),
        tool: tool.into(),
    };
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
    let made = [
        event("ada@example.org"),
        event("plain"),
        grant("file:///home/ada@example.org"),
        LifecycleEvent::new("tool_pinned", "tool ada@example.org pinned"),
    ];
    for e in &made {
        Events::new(Some(kept.clone()), None).emit(e.clone());
        Events::new(Some(kept.clone()), Some(email_mask())).emit(e.clone());
    }
    let got = std::mem::take(&mut *kept.0.lock().unwrap());
    for (i, e) in made.iter().enumerate() {
        assert_eq!(&got[2 * i], e, "no mask: unchanged");
    }
    assert_eq!(got[1].message, "tool [EMAIL] asked for");
    let About::Approval { call: c, .. } = &got[1].about else {
        panic!("{:?}", got[1].about)
    };
    assert_eq!(c.target.as_deref(), Some("[EMAIL]"));
    // The subject is who acted, as every exchange row keeps it.
    assert_eq!(c.subject, "ada@example.org");
    assert_eq!(got[3].about, made[1].about, "nothing to mask: kept");
    let About::Grant { subject, tool, .. } = &got[5].about else {
        panic!("{:?}", got[5].about)
    };
    assert_eq!(tool, "file:///home/[EMAIL]");
    assert_eq!(subject, "ada@example.org");
    assert_eq!(got[7].message, "tool [EMAIL] pinned");
}

/// No sink: nothing is recorded, and emitting is harmless.
#[test]
fn without_a_sink_events_are_dropped() {
    let e = Events::default();
    assert!(!e.is_recorded());
    e.emit(event("x"));
}
