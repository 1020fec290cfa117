//! MCP 2026-07-28 `subscriptions/listen`: a POST whose answer is a
//! long-lived stream of change notifications. Once acknowledged it may
//! idle (see `relay`), and the client ends it by closing it, which is the
//! spec's way to unsubscribe, not a failure. A notification a phase
//! refuses (a resource the caller may not read) never reaches the client.

use super::State;
use crate::{
    jsonrpc::{Body, Kind, Message},
    mcp::exchange,
    pipeline::EventKind,
};

/// The method that opens a listen stream.
pub const LISTEN: &str = "subscriptions/listen";

/// Whether the messages of `body` that go upstream (`keep`) are all
/// listen requests: the POST's answer is then a long-lived stream.
pub fn listens_only(body: &Body, keep: &[bool]) -> bool {
    let mut kept = body
        .messages()
        .iter()
        .zip(keep)
        .filter(|(_, k)| **k)
        .map(|(m, _)| m);
    let is_listen = |m: &Message| m.kind == Kind::Request && m.method() == Some(LISTEN);
    kept.next().is_some_and(is_listen) && kept.all(is_listen)
}

impl State {
    /// Whether every request in `expected` is a `subscriptions/listen`
    /// (only then may the answer idle once the server has spoken).
    pub(super) fn is_listen(&self, expected: &[String]) -> bool {
        !expected.is_empty()
            && expected.iter().all(|id| {
                self.sessions
                    .pending_info(&self.origin.key, id)
                    .0
                    .as_deref()
                    == Some(LISTEN)
            })
    }

    /// The client closed its listen stream: each listen request is
    /// recorded as a finished exchange (no result: the server never had to
    /// send one), not as a request left unanswered.
    pub(super) fn close_listen(&self, expected: &[String]) {
        for mut ev in self.sessions.take_unanswered(&self.origin.key, expected) {
            ev.kind = EventKind::Exchange;
            ev.http_status = ev.http_status.or(Some(self.status));
            ev.first_byte_us = ev.first_byte_us.or(self.first_byte_us);
            exchange::record(&self.pipeline, ev);
        }
    }
}

#[cfg(test)]
mod tests;
