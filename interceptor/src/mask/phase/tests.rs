use std::collections::BTreeMap;

use serde_json::json;

use super::*;
use crate::{
    config::{Mask as MaskConfig, MaskProfile},
    conn::ConnInfo,
    pipeline::{Decision, Direction, Effect, EventKind, Notes, Transport},
};

const EMAIL: &str = "ada.lovelace@example.org";

fn phase(enabled: bool) -> MaskPhase {
    // A second profile that masks nothing but the `ticket` key: a call
    // given it sees e-mail addresses the default profile masks.
    let tickets = MaskProfile {
        keys: vec!["ticket".into()],
        ..MaskProfile::default()
    };
    let cfg = MaskConfig {
        enabled,
        profiles: BTreeMap::from([("tickets".to_string(), tickets)]),
        ..MaskConfig::default()
    };
    MaskPhase::new(Arc::new(Masker::new(&cfg, [7; 32]).expect("masker")))
}

fn data(p: &MaskPhase, profile: Option<&str>, text: &[u8]) -> Option<Bytes> {
    let (conn, notes) = (ConnInfo::loopback(), Notes::default());
    let ctx = MessageCtx {
        mask_profile: profile,
        ..MessageCtx::for_test(&conn, &notes)
    };
    p.on_server_data(&ctx, Bytes::copy_from_slice(text))
}

#[test]
fn server_text_that_is_no_message_is_masked_or_dropped() {
    let p = phase(true);
    // Plain text: masked where it stands.
    let out = data(&p, None, format!("contact {EMAIL} today").as_bytes()).unwrap();
    assert_eq!(&out[..], b"contact [EMAIL] today");
    // JSON that is no JSON-RPC message (a batch with one bad member):
    // walked as JSON, so key names count too.
    let batch =
        json!([{"jsonrpc": "2.0", "id": 1, "result": {"e": EMAIL}}, {"password": "hunter2"}]);
    let out = data(&p, None, batch.to_string().as_bytes()).unwrap();
    let v: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(v[0]["result"]["e"], "[EMAIL]");
    assert_eq!(v[1]["password"], "[REDACTED]");
    // Nothing to mask: the same bytes.
    assert_eq!(&data(&p, None, b"id: 7").unwrap()[..], b"id: 7");
    // Not UTF-8: cannot be masked, so it is not forwarded at all.
    assert_eq!(data(&p, None, b"\xff\xfe ada@example.org"), None);
    // The call's profile decides: `tickets` leaves e-mail addresses.
    let out = data(&p, Some("tickets"), EMAIL.as_bytes()).unwrap();
    assert_eq!(&out[..], EMAIL.as_bytes());
}

#[test]
fn with_masking_off_server_text_passes_as_it_came() {
    let p = phase(false);
    assert_eq!(
        &data(&p, None, EMAIL.as_bytes()).unwrap()[..],
        EMAIL.as_bytes()
    );
    assert_eq!(&data(&p, None, b"\xff").unwrap()[..], b"\xff");
}

fn event() -> ExchangeEvent {
    let mut ev = ExchangeEvent {
        error: Some(json!({"code": -1, "message": EMAIL})),
        http_method: "POST".into(),
        http_path: format!("/mcp?user={EMAIL}"),
        http_status: Some(200),
        received_us: 0,
        ..ExchangeEvent::new(
            EventKind::Exchange,
            Direction::ClientToServer,
            &ConnInfo::loopback(),
            Transport::StreamableHttp,
        )
    };
    ev.session_id = Some(format!("sess-{EMAIL}"));
    ev.method = Some("resources/read".into());
    ev.target = Some(format!("file:///home/{EMAIL}/notes.txt"));
    ev.jsonrpc_id = Some(json!(EMAIL));
    ev.client_name = Some(format!("client of {EMAIL}"));
    ev.client_version = Some(EMAIL.into());
    ev.protocol_version = Some(EMAIL.into());
    ev.params = Some(json!({"uri": format!("file:///home/{EMAIL}/notes.txt")}));
    ev.result = Some(json!({"contents": [{"text": EMAIL}]}));
    ev.decision = Some(Decision {
        effect: Effect::Allow,
        policies: vec!["p1".into()],
        version: "v".into(),
        mask: None,
        approval: None,
        reason: format!("resources/read on file:///home/{EMAIL}/notes.txt is permitted"),
        errors: vec![format!("p2: {EMAIL}")],
    });
    ev
}

