//! An SSE answer relayed event by event: a task reads the upstream
//! stream, each event goes through `State::on_event`, and what comes out
//! is handed to the client through a small channel.

use std::{task::Context, time::Duration};

use bytes::Bytes;
use http_body::Frame;
use http_body_util::BodyExt;
use serde_json::Value;
use tokio::{sync::mpsc, time::Instant};

use super::{State, frames, tell};
use crate::error::{Reason, Refusal};
use crate::mcp::exchange::Forwarded;
use crate::mcp::sse::{Parser, SseError, serialize};
use crate::proxy::{body::ProxyBody, upstream::UpstreamBody};

/// How often a POST's SSE answer checks whether the client has answered
/// the server's request it waits on.
const CLIENT_TURN_POLL: Duration = Duration::from_millis(200);

/// An SSE answer: a task reads the upstream stream and hands each event on
/// through a small channel, so at most one event (plus the channel's few)
/// is in memory, and a client that stops reading slows the server down.
pub fn sse(
    body: UpstreamBody,
    st: State,
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
        let mut relay = Relay::new(st, expected, tx);
        let end = relay.run(body).await;
        relay.finish(&end);
    });
    frames::body(rx)
}

/// The client's end of the relay: each event the task sends is one frame.
impl frames::Source for mpsc::Receiver<Bytes> {
    fn poll_next(&mut self, cx: &mut Context<'_>) -> frames::Polled {
        self.poll_recv(cx).map(|o| o.map(|b| Ok(Frame::data(b))))
    }
}

/// What waiting for the upstream stream gave.
enum Next {
    /// The server sent nothing before the deadline.
    Silent,
    /// The stream ended.
    Ended,
    /// The stream failed.
    Failed(hyper::Error),
    /// A frame of the stream.
    Frame(Frame<Bytes>),
    /// The client closed its end (nothing to relay to any more).
    ClientGone,
}

/// The relay task's state: the answer's [`State`], the requests it is for,
/// and the silence deadline.
struct Relay {
    st: State,
    expected: Vec<String>,
    /// The call's masking profile (see [`State::call_profile`]).
    profile: Option<String>,
    parser: Parser,
    tx: mpsc::Sender<Bytes>,
    /// The longest silence allowed while a request waits (see
    /// `State::answer_timeout`); `None`: the stream may idle.
    quiet: Option<Duration>,
    deadline: Option<Instant>,
    /// The server was last seen waiting on the client.
    client_turn: bool,
    /// The answer is a `subscriptions/listen` stream (see `listen`).
    listen: bool,
}

impl Relay {
    /// The relay of `st`'s answer to `expected`.
    fn new(st: State, expected: Vec<String>, tx: mpsc::Sender<Bytes>) -> Self {
        let profile = st.call_profile(&expected);
        let parser = Parser::new(st.max_message);
        // The 200 head is out, so a server that stops answering cannot get
        // the client a 504; each waiting request gets `upstream_timeout` instead, and
        // the task, the client and the upstream port are freed. Progress
        // notifications count as an answer; keep-alive comments do not.
        let quiet = st.answer_timeout.filter(|_| !expected.is_empty());
        let listen = st.is_listen(&expected);
        Self {
            st,
            expected,
            profile,
            parser,
            tx,
            quiet,
            deadline: quiet.map(|q| Instant::now() + q),
            client_turn: false,
            listen,
        }
    }

    /// Relays the stream until it ends; returns the refusal of the
    /// requests left unanswered.
    async fn run(&mut self, mut body: UpstreamBody) -> Refusal {
        loop {
            let frame = match self.next(&mut body).await {
                Next::Silent => match self.on_silence().await {
                    Some(end) => return end,
                    None => continue,
                },
                Next::Ended => {
                    return Refusal::new(
                        Reason::NoResponse,
                        "the server's stream ended without a response",
                    );
                }
                Next::Failed(e) => {
                    tracing::info!(conn = self.st.origin.conn.id, error = %e, "upstream stream failed");
                    return Refusal::new(
                        Reason::UpstreamUnavailable,
                        format!("upstream stream failed: {e}"),
                    );
                }
                Next::Frame(f) => f,
                Next::ClientGone => {
                    return Refusal::new(Reason::ClientGone, "the client went away");
                }
            };
            let Ok(data) = frame.into_data() else {
                continue;
            };
            if let Some(end) = self.on_data(&data).await {
                return end;
            }
        }
    }

