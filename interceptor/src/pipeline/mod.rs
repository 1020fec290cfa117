//! The request pipeline: named phases that identity, policy, approval,
//! masking and audit plug into, without touching transport code.
//!
//! ```text
//!  connection ─▶ on_connect
//!  client msg ─▶ on_request ──▶ Continue │ Rewrite │ Deny │ Hold(→ verdict)
//!                   │ (forwarded)
//!  server msg ─▶ on_server_message (rewrite in place, SSE event by event)
//!  exchange done, denied, or unpaired ─▶ record (always last)
//! ```
//!
//! Phases run in one fixed order, [`PhaseSlot`]'s, which
//! [`Pipeline::builder`] applies whatever order they are supplied in; the
//! first that denies stops the rest for that message. Phases never see
//! sockets or HTTP framing.
#![forbid(unsafe_code)]

pub mod call;
pub mod event;
pub mod lifecycle;
pub mod notes;
pub mod reqmeta;
pub mod sink;

use std::{collections::BTreeMap, future::Future, pin::Pin, sync::Arc, time::Duration};

use bytes::Bytes;
use serde_json::Value;

pub use call::CallFacts;
pub use event::{Direction, EventKind, ExchangeEvent, Transport};
pub use lifecycle::{About, Events, LifecycleEvent, LifecycleSink, TextMask};
pub use notes::{
    ApprovalMode, ApprovalNote, ApprovalRule, Decision, Effect, HoldSignal, MaskCounts, Notes,
};
pub use reqmeta::RequestMeta;

use crate::{
    conn::ConnInfo,
    error::{Reason, Refusal},
    identity::Caller,
    jsonrpc::{Kind, Message},
};

/// What a phase knows about the message in hand.
#[derive(Debug, Clone)]
pub struct MessageCtx<'a> {
    /// The connection the message came on.
    pub conn: &'a ConnInfo,
    /// The MCP session id.
    pub session_id: Option<&'a str>,
    /// The MCP transport.
    pub transport: Transport,
    /// The MCP protocol version.
    pub protocol_version: Option<&'a str>,
    /// The HTTP request path.
    pub http_path: &'a str,
    /// The verified caller (the identity stage ran before any phase).
    pub caller: Option<&'a Caller>,
    /// `clientInfo` from the session's `initialize`.
    pub client_name: Option<&'a str>,
    /// The client's version from `initialize`.
    pub client_version: Option<&'a str>,
    /// For a response: the method of the request it answers.
    pub request_method: Option<&'a str>,
    /// For a response: the masking profile the policy chose for its
    /// request (`@mask`); `None`: the default.
    pub mask_profile: Option<&'a str>,
    /// This message's scratch space, shared by its phases.
    pub notes: &'a Notes,
}

#[cfg(test)]
impl<'a> MessageCtx<'a> {
    /// A Streamable HTTP message on `/mcp` with nothing else known (no
    /// session, caller or client), for unit tests to set what they test.
    pub(crate) fn for_test(conn: &'a ConnInfo, notes: &'a Notes) -> Self {
        Self {
            conn,
            session_id: None,
            transport: Transport::StreamableHttp,
            protocol_version: None,
            http_path: "/mcp",
            caller: None,
            client_name: None,
            client_version: None,
            request_method: None,
            mask_profile: None,
            notes,
        }
    }
}

/// A phase's answer to a client message.
pub enum Verdict {
    /// Pass it on unchanged (to the next phase, then upstream).
    Continue,
    /// Replace it with this JSON-RPC message.
    Rewrite(Value),
    /// Refuse it; the client gets this refusal as its JSON-RPC error, the
    /// server never sees it.
    Deny(Refusal),
    /// Refuse it by answering with this JSON-RPC `result` (e.g. a tool
    /// result with `isError`); the server never sees it.
    Answer(Value),
    /// Decide later: the message waits (bounded by the hold limit, then
    /// denied) until the future yields the verdict.
    Hold(Pin<Box<dyn Future<Output = Verdict> + Send>>),
}

