//! One server body's messages, each judged, through the phases, then
//! paired with the request it answers, remembered (a server request) or
//! recorded (a notification).

use serde_json::Value;

use super::{State, judge, mrtr};
use crate::{
    error::Refusal,
    jsonrpc::{Body, Kind, Message},
    mcp::{exchange, session::SessionInfo, tasks},
    pipeline::{Decision, Direction, EventKind, ExchangeEvent, MaskCounts, Notes, Transport},
};

/// The masking profile and counts a message was masked with, if any.
type Masked = Option<(String, MaskCounts)>;

impl State {
    /// Phases, then pairing, for every message of one server body/event;
    /// `call_profile` (see [`State::call_profile`]) masks the messages that
    /// answer no request. Returns whether a message was refused (and taken
    /// out of `body`), and the errors for the client of requests whose
    /// answer was not judged (see `judge`).
    pub(super) fn on_server_body(
        &self,
        body: &mut Body,
        bytes: u64,
        call_profile: Option<&str>,
    ) -> (bool, Vec<Value>) {
        let info = self.sessions.info(&self.origin.key);
        let per_msg = if body.messages().len() == 1 { bytes } else { 0 };
        let mut refused = Vec::new();
        let mut errors = Vec::new();
        for (i, msg) in body.messages_mut().iter_mut().enumerate() {
            if let Err(answers) = self.on_message(msg, &info, per_msg, call_profile) {
                errors.extend(answers);
                refused.push(i);
            }
        }
        if refused.is_empty() {
            return (false, errors);
        }
        body.remove(&refused);
        (true, errors)
    }

    /// One server message (`per_msg` bytes, 0 in a batch). `Err`: it is
    /// taken out of the body, with the errors it leaves for the client.
    fn on_message(
        &self,
        msg: &mut Message,
        info: &SessionInfo,
        per_msg: u64,
        call_profile: Option<&str>,
    ) -> Result<(), Vec<Value>> {
        if matches!(msg.kind, Kind::Response | Kind::Error)
            && let Err(why) = judge::pairing(self, msg)
        {
            let raw = msg.value.to_string().into_bytes();
            return Err(self.refuse_unjudged(&raw, Some(msg), why));
        }
        let (request_method, mask_profile) = match (msg.kind, msg.id_key()) {
            (Kind::Response | Kind::Error, Some(id)) => {
                self.sessions.pending_info(&self.origin.key, &id)
            }
            _ => (None, call_profile.map(str::to_owned)),
        };
        tasks::withhold_input(msg);
        let notes = Notes::default();
        let mctx = self.ctx(
            info,
            request_method.as_deref(),
            mask_profile.as_deref(),
            &notes,
        );
        if let Some((error, phase)) = self.pipeline.on_server_request_or_notification(&mctx, msg) {
            if msg.kind == Kind::Request {
                self.refuse_server_request(msg, info, error, phase, notes.decision());
            } else {
                self.record_refused(msg, info, &error, phase, notes.decision());
            }
            return Err(Vec::new());
        }
        let input =
            mrtr::is_input_required(msg) || tasks::asks_input(msg, request_method.as_deref());
        if input {
            self.on_input_required(msg, info, mask_profile.as_deref())?;
        }
        if input || tasks::bears_task(msg, request_method.as_deref()) {
            mrtr::keeping_state(msg, |m| self.pipeline.on_server_message(&mctx, m));
        } else {
            self.pipeline.on_server_message(&mctx, msg);
        }
        let masked = notes.masked();
        match msg.kind {
            Kind::Response | Kind::Error => self.on_answer(msg, info, per_msg, &masked),
            Kind::Request => {
                self.expect_client_answer(msg, info, notes.decision(), &masked);
                Ok(())
            }
            Kind::Notification => {
                let mut ev = self.origin.event(
                    EventKind::Notification,
                    Direction::ServerToClient,
                    msg,
                    info,
                );
                ev.bytes_out = per_msg;
                note_masked(&mut ev, &masked);
                exchange::record(&self.pipeline, ev);
                Ok(())
            }
        }
    }

