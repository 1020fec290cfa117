//! From pipeline events to audit rows.

use serde_json::Value;

use super::schema::AuditRow;
use crate::pipeline::{
    About, CallFacts, Direction, EventKind, ExchangeEvent, LifecycleEvent, Transport,
    call::{TargetColumn, arguments_sha256},
    event::now_us,
};
use crate::{conn::ProcessFacts, identity::process::placement};

/// What every row of this agent carries.
#[derive(Debug, Clone)]
pub struct Stamp {
    /// The host name stamped on rows.
    pub host: String,
    /// The agent version stamped on rows.
    pub agent_version: String,
    /// JSON text longer than this (arguments, result, error) is cut, with
    /// `response_truncated` and the full `response_size` kept.
    pub max_field_bytes: usize,
}

impl Stamp {
    /// The row of an event made outside an exchange (already masked by
    /// the [`Events`](crate::pipeline::Events) handle that emitted it).
    pub fn from_lifecycle(&self, e: LifecycleEvent) -> AuditRow {
        let mut r = self.lifecycle(&e.kind, e.message);
        match e.about {
            About::Agent => {}
            About::Approval {
                id,
                call,
                arguments,
                policies,
            } => {
                approval_call(&mut r, call);
                r.arguments = arguments;
                r.approval_id = Some(id);
                r.rule_ids = policies;
                r.decided_by = Some("approval".into());
            }
            About::Grant { id, subject, tool } => {
                r.subject = Some(subject);
                r.tool_name = Some(tool);
                r.approval_id = id;
                r.decided_by = Some("grant".into());
            }
        }
        r.approvers = e.approvers;
        r.decision = e.decision;
        // A call's own version (approval steps) unless the event names one.
        if e.policy_version.is_some() {
            r.policy_version = e.policy_version;
        }
        r
    }

    /// A row of `kind` at `event_time_us`, with only the stamp filled in.
    pub fn row(&self, kind: &str, event_time_us: i64) -> AuditRow {
        AuditRow {
            event_time_us,
            event_id: uuid::Uuid::now_v7().to_string(),
            kind: kind.to_string(),
            host: self.host.clone(),
            agent_version: self.agent_version.clone(),
            ..AuditRow::default()
        }
    }

    /// A row for an agent or connection event (`message` says what).
    pub fn lifecycle(&self, kind: &str, message: impl Into<String>) -> AuditRow {
        let mut r = self.row(kind, now_us());
        r.message = Some(message.into());
        r
    }

    /// The audit row for one exchange event: where it came from and who
    /// asked, what it asked, what came back, who decided, and when.
    pub fn from_event(&self, ev: &ExchangeEvent) -> AuditRow {
        let time = ev.done_us.unwrap_or_else(now_us);
        let mut r = self.row(kind_name(ev.kind), time);
        connection(&mut r, ev);
        self.request(&mut r, ev);
        self.answer(&mut r, ev);
        decision(&mut r, ev);
        r.received_us = Some(ev.received_us);
        r.forwarded_us = ev.forwarded_us;
        r.first_byte_us = ev.first_byte_us;
        r.done_us = ev.done_us;
        r.latency_us = ev.done_us.map(|d| d - ev.received_us);
        r.bytes_in = i64::try_from(ev.bytes_in).ok();
        r.bytes_out = i64::try_from(ev.bytes_out).ok();
        if ev.rewritten {
            r.message = Some("request rewritten by the pipeline".into());
        }
        r
    }

    /// The JSON-RPC id, method, target and arguments (tool calls and
    /// prompts record their arguments; other requests their params).
    fn request(&self, r: &mut AuditRow, ev: &ExchangeEvent) {
        r.jsonrpc_id = ev.jsonrpc_id.as_ref().map(json_text);
        r.method = ev.method.clone();
        if let Some(m) = &ev.method {
            set_target(r, m, ev.target.clone());
        }
        let args = match ev.method.as_deref() {
            Some("tools/call") | Some("prompts/get") => {
                ev.params.as_ref().and_then(|p| p.get("arguments"))
            }
            _ => ev.params.as_ref(),
        };
        if let Some(a) = args {
            r.arguments_sha256 = Some(arguments_sha256(a));
            r.arguments = Some(self.cut(json_text(a)).0);
        }
        let inputs = ev.params.as_ref().and_then(|p| p.get("inputResponses"));
        r.input_responses = inputs.map(|v| self.cut(json_text(v)).0);
        r.trace_id = ev.meta.trace_id.clone();
        r.span_id = ev.meta.span_id.clone();
        r.call_id = ev.meta.call_id.clone();
        r.follows = ev.meta.follows.clone();
    }