#[test]
fn the_record_keeps_no_raw_value_in_any_string() {
    let p = phase(true);
    let mut ev = event();
    p.prepare_record(&mut ev);
    let text = serde_json::to_string(&ev).unwrap();
    assert!(!text.contains(EMAIL), "{text}");
    assert_eq!(ev.target.as_deref(), Some("file:///home/[EMAIL]/notes.txt"));
    // The local part runs on into the prefix: the whole id is the address.
    assert_eq!(ev.session_id.as_deref(), Some("[EMAIL]"));
    assert_eq!(ev.jsonrpc_id, Some(json!("[EMAIL]")));
    assert_eq!(ev.http_path, "/mcp?user=[EMAIL]");
    // What was not sensitive stays as it was.
    assert_eq!(ev.method.as_deref(), Some("resources/read"));
    assert_eq!(ev.decision.as_ref().unwrap().policies, ["p1"]);

    // The must-fail side: without the masking stage every one is raw.
    let raw = serde_json::to_string(&event()).unwrap();
    assert!(raw.matches(EMAIL).count() >= 10, "{raw}");
}

/// `@mask` is checked against the config's names; the masker compiles
/// exactly those, so a name the check lets through is one it has.
#[test]
fn the_config_names_the_profiles_the_masker_compiles() {
    let cfg = MaskConfig {
        profiles: BTreeMap::from([("tickets".to_string(), MaskProfile::default())]),
        ..MaskConfig::default()
    };
    let masker = Masker::new(&cfg, [7; 32]).unwrap();
    let names: Vec<&str> = masker.profile_names().collect();
    assert_eq!(names, ["none", "standard", "tickets"]);
    for n in ["none", "standard", "tickets", "strict", "Standard", ""] {
        assert_eq!(cfg.has_profile(n), masker.has_profile(n), "{n:?}");
    }
}

#[test]
fn a_policy_naming_an_unknown_profile_is_refused() {
    let cfg = MaskConfig {
        profiles: BTreeMap::from([("tickets".to_string(), MaskProfile::default())]),
        ..MaskConfig::default()
    };
    let set = |mask: &str| {
        let text = format!(
            "@id(\"ops-read\")\n@mask(\"{mask}\")\npermit (principal, action == Mcp::Action::\"tools/call\", resource);\n\
             permit (principal, action == Mcp::Action::\"tools/list\", resource);\n"
        );
        crate::policy::Policies::from_sources(&[("p.cedar".into(), text)]).expect("valid Cedar")
    };
    for ok in ["tickets", "standard", "none"] {
        assert_eq!(set(ok).check_mask_profiles(|n| cfg.has_profile(n)), Ok(()));
    }
    let err = set("tikets")
        .check_mask_profiles(|n| cfg.has_profile(n))
        .unwrap_err();
    assert_eq!(
        err,
        crate::policy::PolicyError::UnknownMaskProfile {
            policy: "ops-read".into(),
            profile: "tikets".into()
        }
    );
    let text = err.to_string();
    assert!(
        text.contains("ops-read") && text.contains("\"tikets\""),
        "{text}"
    );
}

/// Server bodies that are neither JSON nor SSE are read (bounded) only
/// when this phase would mask them; with masking off they stream as sent.
#[test]
fn server_bodies_are_asked_for_only_when_masking_is_on() {
    assert!(phase(true).rewrites_server_data());
    assert!(!phase(false).rewrites_server_data());
}