    /// A response or error, judged: completes the request it answers.
    /// `Err`: no request waits for it any more.
    fn on_answer(
        &self,
        msg: &Message,
        info: &SessionInfo,
        per_msg: u64,
        masked: &Masked,
    ) -> Result<(), Vec<Value>> {
        let id = msg.id_key().unwrap_or_default();
        match self.sessions.answer(&self.origin.key, &id, true) {
            Some(mut req) => {
                note_masked(&mut req, masked);
                tasks::learn(self.sessions.tasks(), &req, msg);
                if req.method.as_deref() == Some("initialize") {
                    self.learn_initialize(msg, &mut req);
                }
                req.first_byte_us = req.first_byte_us.or(self.first_byte_us);
                if mrtr::is_input_required(msg) {
                    self.sessions.rounds.remember(&req, msg);
                }
                if req.session_id.is_none() && self.origin.in_session {
                    req.session_id = Some(self.origin.key.clone());
                }
                exchange::complete(&self.pipeline, req, msg, self.status, per_msg);
            }
            // An error with a `null` id (the server could not read a
            // request): the server's word, judged.
            None if msg.id().is_none() => {
                let mut ev =
                    self.origin
                        .event(EventKind::Unpaired, Direction::ClientToServer, msg, info);
                ev.error = msg.error().cloned();
                ev.http_status = Some(self.status);
                note_masked(&mut ev, masked);
                exchange::record(&self.pipeline, ev);
            }
            // Taken meanwhile (a timeout): answers no one now.
            None => {
                let why = judge::Unjudged::Unpaired(id);
                let raw = msg.value.to_string().into_bytes();
                return Err(self.refuse_unjudged(&raw, Some(msg), why));
            }
        }
        Ok(())
    }

    /// A server request passed on to the client: remembered until the
    /// client answers it.
    fn expect_client_answer(
        &self,
        msg: &Message,
        info: &SessionInfo,
        decision: Option<Decision>,
        masked: &Masked,
    ) {
        let mut ev = self
            .origin
            .event(EventKind::Exchange, Direction::ServerToClient, msg, info);
        // A policy let it through: the record names which.
        ev.decision = decision;
        note_masked(&mut ev, masked);
        self.sessions
            .expect(&self.origin.key, msg.id_key().unwrap_or_default(), ev, true);
    }

    /// A server request the client must not see: recorded, and answered
    /// upstream with `error` as if the client had refused it.
    fn refuse_server_request(
        &self,
        msg: &Message,
        info: &SessionInfo,
        error: Refusal,
        phase: &'static str,
        decision: Option<Decision>,
    ) {
        self.record_refused(msg, info, &error, phase, decision);
        let Some(reply) = &self.reply else { return };
        let legacy = self.origin.transport == Transport::Sse;
        let target = if legacy {
            self.origin.key.clone()
        } else {
            self.origin.http_path.clone()
        };
        let session = (self.origin.in_session && !legacy).then(|| self.origin.key.clone());
        reply(target, session, error.to_jsonrpc(msg.id().cloned()));
    }

    /// A server request or notification a phase refused: recorded (who
    /// refused it and why); the client never sees it.
    fn record_refused(
        &self,
        msg: &Message,
        info: &SessionInfo,
        error: &Refusal,
        phase: &'static str,
        decision: Option<Decision>,
    ) {
        let mut ev = self
            .origin
            .event(EventKind::Denied, Direction::ServerToClient, msg, info);
        ev.error = Some(error.error());
        ev.decided_by = Some(phase.to_string());
        ev.decision = decision;
        tracing::info!(conn = self.origin.conn.id, method = ?msg.method(), phase, "server message refused");
        exchange::record(&self.pipeline, ev);
    }

    /// The negotiated protocol version from the `initialize` answer.
    fn learn_initialize(&self, answer: &Message, req: &mut ExchangeEvent) {
        let version = answer
            .result()
            .and_then(|r| r.get("protocolVersion"))
            .and_then(Value::as_str);
        if let Some(v) = version {
            self.sessions.update_info(&self.origin.key, |i| {
                i.protocol_version = Some(v.to_string())
            });
            req.protocol_version = Some(v.to_string());
        }
    }
}

/// Stamps `ev` with what the phases masked in its message.
fn note_masked(ev: &mut ExchangeEvent, masked: &Masked) {
    if let Some((profile, counts)) = masked {
        ev.masked = counts.clone();
        ev.masked_with = Some(profile.clone());
    }
}
