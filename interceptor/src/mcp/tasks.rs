//! MCP 2026-07-28 tasks extension (`io.modelcontextprotocol/tasks`,
//! SEP-2663) at the boundary. A server may answer a `tools/call` with a
//! task handle (`resultType: "task"`, a `taskId`) instead of its result;
//! the client then polls `tasks/get`, answers input with `tasks/update`
//! and stops it with `tasks/cancel`. Each of those is still that tool call,
//! so the agent remembers every handle it sees a server hand out (asked
//! for or not: an unsolicited handle is followed too) with the call it
//! came from: who made it, which tool, the call's policy decision (and so
//! its masking profile).
//!
//! Attacks and defences:
//! - Another caller polls, feeds or cancels someone's task (task ids are
//!   the server's bearer tokens, and servers may not bind them to a
//!   caller): a `tasks/*` request for a handle another principal created
//!   is refused (`session_owner`), never forwarded, and audited.
//! - A handle the agent never saw (made up, expired, or from before an
//!   agent restart: the table lives in memory) is refused too
//!   (`unknown_session`): fail closed, the client calls the tool again.
//! - A `tasks/get` result smuggles the tool's output past the call's
//!   `@mask` profile: it is masked with the originating call's profile
//!   and audited as that tool's result (`handler/decide.rs` stamps the
//!   row with the tool and the call's decision).
//! - An `input_required` task carries elicitation or sampling requests:
//!   they are judged like MRTR input requests (`stream/mrtr.rs`).
//! - A client fills the table: entries expire with the server's
//!   `ttlSeconds`, at most `MAX_TTL`; a caller holds at most
//!   `MAX_PER_CALLER` (its oldest is forgotten, never another's), and at
//!   `MAX_TASKS` new handles are not remembered (so they are refused).

use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, Instant},
};

use serde_json::Value;

use crate::{
    error::{Reason, Refusal},
    jsonrpc::{Kind, Message, mcp_names},
    pipeline::{Decision, ExchangeEvent},
};

/// The extension's identifier.
pub const EXTENSION: &str = "io.modelcontextprotocol/tasks";
/// The longest the agent follows a handle, whatever its `ttlSeconds`
/// (a `null` TTL is unlimited to the server, not to the agent).
pub const MAX_TTL: Duration = Duration::from_secs(24 * 3600);
/// Handles one caller may hold at once.
pub const MAX_PER_CALLER: usize = 1024;
/// Handles the agent remembers at once.
pub const MAX_TASKS: usize = 65_536;

/// The methods that name a task handle (`params.taskId`). `tasks/result`
/// is gone in 2026-07-28, but 2025-11-25 servers (experimental tasks)
/// still serve it, and it answers with the tool's result: it is bound to
/// the handle's caller like the others.
const METHODS: &[&str] = &["tasks/get", "tasks/update", "tasks/cancel", "tasks/result"];

/// The tool call a task handle came from.
#[derive(Debug, Clone)]
pub struct Handle {
    /// The principal that made the call (`Caller::principal`).
    pub owner: String,
    /// The tool called.
    pub tool: String,
    /// The call's policy decision (its `mask` is the call's profile).
    pub decision: Option<Decision>,
    /// The call's JSON-RPC id.
    pub call_id: Option<Value>,
    /// The call's session, if it had one.
    pub session: Option<String>,
    /// When the agent stops following the handle.
    pub expires: Instant,
}

/// Why a `tasks/*` request may not name a handle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClaimError {
    /// The agent never saw a server hand it out, or it expired.
    Unknown,
    /// Another principal's call created it (that principal).
    Owner(String),
}

/// The handles servers handed out, by task id.
#[derive(Default)]
pub struct Tasks {
    inner: Mutex<HashMap<String, Handle>>,
}

