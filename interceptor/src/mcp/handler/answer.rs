//! Step `answer`: the server's answer to a POST (or a GET), JSON or SSE,
//! each message paired with its request and through the server-message
//! phases (`stream`). A session the server opens is bound to the caller
//! first (`adopt_session`); an answer the agent cannot read (a type it
//! does not judge, a compressed body) is not forwarded.

use std::time::Duration;

use http::{HeaderMap, HeaderValue, Response, header, response};
use serde_json::{Value, json};

use super::{McpHandler, encoding, forward::Sent, header_str};
use crate::{
    mcp::{
        exchange::{self, Forwarded, Origin},
        stream::{self, ctype::Answer},
    },
    pipeline::{Transport, event::now_us},
    proxy::{
        ConnCtx,
        body::{ProxyBody, full},
        http::{json_response, refusal_response, strip_hop_headers},
        upstream::UpstreamBody,
    },
};

/// What a POST's answer must still settle: the requests waiting for it,
/// denials to add, and whether the client sent a batch.
pub(super) struct Waiting {
    pub expected: Vec<String>,
    pub denials: Vec<Value>,
    pub batch: bool,
    /// Records the forwarded requests if the handler is dropped first.
    pub guard: Option<Forwarded>,
}

impl Waiting {
    /// A GET stream's: no request of its own waits for it.
    pub(super) fn none() -> Self {
        Self {
            expected: Vec::new(),
            denials: Vec::new(),
            batch: false,
            guard: None,
        }
    }
}

impl McpHandler {
    /// Pairs and runs the phases on every server message of the answer.
    pub(super) async fn answer(
        &self,
        sent: Sent,
        origin: &mut Origin,
        ctx: &ConnCtx,
    ) -> Response<ProxyBody> {
        let Sent {
            resp,
            mut waiting,
            reply,
        } = sent;
        let (mut parts, body) = resp.into_parts();
        strip_hop_headers(&mut parts.headers);
        let status = parts.status.as_u16();
        if let Err(refused) = self.adopt_session(&parts.headers, origin, &mut waiting.guard) {
            return *refused;
        }
        let ctype = header_str(&parts.headers, header::CONTENT_TYPE.as_str()).unwrap_or_default();
        let answer = stream::ctype::answer(&parts.headers);
        let st = self.stream_state(origin, ctx, status, reply, &waiting.expected);
        canonical_type(&mut parts.headers, answer);
        let unreadable = self.unreadable(&parts.headers, answer, &ctype, origin, &waiting, status);
        if let Some(why) = unreadable {
            let (status, body) = stream::refuse_answer(&st, why, waiting.denials, waiting.batch);
            self.free(origin);
            return json_response(status, &body);
        }
        let Waiting {
            expected,
            denials,
            batch,
            guard,
        } = waiting;
        match answer {
            Answer::Sse => {
                parts.headers.remove(header::CONTENT_LENGTH);
                let out = stream::sse(body, st, expected, denials, guard);
                Response::from_parts(parts, out)
            }
            Answer::Json => {
                let idle = Duration::from_millis(ctx.http.idle_timeout_ms);
                match stream::json(body, st, expected, denials, batch, idle).await {
                    Ok(bytes) => {
                        parts.headers.remove(header::CONTENT_LENGTH);
                        Response::from_parts(parts, full(bytes))
                    }
                    Err(refusal) => refusal_response(&refusal, None),
                }
            }
            Answer::Other => self.opaque(parts, body, st, &expected, guard, ctx).await,
        }
    }

    /// What the answer's stream needs: its session, its limits, the
    /// requests it answers.
    fn stream_state(
        &self,
        origin: &Origin,
        ctx: &ConnCtx,
        status: u16,
        reply: Option<stream::Replier>,
        expected: &[String],
    ) -> stream::State {
        let post = origin.http_method == "POST";
        stream::State {
            pipeline: self.pipeline.clone(),
            sessions: self.sessions.clone(),
            origin: origin.clone(),
            status,
            max_message: ctx.http.max_message,
            first_byte_us: post.then(now_us),
            reply,
            answer_timeout: post
                .then(|| Duration::from_millis(ctx.http.upstream_response_timeout_ms)),
            expected: expected.to_vec(),
        }
    }

    /// Why the answer may not go to the client, if it may not: a stream
    /// or a request's answer of a type the agent cannot read (a client
    /// might, see `stream::ctype`; a legacy POST's 202 carries none), or
    /// a body the server compressed although asked for identity (see
    /// `encoding`): the agent cannot judge or mask what it cannot read
    /// (masked as bytes, a compressed body would pass unmasked).
    fn unreadable(
        &self,
        headers: &HeaderMap,
        answer: Answer,
        ctype: &str,
        origin: &Origin,
        waiting: &Waiting,
        status: u16,
    ) -> Option<String> {
        let carries_messages = origin.http_method == "GET"
            || (!waiting.expected.is_empty() && origin.transport != Transport::Sse);
        if answer == Answer::Other && carries_messages && (200..300).contains(&status) {
            return Some(stream::content_type_refusal(ctype));
        }
        let coding = encoding::coded(headers)?;
        (answer != Answer::Other || self.pipeline.rewrites_server_data())
            .then(|| encoding::refusal(&coding))
    }

    /// An answer with no message in it (202 for notifications, or an
    /// error page). When masking, it is read and masked like any server
    /// data: forwarded as it came, it would be the one way past the
    /// masking.
    async fn opaque(
        &self,
        mut parts: response::Parts,
        body: UpstreamBody,
        st: stream::State,
        expected: &[String],
        mut guard: Option<Forwarded>,
        ctx: &ConnCtx,
    ) -> Response<ProxyBody> {
        let out = if self.pipeline.rewrites_server_data() {
            let idle = Duration::from_millis(ctx.http.idle_timeout_ms);
            parts.headers.remove(header::CONTENT_LENGTH);
            stream::opaque_body(body, &st, expected, idle)
                .await
                .map(full)
        } else {
            Ok(crate::proxy::body::stream(body))
        };
        let (origin, status) = (&st.origin, st.status);
        // Requests that expected an answer will not get it here (on the
        // legacy SSE transport, a POST's answer comes on the GET stream).
        if (200..300).contains(&status)
            && origin.transport == Transport::Sse
            && let Some(g) = guard.take()
        {
            // Answered on the GET stream, which settles them.
            g.disarm();
        }
        if !(200..300).contains(&status) || origin.transport != Transport::Sse {
            let pending = self.sessions.take_unanswered(&origin.key, expected);
            let none = format!("upstream answered HTTP {status} without a JSON-RPC response");
            let err = match &out {
                Ok(_) => json!({ "code": status as i64, "message": none }),
                Err(refused) => refused.error(),
            };
            exchange::unanswered(&self.pipeline, pending, Some(status), err);
        }
        self.free(origin);
        match out {
            Ok(b) => Response::from_parts(parts, b),
            Err(refusal) => refusal_response(&refusal, None),
        }
    }
}

/// What the agent judged goes out under the type it judged it as,
/// spelled as every client reads it.
fn canonical_type(headers: &mut HeaderMap, answer: Answer) {
    let canonical = match answer {
        Answer::Sse => "text/event-stream",
        Answer::Json => "application/json",
        Answer::Other => return,
    };
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(canonical));
}
