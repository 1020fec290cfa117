//! Step `session`: the transport a POST uses and the session it belongs
//! to (a legacy message endpoint's, its `Mcp-Session-Id`, or a key of its
//! own), checked against its owner before its body is read. Also the
//! session a server opens in its answer (`adopt_session`).

use http::{HeaderValue, header, request::Parts};

use super::{McpHandler, header_str, route::Post, run::Stop};
use crate::{
    error::{Reason, Refusal},
    mcp::{
        exchange::{self, Forwarded, Origin},
        session::{ClaimError, LegacyError, OpenError},
        stateless,
    },
    pipeline::Transport,
    proxy::{ConnCtx, http::refusal_response},
};

impl McpHandler {
    /// Where the POST's messages travel; a session the POST opens is
    /// claimed for its caller.
    pub(super) fn session(&self, post: &Post, ctx: &ConnCtx) -> Result<Origin, Stop> {
        let target = post
            .head
            .uri
            .path_and_query()
            .map(|p| p.as_str().to_string())
            .unwrap_or_default();
        let legacy = self
            .sessions
            .legacy_session(&target)
            .map_err(|e| self.refuse_legacy(&post.head, ctx, &post.caller, &e))?;
        let header_sid = header_str(&post.head.headers, "mcp-session-id");
        let transport = if legacy.is_some() {
            Transport::Sse
        } else if stateless::is_stateless(&post.head.headers) {
            Transport::Stateless
        } else {
            Transport::StreamableHttp
        };
        let caller = Some(post.caller.clone());
        let origin = self.origin(&post.head, ctx, transport, legacy.or(header_sid), caller);
        self.owner(&origin)?;
        if !origin.in_session
            && let Some(c) = &origin.caller
        {
            // A session the server opens in answer inherits this owner.
            let _ = self.sessions.claim(&origin.key, &c.principal());
        }
        Ok(origin)
    }

    /// Refuses a request on a session another identity opened (hijack),
    /// or one the server does not know, `decided_by = 'identity'`.
    pub(super) fn owner(&self, origin: &Origin) -> Result<(), Stop> {
        let (Some(caller), true) = (&origin.caller, origin.in_session) else {
            return Ok(());
        };
        let principal = caller.principal();
        let Err(e) = self.sessions.claim(&origin.key, &principal) else {
            return Ok(());
        };
        let e = match e {
            ClaimError::Owner(owner) => {
                tracing::warn!(conn = origin.conn.id, session = %origin.key, caller = %principal, %owner, "session used by another identity: refused");
                Refusal::new(
                    Reason::SessionOwner,
                    "this session belongs to another identity",
                )
            }
            // MCP spec: a session id the server does not know gets 404,
            // and the client starts a new session. Never made an entry.
            ClaimError::Unknown => {
                tracing::info!(conn = origin.conn.id, session = %origin.key, caller = %principal, "unknown session: refused");
                Refusal::new(
                    Reason::UnknownSession,
                    "session not found: the server did not open it here, or it ended",
                )
            }
        };
        self.record_refused(origin, e.status().as_u16(), e.error(), 0, "identity");
        let mut r = refusal_response(&e, None);
        // Answered before the body is read: the connection cannot be reused.
        r.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
        Err(Box::new(r))
    }

    /// Refuses a POST to a legacy message endpoint whose session the
    /// agent cannot read one way, or that names no live session.
    fn refuse_legacy(
        &self,
        head: &Parts,
        ctx: &ConnCtx,
        caller: &std::sync::Arc<crate::identity::Caller>,
        e: &LegacyError,
    ) -> Stop {
        let reason = match e {
            LegacyError::Unknown => Reason::UnknownSession,
            _ => Reason::Ambiguous,
        };
        let refusal = Refusal::new(reason, e.to_string());
        self.refuse(head, ctx, Some(caller.clone()), refusal, 0)
    }

    /// Binds the session a server opened on its answer to a POST outside a
    /// session (its `initialize` answer) to that POST's caller, and moves
    /// its forwarded requests there; the answer to send instead when it
    /// cannot be bound.
    pub(super) fn adopt_session(
        &self,
        headers: &http::HeaderMap,
        origin: &mut Origin,
        guard: &mut Option<Forwarded>,
    ) -> Result<(), Stop> {
        let Some(sid) = header_str(headers, "mcp-session-id")
            .filter(|_| !origin.in_session && origin.http_method == "POST")
        else {
            return Ok(());
        };
        match self.sessions.open(&origin.key, &sid) {
            Ok(forgotten) => {
                let err = Refusal::new(
                    Reason::SessionEnded,
                    "session forgotten (idle, or its owner's oldest)",
                )
                .error();
                exchange::unanswered(&self.pipeline, forgotten, None, err);
                origin.key = sid;
                origin.in_session = true;
                if let Some(g) = guard {
                    g.rekey(&origin.key, true);
                }
                Ok(())
            }
            Err(e) => Err(self.refuse_session(origin, &e)),
        }
    }

    /// The server opened a session the agent will not bind: the client
    /// gets 503 and the requests of the POST an `unanswered` row.
    fn refuse_session(&self, origin: &Origin, e: &OpenError) -> Stop {
        tracing::warn!(conn = origin.conn.id, error = %e, "session opened by the server refused");
        let refusal = Refusal::new(Reason::SessionUnbound, e.to_string());
        let left = self.sessions.close(&origin.key);
        let status = refusal.status().as_u16();
        exchange::unanswered(&self.pipeline, left, Some(status), refusal.error());
        Box::new(refusal_response(&refusal, None))
    }
}