/// Each hook has a no-op default; a phase implements what it needs.
pub trait Phase: Send + Sync + 'static {
    /// Short name for logs.
    fn name(&self) -> &'static str;
    /// A client connection was accepted (before any request).
    fn on_connect(&self, _conn: &ConnInfo) {}
    /// A client connection ended after `requests` HTTP requests.
    fn on_close(&self, _conn: &ConnInfo, _requests: u64) {}
    /// Each client JSON-RPC message: requests, notifications, and replies
    /// to server requests.
    fn on_request(&self, _ctx: &MessageCtx<'_>, _msg: &Message) -> Verdict {
        Verdict::Continue
    }
    /// Each server message (JSON body, or one SSE event); may rewrite it.
    fn on_server_message(&self, _ctx: &MessageCtx<'_>, _msg: &mut Message) {}
    /// Each server-to-client request (sampling, elicitation, roots), before
    /// `on_server_message`. `Some(refusal)`: the client never sees it and
    /// the server gets this refusal as the answer.
    fn on_server_request(&self, _ctx: &MessageCtx<'_>, _msg: &Message) -> Option<Refusal> {
        None
    }
    /// Each server notification, before `on_server_message`.
    /// `Some(refusal)`: the client never sees it (it is recorded as
    /// refused).
    fn on_server_notification(&self, _ctx: &MessageCtx<'_>, _msg: &Message) -> Option<Refusal> {
        None
    }
    /// Server text that is no JSON-RPC message (an SSE event's data or
    /// comment, a JSON body that does not parse as one), before it is
    /// forwarded: may rewrite it; `None` drops it.
    fn on_server_data(&self, _ctx: &MessageCtx<'_>, data: Bytes) -> Option<Bytes> {
        Some(data)
    }
    /// Whether `prepare_record` changes anything (saves a copy otherwise).
    fn prepares_records(&self) -> bool {
        false
    }
    /// Whether `on_server_request` may refuse anything.
    fn polices_server_requests(&self) -> bool {
        false
    }
    /// Whether `on_server_data` may change or drop anything: only then is a
    /// server body that is neither JSON nor SSE read (bounded) to pass
    /// through it; otherwise it streams on as it comes.
    fn rewrites_server_data(&self) -> bool {
        false
    }
    /// Before any `record`: may change what is recorded (masking).
    fn prepare_record(&self, _event: &mut ExchangeEvent) {}
    /// Each finished exchange, denial, notification or unpaired message.
    fn record(&self, _event: &ExchangeEvent) {}
    /// A client request is about to go upstream (before its answer, which
    /// `record` gets): a phase that keeps evidence (the audit) notes that
    /// it went, so a crash before the answer still leaves a trace.
    fn on_forward(&self, _event: &ExchangeEvent) {}
}

/// What became of a client message.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Forward it (possibly rewritten in place).
    Forward {
        /// Whether a phase rewrote the message in place.
        rewritten: bool,
    },
    /// Refused with this refusal, by this phase.
    Denied {
        /// The refusal sent to the client.
        error: Refusal,
        /// The phase that refused.
        phase: &'static str,
    },
    /// Refused by answering with this JSON-RPC result, by this phase.
    Answered {
        /// The JSON-RPC result sent to the client.
        result: Value,
        /// The phase that answered.
        phase: &'static str,
    },
}

/// The place of each kind of phase in the pipeline. The order of these
/// variants is the one order the agent's phases run in, for every hook:
/// [`PipelineBuilder::build`] sorts by it, so the order is written here and
/// nowhere else.
///
/// - `Audit` first: when the audit cannot write (`on_audit_failure =
///   block`) a request is refused before any other phase acts on it (no
///   budget spent, no approval held); its `on_connect` row precedes what
///   any other phase does with the connection, and its `on_forward` row
///   (the evidence that a request went upstream) and `record` row come
///   before the other sinks see the exchange.
/// - `Policy` next: it decides, and it filters what servers list, so the
///   phases after it see only what the caller may see.
/// - `ToolPins` after policy: it fingerprints what callers may see, so a
///   caller who may not use a tool never learns that it changed.
/// - `Mask` after pinning (fingerprints are of what the server sent) and
///   before the sinks; its `prepare_record` runs before every `record` in
///   any case.
/// - `Approval` after masking: a call waits for approval only once
///   everything that could refuse it has had its say.
/// - `EventsJsonl`, then `Metrics`: sinks, which only record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PhaseSlot {
    /// The audit trail (refuses when it cannot write, if so configured).
    Audit,
    /// Policy decisions and per-caller listing.
    Policy,
    /// Tool pinning (rug-pull detection).
    ToolPins,
    /// Masking of server messages and records.
    Mask,
    /// Human approval holds.
    Approval,
    /// The JSON-lines event file.
    EventsJsonl,
    /// Prometheus counters.
    Metrics,
}

/// Collects the agent's phases by [`PhaseSlot`]; see [`Pipeline::builder`].
pub struct PipelineBuilder {
    slots: BTreeMap<PhaseSlot, Arc<dyn Phase>>,
    hold_limit: Duration,
}

impl PipelineBuilder {
    /// Puts `phase` in `slot`, replacing what was there; `None` leaves the
    /// slot empty (the phase is off for this config).
    pub fn slot(mut self, slot: PhaseSlot, phase: impl Into<Option<Arc<dyn Phase>>>) -> Self {
        match phase.into() {
            Some(p) => self.slots.insert(slot, p),
            None => self.slots.remove(&slot),
        };
        self
    }

    /// The pipeline of the filled slots, in [`PhaseSlot`] order.
    pub fn build(self) -> Pipeline {
        Pipeline::new(self.slots.into_values().collect(), self.hold_limit)
    }
}

/// The phases every message passes through, in order.
#[derive(Clone)]
pub struct Pipeline {
    phases: Arc<Vec<Arc<dyn Phase>>>,
    hold_limit: Duration,
}

impl Pipeline {
    /// A builder that runs phases in [`PhaseSlot`] order whatever order
    /// they are given in. A held message waits at most `hold_limit`.
    pub fn builder(hold_limit: Duration) -> PipelineBuilder {
        PipelineBuilder {
            slots: BTreeMap::new(),
            hold_limit,
        }
    }