    /// The result or error (cut to `max_field_bytes`), their full size,
    /// the error code and the HTTP status.
    fn answer(&self, r: &mut AuditRow, ev: &ExchangeEvent) {
        let mut size = 0i64;
        let mut keep = |v: &Value| {
            let text = json_text(v);
            size += text.len() as i64;
            let (t, cut) = self.cut(text);
            r.response_truncated |= cut;
            t
        };
        let result = ev.result.as_ref().map(&mut keep);
        let error = ev.error.as_ref().map(&mut keep);
        (r.result, r.error) = (result, error);
        r.error_code = ev
            .error
            .as_ref()
            .and_then(|e| e.get("code"))
            .and_then(Value::as_i64)
            .and_then(|c| i32::try_from(c).ok());
        r.response_size = (ev.result.is_some() || ev.error.is_some()).then_some(size);
        r.http_status = ev.http_status.map(i32::from);
    }

    /// Cuts `s` to at most `max_field_bytes` on a char boundary (in place:
    /// the text is the row's, no copy of a large result).
    fn cut(&self, mut s: String) -> (String, bool) {
        if s.len() <= self.max_field_bytes {
            return (s, false);
        }
        let mut end = self.max_field_bytes;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
        // A cut text came from a bigger one: give its memory back.
        s.shrink_to_fit();
        (s, true)
    }
}

/// The columns of the call an approval is bound to. The issuer goes with
/// the subject: "alice" of one issuer is not "alice" of another, and the
/// approvals store already tells them apart. The server stays out
/// (`dst_port` is the exchange's).
fn approval_call(r: &mut AuditRow, c: CallFacts) {
    r.subject = Some(c.subject);
    r.issuer = Some(c.issuer).filter(|i| !i.is_empty());
    r.groups = c.groups;
    set_target(r, &c.method, c.target);
    r.method = Some(c.method);
    r.arguments_sha256 = Some(c.arguments_sha256).filter(|s| !s.is_empty());
    r.policy_version = Some(c.policy_version);
}

/// Session, transport, addresses, the caller and the client.
fn connection(r: &mut AuditRow, ev: &ExchangeEvent) {
    r.session_id = ev.session_id.clone();
    r.transport = Some(transport_name(ev.transport).to_string());
    r.protocol_version = ev.protocol_version.clone();
    (r.src_addr, r.src_port) = split_addr(&ev.client_addr);
    (r.dst_addr, r.dst_port) = split_addr(&ev.orig_dst);
    r.conn_id = i64::try_from(ev.conn_id).ok();
    set_tls(r, ev.tls.as_ref());
    let user = ev
        .caller
        .as_ref()
        .and_then(|c| c.process.as_ref()?.user.clone());
    set_process(r, ev.process.as_deref(), user);
    if let Some(c) = &ev.caller {
        r.subject = Some(c.subject.clone());
        r.issuer = c.issuer.clone();
        r.auth_method = Some(c.method.as_str().to_string());
        r.groups = c.groups.clone();
        r.token_id = c.token_id.clone();
        r.oauth_client_id = c.client_id.clone();
        if let Some(cert) = &c.cert {
            r.cert_fingerprint = Some(cert.fingerprint.clone());
            r.cert_serial = Some(cert.serial.clone());
            r.cert_not_after = Some(cert.not_after.saturating_mul(1000));
        }
    }
    r.client_name = ev.client_name.clone();
    r.client_version = ev.client_version.clone();
    r.direction = Some(
        match ev.direction {
            Direction::ClientToServer => "client_to_server",
            Direction::ServerToClient => "server_to_client",
        }
        .into(),
    );
}

