//! An SSE answer relayed event by event: a task reads the upstream
//! stream, each event goes through `State::on_event`, and what comes out
//! is handed to the client through a small channel.

use std::{
    pin::Pin,
    task::{Context, Poll},
    time::Duration,
};

use bytes::Bytes;
use http_body::Frame;
use http_body_util::BodyExt;
use serde_json::Value;
use tokio::sync::mpsc;

use super::{State, tell};
use crate::error::{Reason, Refusal};
use crate::mcp::exchange::Forwarded;
use crate::mcp::sse::{Parser, SseError, serialize};
use crate::proxy::{
    body::{BoxError, ProxyBody},
    upstream::UpstreamBody,
};

/// How often a POST's SSE answer checks whether the client has answered
/// the server's request it waits on.
const CLIENT_TURN_POLL: Duration = Duration::from_millis(200);

/// An SSE answer: a task reads the upstream stream and hands each event on
/// through a small channel, so at most one event (plus the channel's few)
/// is in memory, and a client that stops reading slows the server down.
pub fn sse(
    mut body: UpstreamBody,
    mut st: State,
    expected: Vec<String>,
    denials: Vec<Value>,
    guard: Option<Forwarded>,
) -> ProxyBody {
    let (tx, rx) = mpsc::channel::<Bytes>(4);
    tokio::spawn(async move {
        // Dropped with the task, after `finish` (or if the task is cut
        // short): see `Forwarded`.
        let _guard = guard;
        for d in &denials {
            if tx
                .send(serialize(Some("message"), None, &d.to_string()))
                .await
                .is_err()
            {
                return;
            }
        }
        let profile = st.call_profile(&expected);
        let mut parser = Parser::new(st.max_message);
        let mut end = Refusal::new(
            Reason::NoResponse,
            "the server's stream ended without a response",
        );
        // The 200 head is out, so a server that stops answering cannot get
        // the client a 504; each waiting request gets `upstream_timeout` instead, and
        // the task, the client and the upstream port are freed. Progress
        // notifications count as an answer; keep-alive comments do not.
        let quiet = st.answer_timeout.filter(|_| !expected.is_empty());
        let mut deadline = quiet.map(|q| tokio::time::Instant::now() + q);
        let mut client_turn = false;
        'read: loop {
            let next = match deadline {
                Some(d) => tokio::time::timeout_at(d, body.frame()).await.ok(),
                None => Some(body.frame().await),
            };
            let Some(next) = next else {
                let quiet = quiet.unwrap_or_default();
                let now = tokio::time::Instant::now();
                if st.sessions.server_waiting(&st.origin.key) {
                    // The server waits on the client (a sampling or
                    // elicitation answer, perhaps a human's): its silence
                    // is not a fault. Look again soon; once the client has
                    // answered, the server gets a whole period.
                    client_turn = true;
                    deadline = Some(now + CLIENT_TURN_POLL.min(quiet));
                    continue;
                }
                if std::mem::take(&mut client_turn) {
                    deadline = Some(now + quiet);
                    continue;
                }
                match st.time_out(&expected, quiet, &tx).await {
                    Some(error) => {
                        end = error;
                        break;
                    }
                    // All answered; the server may keep its stream open.
                    None => deadline = None,
                }
                continue;
            };
            let frame = match next {
                None => break,
                Some(Err(e)) => {
                    tracing::info!(conn = st.origin.conn.id, error = %e, "upstream stream failed");
                    end = Refusal::new(
                        Reason::UpstreamUnavailable,
                        format!("upstream stream failed: {e}"),
                    );
                    break;
                }
                Some(Ok(f)) => f,
            };
            let Ok(data) = frame.into_data() else {
                continue;
            };
            match parser.push(&data) {
                Ok(events) => {
                    for ev in events {
                        if deadline.is_some()
                            && ev.data.as_deref().is_some_and(|d| !d.trim().is_empty())
                        {
                            deadline = quiet.map(|q| tokio::time::Instant::now() + q);
                        }
                        let out = st.on_event(ev, profile.as_deref());
                        if out.is_empty() {
                            continue;
                        }
                        if tx.send(out).await.is_err() {
                            end = Refusal::new(Reason::ClientGone, "the client went away");
                            break 'read;
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!(conn = st.origin.conn.id, error = %e, "upstream SSE stream cut");
                    let reason = match e {
                        SseError::TooLarge(_) => Reason::ServerMessageTooLarge,
                        SseError::Utf8 => Reason::UpstreamUnavailable,
                    };
                    end = Refusal::new(reason, e.to_string());
                    // Tell the client, per request it is waiting on; then
                    // the stream ends (the rest is dropped below).
                    let ids = expected.iter().filter_map(|k| serde_json::from_str(k).ok());
                    tell(&tx, ids, &end).await;
                    break;
                }
            }
        }
        // Never forwarded: what follows an event that cut the stream (the
        // oversized event itself, or the events after a non-UTF-8 one), or
        // an unfinished last event (which SSE clients discard anyway). No
        // phase has seen these bytes, so none has masked them.
        let rest = parser.leftover();
        if !rest.is_empty() {
            tracing::debug!(
                conn = st.origin.conn.id,
                bytes = rest.len(),
                "dropped the unread rest of the upstream stream"
            );
        }
        st.finish(&expected, &end);
    });
    http_body_util::BodyExt::boxed(ChannelBody { rx })
}

struct ChannelBody {
    rx: mpsc::Receiver<Bytes>,
}

impl http_body::Body for ChannelBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.get_mut()
            .rx
            .poll_recv(cx)
            .map(|o| o.map(|b| Ok(Frame::data(b))))
    }
}
