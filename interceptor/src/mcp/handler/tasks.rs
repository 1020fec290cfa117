//! Part of step `decide`: a `tasks/*` request names a task handle (see
//! `mcp::tasks`); only the caller whose tool call created it may use it.
//! Any other, or a handle the agent never saw, is refused here with a
//! `denied` row (`decided_by = 'identity'`, as for a session another
//! identity opened) and never forwarded.

use std::time::Instant;

use serde_json::Value;

use super::McpHandler;
use crate::{
    jsonrpc::{Kind, Message},
    mcp::{exchange::Origin, session::SessionInfo, tasks},
    pipeline::{Direction, EventKind},
};

impl McpHandler {
    /// The handle `msg` names (`Ok(None)`: it names none). `Err`: refused,
    /// recorded, and (a request) answered in `denials`.
    pub(super) fn task_handle(
        &self,
        origin: &Origin,
        msg: &Message,
        info: &SessionInfo,
        denials: &mut Vec<Value>,
    ) -> Result<Option<tasks::Handle>, ()> {
        let principal = origin.caller.as_ref().map(|c| c.principal());
        let refusal = match tasks::check(
            self.sessions.tasks(),
            msg,
            principal.as_deref(),
            Instant::now(),
        ) {
            Ok(h) => return Ok(h),
            Err(r) => r,
        };
        let mut ev = origin.event(EventKind::Denied, Direction::ClientToServer, msg, info);
        ev.error = Some(refusal.error());
        let answer = (msg.kind == Kind::Request).then(|| refusal.to_jsonrpc(msg.id().cloned()));
        self.deny(ev, "identity", answer, denials);
        Err(())
    }
}