    /// The next frame of `body`, silence past the deadline, or the
    /// client gone: a stream that may idle (a listen stream) would
    /// otherwise hold the server's stream open until its next event.
    async fn next(&self, body: &mut UpstreamBody) -> Next {
        let frame = async {
            match self.deadline {
                Some(d) => tokio::time::timeout_at(d, body.frame()).await.ok(),
                None => Some(body.frame().await),
            }
        };
        let next = tokio::select! {
            n = frame => n,
            () = self.tx.closed() => return Next::ClientGone,
        };
        match next {
            None => Next::Silent,
            Some(None) => Next::Ended,
            Some(Some(Err(e))) => Next::Failed(e),
            Some(Some(Ok(f))) => Next::Frame(f),
        }
    }

    /// The server was silent until the deadline: looks again later if it
    /// waits on the client, else times out the requests still waiting.
    /// Returns the refusal that ends the stream, if any.
    async fn on_silence(&mut self) -> Option<Refusal> {
        let quiet = self.quiet.unwrap_or_default();
        let now = Instant::now();
        if self.st.sessions.server_waiting(&self.st.origin.key) {
            // The server waits on the client (a sampling or elicitation
            // answer, perhaps a human's): its silence is not a fault. Look
            // again soon; once the client has answered, the server gets a
            // whole period.
            self.client_turn = true;
            self.deadline = Some(now + CLIENT_TURN_POLL.min(quiet));
            return None;
        }
        if std::mem::take(&mut self.client_turn) {
            self.deadline = Some(now + quiet);
            return None;
        }
        let end = self.st.time_out(&self.expected, quiet, &self.tx).await;
        if end.is_none() {
            // All answered; the server may keep its stream open.
            self.deadline = None;
        }
        end
    }

    /// One chunk of the stream: each event it completes goes through the
    /// phases and on to the client. Returns the refusal that ends the
    /// stream, if any.
    async fn on_data(&mut self, data: &[u8]) -> Option<Refusal> {
        let events = match self.parser.push(data) {
            Ok(events) => events,
            Err(e) => return Some(self.cut(e).await),
        };
        for ev in events {
            if self.deadline.is_some() && ev.data.as_deref().is_some_and(|d| !d.trim().is_empty()) {
                if self.listen {
                    // The server answered the listen request (its first
                    // frame is the ack): from now on the stream may idle
                    // until either side closes it.
                    self.quiet = None;
                }
                self.deadline = self.quiet.map(|q| Instant::now() + q);
            }
            let out = self.st.on_event(ev, self.profile.as_deref());
            if out.is_empty() {
                continue;
            }
            if self.tx.send(out).await.is_err() {
                return Some(Refusal::new(Reason::ClientGone, "the client went away"));
            }
        }
        None
    }

    /// The stream cannot be read on (an oversized or non-UTF-8 event):
    /// each request the client waits on is told why.
    async fn cut(&self, e: SseError) -> Refusal {
        tracing::warn!(conn = self.st.origin.conn.id, error = %e, "upstream SSE stream cut");
        let reason = match e {
            SseError::TooLarge(_) => Reason::ServerMessageTooLarge,
            SseError::Utf8 => Reason::UpstreamUnavailable,
        };
        let end = Refusal::new(reason, e.to_string());
        // Then the stream ends (the rest is dropped in `finish`).
        let ids = self
            .expected
            .iter()
            .filter_map(|k| serde_json::from_str(k).ok());
        tell(&self.tx, ids, &end).await;
        end
    }

    /// Drops what no phase has seen and settles the requests still waiting
    /// with `end`.
    fn finish(&mut self, end: &Refusal) {
        // Never forwarded: what follows an event that cut the stream (the
        // oversized event itself, or the events after a non-UTF-8 one), or
        // an unfinished last event (which SSE clients discard anyway). No
        // phase has seen these bytes, so none has masked them.
        let rest = self.parser.leftover();
        if !rest.is_empty() {
            tracing::debug!(
                conn = self.st.origin.conn.id,
                bytes = rest.len(),
                "dropped the unread rest of the upstream stream"
            );
        }
        if self.listen && end.reason() == Reason::ClientGone {
            self.st.close_listen(&self.expected);
        }
        self.st.finish(&self.expected, end);
    }
}