impl Tasks {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Handle>> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Remembers handle `id`. A handle already held by another principal
    /// keeps its owner (a server that hands one id to two callers does
    /// not get to move it). Returns whether `h` is now the entry.
    pub fn learn(&self, id: &str, h: Handle, now: Instant) -> bool {
        let mut map = self.lock();
        map.retain(|_, e| e.expires > now);
        if let Some(e) = map.get_mut(id) {
            if e.owner != h.owner {
                tracing::warn!(task = %id, owner = %e.owner, caller = %h.owner, "server handed out a task id another caller holds: kept its owner");
                return false;
            }
            *e = h;
            return true;
        }
        let mine: Vec<(&String, Instant)> = map
            .iter()
            .filter(|(_, e)| e.owner == h.owner)
            .map(|(k, e)| (k, e.expires))
            .collect();
        if mine.len() >= MAX_PER_CALLER
            && let Some(oldest) = mine
                .iter()
                .min_by_key(|(_, t)| *t)
                .map(|(k, _)| (*k).clone())
        {
            tracing::warn!(task = %oldest, caller = %h.owner, "caller holds {MAX_PER_CALLER} tasks: forgot the one expiring first");
            map.remove(&oldest);
        }
        if map.len() >= MAX_TASKS {
            tracing::warn!(task = %id, "task table full ({MAX_TASKS}): handle not followed");
            return false;
        }
        map.insert(id.to_string(), h);
        true
    }

    /// The handle `id` names, if `principal` may use it.
    pub fn claim(&self, id: &str, principal: &str, now: Instant) -> Result<Handle, ClaimError> {
        let mut map = self.lock();
        match map.get(id) {
            Some(e) if e.expires <= now => {
                map.remove(id);
                Err(ClaimError::Unknown)
            }
            Some(e) if e.owner != principal => Err(ClaimError::Owner(e.owner.clone())),
            Some(e) => Ok(e.clone()),
            None => Err(ClaimError::Unknown),
        }
    }