    /// A pipeline of these phases in the order given (tests and tools; the
    /// agent uses [`Pipeline::builder`]).
    pub fn new(phases: Vec<Arc<dyn Phase>>, hold_limit: Duration) -> Self {
        Self {
            phases: Arc::new(phases),
            hold_limit,
        }
    }

    /// Tells the phases a connection opened.
    pub fn on_connect(&self, conn: &ConnInfo) {
        for p in self.phases.iter() {
            p.on_connect(conn);
        }
    }

    /// Tells the phases a connection closed.
    pub fn on_close(&self, conn: &ConnInfo, requests: u64) {
        for p in self.phases.iter() {
            p.on_close(conn, requests);
        }
    }

    /// Runs `on_request` of every phase over `msg`.
    pub async fn on_request(&self, ctx: &MessageCtx<'_>, msg: &mut Message) -> Outcome {
        let mut rewritten = false;
        for p in self.phases.iter() {
            let mut verdict = p.on_request(ctx, msg);
            if let Verdict::Hold(fut) = verdict {
                verdict = match tokio::time::timeout(self.hold_limit, fut).await {
                    Ok(Verdict::Hold(_)) | Err(_) => Verdict::Deny(Refusal::new(
                        Reason::HoldExpired,
                        format!(
                            "held by {} and not released within {:?}",
                            p.name(),
                            self.hold_limit
                        ),
                    )),
                    Ok(v) => v,
                };
            }
            match verdict {
                Verdict::Continue | Verdict::Hold(_) => {}
                Verdict::Rewrite(v) => match msg.rewrite(v) {
                    Ok(()) => rewritten = true,
                    Err(e) => {
                        tracing::error!(phase = p.name(), error = %e, "phase rewrote a message into an invalid one");
                        return Outcome::Denied {
                            error: Refusal::new(
                                Reason::Internal,
                                "internal error in the interceptor",
                            ),
                            phase: p.name(),
                        };
                    }
                },
                Verdict::Deny(error) => {
                    return Outcome::Denied {
                        error,
                        phase: p.name(),
                    };
                }
                Verdict::Answer(result) => {
                    return Outcome::Answered {
                        result,
                        phase: p.name(),
                    };
                }
            }
        }
        Outcome::Forward { rewritten }
    }

    /// Whether any phase may refuse server requests (only then does the
    /// handler keep what it needs to answer the server).
    pub fn polices_server_requests(&self) -> bool {
        self.phases.iter().any(|p| p.polices_server_requests())
    }

    /// The first phase's refusal of a server-to-client request
    /// (`on_server_request`) or server notification
    /// (`on_server_notification`), with the phase's name; answers and
    /// errors are never refused here.
    pub fn on_server_request_or_notification(
        &self,
        ctx: &MessageCtx<'_>,
        msg: &Message,
    ) -> Option<(Refusal, &'static str)> {
        self.phases.iter().find_map(|p| {
            let refused = match msg.kind {
                Kind::Request => p.on_server_request(ctx, msg),
                Kind::Notification => p.on_server_notification(ctx, msg),
                Kind::Response | Kind::Error => None,
            };
            refused.map(|e| (e, p.name()))
        })
    }

    /// Runs the phases over a message from the server.
    pub fn on_server_message(&self, ctx: &MessageCtx<'_>, msg: &mut Message) {
        for p in self.phases.iter() {
            p.on_server_message(ctx, msg);
        }
    }

    /// Whether any phase may rewrite or drop server data (see
    /// [`Phase::rewrites_server_data`]).
    pub fn rewrites_server_data(&self) -> bool {
        self.phases.iter().any(|p| p.rewrites_server_data())
    }

    /// Runs `on_server_data` of every phase; `None` once one drops it.
    pub fn on_server_data(&self, ctx: &MessageCtx<'_>, data: Bytes) -> Option<Bytes> {
        self.phases
            .iter()
            .try_fold(data, |d, p| p.on_server_data(ctx, d))
    }

    /// Prepares (masks) the event, then hands it to every `record`.
    pub fn record(&self, event: &ExchangeEvent) {
        let prepared = self.prepared(event);
        let event = prepared.as_ref().unwrap_or(event);
        for p in self.phases.iter() {
            p.record(event);
        }
    }

    /// `event`'s request is about to go upstream (see `Phase::on_forward`);
    /// prepared (masked) as for `record`.
    pub fn forwarded(&self, event: &ExchangeEvent) {
        let prepared = self.prepared(event);
        let event = prepared.as_ref().unwrap_or(event);
        for p in self.phases.iter() {
            p.on_forward(event);
        }
    }

    /// `event` as the phases that prepare records leave it, if any does.
    fn prepared(&self, event: &ExchangeEvent) -> Option<ExchangeEvent> {
        let mut prepared = None;
        for p in self.phases.iter() {
            if p.prepares_records() {
                p.prepare_record(prepared.get_or_insert_with(|| event.clone()));
            }
        }
        prepared
    }
}

#[cfg(test)]
mod tests;
