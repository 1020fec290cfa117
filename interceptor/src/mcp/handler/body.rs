//! Step `body`: a POST's body, read within the port's limits
//! (`http.max_request_body`, `http.idle_timeout_ms`); one it cannot read
//! is refused with its row.

use std::time::Duration;

use bytes::Bytes;

use super::{McpHandler, route::Unread, run::Stop};
use crate::{
    error::{Reason, Refusal},
    mcp::exchange::Origin,
    proxy::{
        ConnCtx,
        body::{ReadError, read_limited},
    },
};

impl McpHandler {
    /// The POST's body (read already when `route` sniffed it).
    pub(super) async fn body(
        &self,
        body: Unread,
        origin: &Origin,
        ctx: &ConnCtx,
    ) -> Result<Bytes, Stop> {
        let body = match body {
            Unread::Read(bytes) => return Ok(bytes),
            Unread::Incoming(b) => b,
        };
        let idle = Duration::from_millis(ctx.http.idle_timeout_ms);
        read_limited(body, ctx.http.max_request_body, idle)
            .await
            .map_err(|e| {
                let n = match e {
                    ReadError::TooLarge(max) => max as u64,
                    _ => 0,
                };
                self.reject(origin, body_refusal(e), n)
            })
    }
}

/// The refusal for a request body the agent could not read.
pub(super) fn body_refusal(e: ReadError) -> Refusal {
    match e {
        ReadError::TooLarge(m) => Refusal::new(
            Reason::RequestTooLarge,
            format!("request body larger than {m} bytes"),
        ),
        ReadError::Idle(d) => Refusal::new(
            Reason::RequestTimeout,
            format!("request body stalled for {d:?}"),
        ),
        ReadError::Io(err) => Refusal::new(
            Reason::ParseError,
            format!("reading the request body failed: {err}"),
        ),
    }
}
