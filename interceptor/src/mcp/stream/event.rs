//! One SSE event of a server stream: the legacy `endpoint` announcement,
//! a keep-alive, or messages. Nothing a masking phase has not seen is
//! forwarded.

use bytes::Bytes;
use serde_json::Value;

use super::{State, judge};
use crate::{jsonrpc, mcp::sse, pipeline::Transport};

impl State {
    /// One SSE event: the legacy `endpoint` announcement, or a message.
    /// Returns the bytes to send (empty: nothing). Nothing a masking phase
    /// has not seen is forwarded: a message goes through the phases, any
    /// other data, the comments and the other fields through
    /// `on_server_data`, and an event is rebuilt when any of them changed.
    pub(super) fn on_event(&mut self, ev: sse::Event, profile: Option<&str>) -> Bytes {
        let side = ev.side_text();
        let side_clean = side.is_empty() || {
            let b = Bytes::from(side);
            self.opaque(b.clone(), profile).is_some_and(|o| o == b)
        };
        if ev.kind() == "endpoint"
            && let Some(data) = &ev.data
        {
            // The client must post back to exactly this URI: its data
            // passes as it came, the rest only if clean.
            self.learn_endpoint(data);
            if side_clean {
                return ev.raw;
            }
            return sse::serialize(Some("endpoint"), None, data);
        }
        let Some(data) = ev.data.as_deref().filter(|d| !d.trim().is_empty()) else {
            // A keep-alive: its comment is no one's business.
            return if side_clean {
                ev.raw
            } else {
                Bytes::from_static(b":\n\n")
            };
        };
        let bytes = Bytes::copy_from_slice(data.as_bytes());
        self.on_message_event(ev, bytes, side_clean, profile)
    }

    /// A legacy SSE stream's `endpoint`: the session, from now on, is the
    /// URI the client posts to.
    fn learn_endpoint(&mut self, data: &str) {
        let target = endpoint_target(data);
        self.sessions.learn_legacy_endpoint(&target, &target);
        let owner = self.origin.caller.as_ref().map(|c| c.principal());
        self.sessions.update_info(&target, |i| {
            i.transport = Some(Transport::Sse);
            i.owner = owner;
        });
        self.origin.key = target;
        self.origin.in_session = true;
    }

    /// An event whose data (`bytes`) is messages: through the phases, then
    /// the event as it came if nothing changed (`side_clean`: its other
    /// fields passed the phases unchanged), else rebuilt.
    fn on_message_event(
        &self,
        ev: sse::Event,
        bytes: Bytes,
        side_clean: bool,
        profile: Option<&str>,
    ) -> Bytes {
        let (new_data, errors) = match jsonrpc::parse_server(&bytes) {
            Ok(mut body) => {
                let (refused, errors) =
                    self.on_server_body(&mut body, ev.raw.len() as u64, profile);
                if body.messages().is_empty() {
                    // Everything in the event was refused: the client sees
                    // nothing of it, only the errors of what it left waiting.
                    return error_events(&errors);
                }
                let changed = refused || !body.messages().iter().all(|m| m.raw.is_some());
                (changed.then(|| body.to_bytes(&bytes)), errors)
            }
            // Not JSON-RPC: never forwarded, even masked (see `judge`).
            Err(e) => {
                let why = judge::Unjudged::NotJsonRpc(e.to_string());
                return error_events(&self.refuse_unjudged(&bytes, None, why));
            }
        };
        if side_clean && new_data.is_none() {
            return join(ev.raw, error_events(&errors));
        }
        let field = |f: Option<String>| {
            if side_clean {
                return f;
            }
            let b = self.opaque(Bytes::from(f?), profile)?;
            Some(String::from_utf8_lossy(&b).into_owned())
        };
        let (event, id) = (field(ev.event), field(ev.id));
        let data = new_data.unwrap_or(bytes);
        let out = sse::serialize(
            event.as_deref(),
            id.as_deref(),
            &String::from_utf8_lossy(&data),
        );
        join(out, error_events(&errors))
    }
}

/// JSON-RPC error responses as SSE `message` events.
fn error_events(errors: &[Value]) -> Bytes {
    errors
        .iter()
        .map(|e| sse::serialize(Some("message"), None, &e.to_string()))
        .fold(Bytes::new(), join)
}

/// `a`, then `b`, as one chunk.
fn join(a: Bytes, b: Bytes) -> Bytes {
    if b.is_empty() {
        return a;
    }
    let mut v = Vec::with_capacity(a.len() + b.len());
    v.extend_from_slice(&a);
    v.extend_from_slice(&b);
    Bytes::from(v)
}

/// `endpoint` data is a URI reference; keep path and query.
fn endpoint_target(data: &str) -> String {
    let d = data.trim();
    match d.parse::<http::Uri>() {
        Ok(u) if u.scheme().is_some() => u
            .path_and_query()
            .map(|p| p.as_str().to_string())
            .unwrap_or_default(),
        _ => d.to_string(),
    }
}