/// The TLS columns: what the connection's handshake negotiated; all null
/// on a plaintext connection.
pub(super) fn set_tls(r: &mut AuditRow, tls: Option<&crate::conn::Negotiated>) {
    if let Some(t) = tls {
        r.tls_version = Some(t.version.to_string());
        r.tls_cipher = t.cipher.clone();
        r.tls_alpn = t.alpn.clone();
    }
}

/// The `process_*` columns: the same-host process that opened the
/// connection, with `user` its uid's name where identity looked it up;
/// all null for a remote caller.
pub(super) fn set_process(r: &mut AuditRow, p: Option<&ProcessFacts>, user: Option<String>) {
    if let Some(p) = p {
        r.process_pid = Some(i64::from(p.pid));
        r.process_uid = Some(i64::from(p.uid));
        r.process_user = user;
        r.process_exe = p.exe_path.clone();
        r.process_exe_sha256 = p.exe_sha256.clone();
        r.process_unit = p.cgroup_path.as_deref().and_then(|c| placement(c).unit);
        r.process_cgroup = p.cgroup_path.clone();
    }
}

/// Who decided and how: the exchange's outcome, the policy's decision,
/// what was masked and the approval that released the call.
fn decision(r: &mut AuditRow, ev: &ExchangeEvent) {
    r.decision = match ev.kind {
        EventKind::Denied => Some("deny".into()),
        EventKind::Exchange | EventKind::Notification | EventKind::Unanswered => {
            Some("allow".into())
        }
        // Refused by a security stage (identity, TLS), not by a limit.
        EventKind::Rejected if ev.decided_by.is_some() => Some("deny".into()),
        _ => None,
    };
    r.decided_by = ev.decided_by.clone();
    r.masked_counts = ev
        .masked
        .iter()
        .map(|(k, v)| (k.clone(), i32::try_from(*v).unwrap_or(i32::MAX)))
        .collect();
    if let Some(d) = &ev.decision {
        // A refusal is a deny whatever allowed it first (e.g. a permit
        // and then a spent budget); otherwise the policy's effect.
        if ev.kind != EventKind::Denied {
            r.decision = Some(d.effect.as_str().to_string());
        }
        r.rule_ids = d.policies.clone();
        r.policy_version = Some(d.version.clone());
    }
    if let Some(a) = &ev.approval {
        r.approval_id = Some(a.id.clone());
        r.approvers = a.approvers.clone();
    }
}

/// Puts `target` in the column that names it for `method` (none for
/// methods that name nothing).
fn set_target(r: &mut AuditRow, method: &str, target: Option<String>) {
    match TargetColumn::of(method) {
        Some(TargetColumn::Tool) => r.tool_name = target,
        Some(TargetColumn::Prompt) => r.prompt_name = target,
        Some(TargetColumn::Resource) => r.resource_uri = target,
        None => {}
    }
}

/// The stored name of an event kind.
pub fn kind_name(k: EventKind) -> &'static str {
    match k {
        EventKind::Exchange => "exchange",
        EventKind::Notification => "notification",
        EventKind::Denied => "denied",
        EventKind::Unanswered => "unanswered",
        EventKind::Unpaired => "unpaired",
        EventKind::SessionClosed => "session_closed",
        EventKind::Rejected => "rejected",
        EventKind::Http => "http",
    }
}

fn transport_name(t: Transport) -> &'static str {
    match t {
        Transport::StreamableHttp => "streamable-http",
        Transport::Sse => "sse",
        Transport::Stateless => "stateless",
        Transport::Http => "http",
    }
}

fn split_addr(a: &str) -> (Option<String>, Option<i32>) {
    match a.parse::<std::net::SocketAddr>() {
        Ok(sa) => (Some(sa.ip().to_string()), Some(i32::from(sa.port()))),
        Err(_) => (Some(a.to_string()).filter(|s| !s.is_empty()), None),
    }
}

/// JSON text of a value; `serde_json::to_string` writes straight into a
/// buffer, where `Value`'s `Display` goes through the formatter (slower).
fn json_text(v: &Value) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

#[cfg(test)]
mod tests;
