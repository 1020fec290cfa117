//! JSON-RPC bodies: every POST body from a client and every JSON answer
//! or SSE `data` from a server goes through `jsonrpc::parse`, then the
//! accessors the handler and the phases use, and re-serialization when a
//! phase rewrote or removed a message.
#![no_main]

use bytes::Bytes;
use interceptor::jsonrpc::{self, Body, Kind};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    let bytes = Bytes::copy_from_slice(data);
    // A client's body: the strict reading refuses only what parses.
    if let Ok(b) = jsonrpc::parse_client(&bytes) {
        assert_eq!(jsonrpc::parse(&bytes).ok(), Some(b));
    }
    let mut body = match jsonrpc::parse(&bytes) {
        Ok(b) => b,
        Err(e) => {
            // The code the client is answered with.
            assert!(matches!(e.refusal().code(), -32700 | -32600));
            return;
        }
    };
    match &body {
        Body::Single(m) => assert_eq!(m.raw.as_ref(), Some(&bytes)),
        Body::Batch(ms) => assert!(!ms.is_empty(), "an empty batch is refused"),
    }
    // Unchanged: forwarded byte for byte.
    assert_eq!(body.to_bytes(&bytes), bytes);
    let kinds: Vec<Kind> = body.messages().iter().map(|m| m.kind).collect();
    for m in body.messages() {
        let has_id = m.value.get("id").is_some();
        match m.kind {
            Kind::Request => assert!(m.method().is_some() && m.id_key().is_some()),
            Kind::Notification => assert!(m.method().is_some() && !has_id),
            Kind::Response => assert!(m.method().is_none() && m.result().is_some() && has_id),
            Kind::Error => assert!(m.method().is_none() && m.error().is_some() && has_id),
        }
        // What the handler, policy and audit read.
        let _ = (m.target(), m.params(), m.id());
        // The argument digest must be JSON (policy `arguments_json`).
        let canonical = jsonrpc::canonical(&m.value);
        assert!(
            serde_json::from_str::<Value>(&canonical).is_ok(),
            "canonical form is not JSON: {canonical}"
        );
    }
    // A phase rewriting a message with its own value keeps its kind, and
    // the re-serialized body parses to the same shape.
    for m in body.messages_mut() {
        let (kind, value) = (m.kind, m.value.clone());
        m.rewrite(value).expect("a parsed message rewrites");
        assert_eq!(m.kind, kind);
        assert!(m.raw.is_none());
    }
    let out = body.to_bytes(&bytes);
    let again = jsonrpc::parse(&out).expect("a re-serialized body parses");
    assert_eq!(
        again.messages().iter().map(|m| m.kind).collect::<Vec<_>>(),
        kinds
    );
    // A policy refusing some members of a batch (the handler forwards the
    // rest): what is left still parses.
    if kinds.len() > 1 {
        let drop: Vec<usize> = (0..kinds.len())
            .filter(|i| data[i % data.len()] & 1 == 1)
            .collect();
        if drop.len() < kinds.len() {
            body.remove(&drop);
            let out = body.to_bytes(&bytes);
            let left = jsonrpc::parse(&out).expect("what is left of a batch parses");
            assert_eq!(left.messages().len(), kinds.len() - drop.len());
        }
    }
});
