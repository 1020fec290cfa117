//! Keeping a held request's client waiting. When a phase holds a POST (a
//! call waiting for human approval) and the client accepts SSE, the agent
//! answers at once with an SSE stream: a comment every keep-alive period
//! (and a `notifications/progress` when the request carried a
//! `progressToken`), then the server's answer as ordinary SSE events.
//! Clients and load balancers see bytes flowing and do not time out; a
//! client that goes away drops the stream, which drops the held request
//! (and abandons its approval). Requests that are not held are untouched.

use std::{
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll, ready},
    time::Duration,
};

use bytes::{Bytes, BytesMut};
use http::{HeaderValue, Response, StatusCode, header};
use http_body::{Body, Frame};
use serde_json::{Value, json};

use crate::error::{Reason, Refusal};

use crate::{
    mcp::stream::{ctype, frames},
    pipeline::HoldSignal,
    proxy::body::ProxyBody,
};

type Work = Pin<Box<dyn Future<Output = Response<ProxyBody>> + Send>>;

/// Runs `work`; if a phase holds it first, answers with a kept-alive SSE
/// stream that ends with `work`'s response.
pub async fn keep_alive(
    work: Work,
    signal: Arc<HoldSignal>,
    every: Duration,
) -> Response<ProxyBody> {
    let mut work = work;
    tokio::select! {
        biased;
        r = &mut work => return r,
        _ = signal.held() => {}
    }
    let (what, token) = signal
        .what()
        .unwrap_or_else(|| ("held by the agent".to_string(), None));
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let body = Held {
        work: Some(std::sync::Mutex::new(work)),
        tick,
        ticks: 0,
        what,
        token,
        inner: None,
        done: false,
    };
    let mut r = Response::new(frames::body(body));
    *r.status_mut() = StatusCode::OK;
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    r
}

/// Whether the client takes an SSE answer to a POST.
pub fn accepts_sse(h: &http::HeaderMap) -> bool {
    h.get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("text/event-stream"))
}

enum Inner {
    /// The server answered with SSE: passed through as it comes.
    Sse(ProxyBody),
    /// A JSON answer, collected (it is already in memory) and sent as
    /// one event per message.
    Json(ProxyBody, BytesMut),
}

impl Inner {
    /// How `resp`, the held request's answer, is passed on.
    fn of(resp: Response<ProxyBody>) -> Self {
        let sse = resp
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| ctype::parse(v) == ctype::Answer::Sse);
        let body = resp.into_body();
        if sse {
            Inner::Sse(body)
        } else {
            Inner::Json(body, BytesMut::new())
        }
    }
}

struct Held {
    /// In a mutex only to make the body `Sync` (polled through `get_mut`,
    /// never locked).
    work: Option<std::sync::Mutex<Work>>,
    tick: tokio::time::Interval,
    ticks: u64,
    what: String,
    token: Option<Value>,
    inner: Option<Inner>,
    done: bool,
}

impl Held {
    fn keepalive(&mut self) -> Bytes {
        self.ticks += 1;
        let mut out = format!(": {}\n\n", self.what.replace(['\r', '\n'], " "));
        if let Some(token) = &self.token {
            let n = json!({
                "jsonrpc": "2.0",
                "method": "notifications/progress",
                "params": { "progressToken": token, "progress": self.ticks, "message": self.what },
            });
            out.push_str(&format!("event: message\ndata: {n}\n\n"));
        }
        Bytes::from(out)
    }
}

/// The collected JSON answer as SSE events (a batch: one per message).
fn events(buf: &[u8]) -> Bytes {
    let mut out = String::new();
    let mut push = |v: &Value| out.push_str(&format!("event: message\ndata: {v}\n\n"));
    match serde_json::from_slice::<Value>(buf) {
        Ok(Value::Array(items)) => items.iter().for_each(&mut push),
        Ok(v) => push(&v),
        Err(_) if buf.is_empty() => {}
        Err(e) => {
            tracing::warn!(error = %e, "held request: the answer was not JSON");
            let refusal = Refusal::new(Reason::NoResponse, "the server's answer was not JSON");
            push(&refusal.to_jsonrpc(None));
        }
    }
    Bytes::from(out)
}

impl frames::Source for Held {
    fn poll_next(&mut self, cx: &mut Context<'_>) -> frames::Polled {
        loop {
            match &mut self.inner {
                Some(Inner::Sse(b)) => return Pin::new(b).poll_frame(cx),
                Some(Inner::Json(b, buf)) => match ready!(Pin::new(b).poll_frame(cx)) {
                    Some(Ok(f)) => {
                        if let Ok(d) = f.into_data() {
                            buf.extend_from_slice(&d);
                        }
                        continue;
                    }
                    Some(Err(e)) => return Poll::Ready(Some(Err(e))),
                    None => {
                        let out = events(buf);
                        self.inner = None;
                        self.done = true;
                        return Poll::Ready(Some(Ok(Frame::data(out))));
                    }
                },
                None if self.done => return Poll::Ready(None),
                None => {}
            }
            if let Some(w) = &mut self.work
                && let Poll::Ready(resp) = w
                    .get_mut()
                    .unwrap_or_else(|p| p.into_inner())
                    .as_mut()
                    .poll(cx)
            {
                self.work = None;
                self.inner = Some(Inner::of(resp));
                continue;
            }
            ready!(self.tick.poll_tick(cx));
            let frame = self.keepalive();
            return Poll::Ready(Some(Ok(Frame::data(frame))));
        }
    }
}