    /// How many handles are followed.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether no handle is followed.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Whether `method` names a task handle.
pub fn names_task(method: Option<&str>) -> bool {
    method.is_some_and(|m| METHODS.contains(&m))
}

/// The task id a `tasks/*` request names.
pub fn task_id(msg: &Message) -> Option<&str> {
    msg.params()?.get("taskId")?.as_str()
}

/// Whether `msg` is a `CreateTaskResult` (a task handle): 2026-07-28's
/// flat `resultType: "task"`, or 2025-11-25's `task` object (the
/// experimental tasks a 2025-11-25 server may still hand out).
pub fn is_handle(msg: &Message) -> bool {
    msg.kind == Kind::Response && msg.result().is_some_and(|r| task_of(r).is_some())
}

/// The task a handle result describes: the result itself (2026-07-28,
/// `resultType: "task"`) or its `task` (2025-11-25).
fn task_of(result: &Value) -> Option<&Value> {
    if result.get("resultType").and_then(Value::as_str) == Some("task") {
        return Some(result);
    }
    result
        .get("task")
        .filter(|t| t.get("taskId").is_some_and(Value::is_string))
}

/// How long the agent follows a handle whose task is `task`: its
/// `ttlSeconds` (2026-07-28) or `ttl` in milliseconds (2025-11-25), at
/// most `MAX_TTL`.
pub fn ttl(task: &Value) -> Duration {
    let secs = task.get("ttlSeconds").and_then(Value::as_u64);
    let millis = task.get("ttl").and_then(Value::as_u64);
    match (secs, millis) {
        (Some(s), _) => Duration::from_secs(s).min(MAX_TTL),
        (None, Some(ms)) => Duration::from_millis(ms).min(MAX_TTL),
        (None, None) => MAX_TTL,
    }
}

/// The handle `answer` hands out for the call `call` (its pending
/// event), as the registry keeps it; `None` when it is no handle to a
/// tool call, or names no task id.
pub fn handle_of(call: &ExchangeEvent, answer: &Message, now: Instant) -> Option<(String, Handle)> {
    if call.method.as_deref() != Some("tools/call") || !is_handle(answer) {
        return None;
    }
    let task = task_of(answer.result()?)?;
    let id = task.get("taskId")?.as_str()?.to_string();
    let owner = call.caller.as_ref().map(|c| c.principal())?;
    let h = Handle {
        owner,
        tool: call.target.clone().unwrap_or_default(),
        decision: call.decision.clone(),
        call_id: call.jsonrpc_id.clone(),
        session: call.session_id.clone(),
        expires: now + ttl(task),
    };
    Some((id, h))
}

/// Whether `msg`, an answer to a `request_method` request, bears a task
/// (a handle, or a `tasks/get` answer): its `taskId` and `requestState`
/// are kept out of masking.
pub fn bears_task(msg: &Message, request_method: Option<&str>) -> bool {
    is_handle(msg) || (msg.kind == Kind::Response && request_method == Some("tasks/get"))
}

/// Whether `msg`, an answer to a `request_method` request, is a task's
/// state carrying `inputRequests` (an `input_required` task): judged as
/// MRTR input requests are, whatever its `status` says, since a client
/// may act on them either way.
pub fn asks_input(msg: &Message, request_method: Option<&str>) -> bool {
    request_method == Some("tasks/get")
        && msg.kind == Kind::Response
        && msg
            .result()
            .is_some_and(|r| r.get("inputRequests").is_some())
}

/// Takes the `inputRequests` out of a `notifications/tasks/status` (it
/// may carry a whole `input_required` task): they are judged on a
/// `tasks/get` answer only, and the client, told `input_required`, polls
/// for them there. Returns whether it took any.
pub fn withhold_input(msg: &mut Message) -> bool {
    if msg.kind != Kind::Notification || msg.method() != Some("notifications/tasks/status") {
        return false;
    }
    let params = msg.value.get_mut("params").and_then(Value::as_object_mut);
    if params.and_then(|p| p.remove("inputRequests")).is_none() {
        return false;
    }
    // The value no longer matches the original bytes.
    msg.raw = None;
    tracing::info!("input requests of a task status notification withheld: judged on tasks/get");
    true
}

/// Follows the handle `answer` hands out for `call` (its pending event),
/// if it is one.
pub fn learn(tasks: &Tasks, call: &ExchangeEvent, answer: &Message) {
    let Some((id, h)) = handle_of(call, answer, Instant::now()) else {
        if is_handle(answer) {
            tracing::warn!(method = ?call.method, "task handle for no tool call by a known caller: not followed");
        }
        return;
    };
    let asked = solicited(call.params.as_ref());
    tracing::info!(task = %id, tool = %h.tool, caller = %h.owner, solicited = asked, "task handle followed");
    tasks.learn(&id, h, Instant::now());
}

/// Whether the call `params` asked for tasks (named the extension in its
/// per-request capabilities); a handle to a call that did not is
/// unsolicited, followed all the same.
pub fn solicited(params: Option<&Value>) -> bool {
    params
        .and_then(|p| p.get("_meta"))
        .and_then(|m| m.get(mcp_names::META_CLIENT_CAPABILITIES))
        .and_then(|c| c.get("extensions"))
        .and_then(|e| e.get(EXTENSION))
        .is_some()
}

/// For a `tasks/*` request by `principal`: the handle it names, if the
/// caller may use it (`Ok(None)`: the message names no task). No task id,
/// or no caller, is an unknown handle.
pub fn check(
    tasks: &Tasks,
    msg: &Message,
    principal: Option<&str>,
    now: Instant,
) -> Result<Option<Handle>, Refusal> {
    if !names_task(msg.method()) {
        return Ok(None);
    }
    let id = task_id(msg).unwrap_or_default();
    let claimed = match principal {
        Some(p) if !id.is_empty() => tasks.claim(id, p, now),
        _ => Err(ClaimError::Unknown),
    };
    claimed.map(Some).map_err(|e| {
        tracing::warn!(task = %id, caller = ?principal, error = ?e, method = ?msg.method(), "task request refused");
        refusal(id, &e)
    })
}

/// Stamps the row of a `tasks/*` request for handle `h`: it is about
/// `h`'s tool, and a `tasks/get` (or 2025-11-25 `tasks/result`) going
/// upstream carries the call's decision, whose `@mask` profile its answer
/// is masked with.
pub fn stamp(ev: &mut ExchangeEvent, h: &Handle, forwarded: bool) {
    ev.target = Some(h.tool.clone());
    if forwarded && matches!(ev.method.as_deref(), Some("tasks/get" | "tasks/result")) {
        ev.decision = h.decision.clone();
    }
}

/// The refusal of a `tasks/*` request `e` keeps from the server.
pub fn refusal(id: &str, e: &ClaimError) -> Refusal {
    match e {
        ClaimError::Owner(_) => Refusal::new(
            Reason::SessionOwner,
            format!("task {id:?} belongs to another identity"),
        ),
        ClaimError::Unknown => Refusal::new(
            Reason::UnknownSession,
            format!(
                "task {id:?} is unknown to the agent: no server handed it out here (or it \
                 expired, or the agent restarted since); call the tool again"
            ),
        ),
    }
}

#[cfg(test)]
mod tests;
