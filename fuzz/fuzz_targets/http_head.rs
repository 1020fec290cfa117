//! Request heads and bodies. hyper parses HTTP/1.1 (and is fuzzed
//! upstream); what is the agent's own is what it does with the result:
//! - the body is read by `proxy::body::read_limited` (size limit, idle
//!   limit, any frame sequence: data, trailers, an error, a stall);
//! - the head's `Mcp-*` headers are compared with the body
//!   (`mcp::stateless`), since a mismatch would let a request be routed
//!   and logged as one thing and run as another;
//! - hop-by-hop headers are stripped before forwarding
//!   (`proxy::http::strip_hop_headers`), which reads `Connection`.
//!
//! Two modes, by the first byte's low bit:
//! - structured: header lines and a body in chunks built from the input,
//!   so the checks above see any header map and frame sequence;
//! - raw: the input is the bytes a client sends, served by the agent's own
//!   `proxy::http::serve` (its hyper settings and limits) over an
//!   in-memory pipe, with a handler doing what the MCP handler does before
//!   the pipeline (read, parse, check, strip). Smuggling shapes (CL with
//!   TE, duplicate CL, obs-fold) reach the same code as they would live.
//!
//! Both run in a runtime with paused time: a stalled body hits the idle
//! limit at once instead of after 60 s.
#![no_main]

use std::{
    collections::VecDeque,
    net::SocketAddr,
    pin::Pin,
    sync::{Arc, OnceLock},
    task::{Context, Poll},
    time::Duration,
};

use base64::Engine;
use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Request, StatusCode, header};
use http_body::{Frame, SizeHint};
use hyper::body::Incoming;
use interceptor::{
    config::Config,
    conn::ConnInfo,
    error::Reason,
    jsonrpc::{self, Kind},
    mcp::stateless,
    proxy::{
        ConnCtx, Handler,
        body::{ReadError, read_limited},
        http::{HandlerFuture, json_response, serve, strip_hop_headers},
    },
};
use libfuzzer_sys::fuzz_target;
use mcp_interceptor_fuzz::{paused_runtime, split};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const IDLE: Duration = Duration::from_secs(60);

thread_local! {
    static RT: tokio::runtime::Runtime = paused_runtime();
}

/// A body that yields the given frames, then ends, fails or stalls.
struct Frames {
    frames: VecDeque<Frame<Bytes>>,
    end: End,
    hint: SizeHint,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum End {
    Done,
    Fail,
    Stall,
}

impl http_body::Body for Frames {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        if let Some(f) = this.frames.pop_front() {
            return Poll::Ready(Some(Ok(f)));
        }
        match this.end {
            End::Done => Poll::Ready(None),
            End::Fail => {
                this.end = End::Done;
                Poll::Ready(Some(Err(std::io::Error::other("connection reset"))))
            }
            // Never woken: only the idle timeout ends the read.
            End::Stall => Poll::Pending,
        }
    }

    fn size_hint(&self) -> SizeHint {
        self.hint
    }
}

/// `Name: value` lines (invalid ones skipped; repeats kept).
fn headers(block: &[u8]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for line in block.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let value = line[colon + 1..].trim_ascii();
        if let (Ok(n), Ok(v)) = (
            HeaderName::from_bytes(&line[..colon]),
            HeaderValue::from_bytes(value),
        ) {
            h.append(n, v);
        }
    }
    h
}

/// A header as `stateless` reads it (the `=?base64?...?=` form decoded).
fn decoded(h: &HeaderMap, name: &str) -> Option<String> {
    let raw = h.get(name)?.to_str().ok()?;
    match raw
        .strip_prefix("=?base64?")
        .and_then(|r| r.strip_suffix("?="))
    {
        Some(b) => base64::engine::general_purpose::STANDARD
            .decode(b)
            .ok()
            .and_then(|b| String::from_utf8(b).ok()),
        None => Some(raw.to_string()),
    }
}

/// What the MCP handler does with a head and a whole body before any
/// phase: parse, check the stateless headers, strip hop headers.
fn after_body(headers: &mut HeaderMap, bytes: &Bytes) {
    if let Ok(body) = jsonrpc::parse(bytes) {
        let _ = stateless::is_stateless(headers);
        match stateless::check(headers, &body) {
            Err(e) => {
                assert!(
                    matches!(e.reason(), Reason::InvalidRequest | Reason::HeaderMismatch),
                    "{e:?}"
                );
            }
            // Passing means the headers say what the body does.
            Ok(()) => {
                let m = &body.messages()[0];
                if matches!(m.kind, Kind::Request | Kind::Notification) {
                    let method = m.method().unwrap_or_default();
                    assert_eq!(decoded(headers, "mcp-method").as_deref(), Some(method));
                    if matches!(method, "tools/call" | "resources/read" | "prompts/get") {
                        assert_eq!(decoded(headers, "mcp-name").as_deref(), m.target());
                    }
                }
            }
        }
    }
    let named: Vec<String> = headers
        .get_all(header::CONNECTION)
        .iter()
        .next()
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(',')
                .map(str::trim)
                .filter(|n| !n.is_empty())
                .map(str::to_ascii_lowercase)
                .collect()
        })
        .unwrap_or_default();
    strip_hop_headers(headers);
    for hop in [
        "connection",
        "transfer-encoding",
        "te",
        "trailer",
        "upgrade",
        "proxy-authorization",
        "proxy-authenticate",
        "keep-alive",
        "proxy-connection",
    ] {
        assert!(!headers.contains_key(hop), "{hop} forwarded");
    }
    for n in named {
        if HeaderName::from_bytes(n.as_bytes()).is_ok() {
            assert!(
                !headers.contains_key(n.as_str()),
                "{n} named by Connection forwarded"
            );
        }
    }
}

fn structured(ctl: u8, data: &[u8]) {
    let (head, body) = match data.windows(2).position(|w| w == b"\n\n") {
        Some(i) => (&data[..i], &data[i + 2..]),
        None => (data, &[][..]),
    };
    let mut h = headers(head);
    let s = split(body);
    let max = [0, 1, 16, 256, 4096, 4 << 20][usize::from(ctl >> 1) % 6];
    let end = [End::Done, End::Done, End::Fail, End::Stall][usize::from(ctl >> 4) % 4];
    let mut frames: VecDeque<Frame<Bytes>> = s
        .chunks
        .iter()
        .map(|c| Frame::data(Bytes::copy_from_slice(c)))
        .collect();
    if ctl & 0x40 != 0 {
        frames.push_back(Frame::trailers(h.clone()));
    }
    // hyper reports a Content-Length it will enforce as the exact size.
    let declared = h
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let hint = declared.map(SizeHint::with_exact).unwrap_or_default();
    let body = Frames { frames, end, hint };
    let got = RT.with(|rt| rt.block_on(read_limited(body, max, IDLE)));
    let total = s.payload.len();
    match &got {
        Ok(b) => {
            assert_eq!(end, End::Done);
            assert_eq!(&b[..], s.payload);
            assert!(b.len() <= max);
        }
        Err(ReadError::TooLarge(m)) => {
            assert_eq!(*m, max);
            assert!(total > max || declared.is_some_and(|d| d > max as u64));
        }
        Err(ReadError::Idle(d)) => assert!(end == End::Stall && *d == IDLE),
        Err(ReadError::Io(_)) => assert!(end == End::Fail),
    }
    if let Ok(b) = got {
        after_body(&mut h, &b);
    }
}

/// Answers each request as the MCP handler would up to the pipeline.
struct Mcp;

impl Handler for Mcp {
    fn handle(&self, req: Request<Incoming>, ctx: Arc<ConnCtx>) -> HandlerFuture {
        Box::pin(async move {
            let (mut parts, body) = req.into_parts();
            let idle = Duration::from_millis(ctx.http.idle_timeout_ms);
            match read_limited(body, ctx.http.max_request_body, idle).await {
                Ok(bytes) => {
                    assert!(bytes.len() <= ctx.http.max_request_body);
                    after_body(&mut parts.headers, &bytes);
                    json_response(StatusCode::OK, &serde_json::json!({}))
                }
                Err(e) => json_response(
                    StatusCode::BAD_REQUEST,
                    &serde_json::json!({ "error": e.to_string() }),
                ),
            }
        })
    }
}

/// The connection context of a listen-mode port, with limits small enough
/// for fuzz inputs to reach them.
fn conn_ctx() -> Arc<ConnCtx> {
    static CTX: OnceLock<Arc<ConnCtx>> = OnceLock::new();
    CTX.get_or_init(|| {
        let cfg = Config::parse(
            "[intercept]\nmode = \"listen\"\n[[intercept.ports]]\nport = 8080\nupstream = \"127.0.0.1:9\"\n[identity]\nallow_anonymous = true\n",
            std::path::Path::new("fuzz.toml"),
        )
        .expect("fuzz config");
        let mut http = cfg.http.clone();
        http.max_request_body = 1024;
        http.max_header_bytes = 2048;
        http.max_headers = 16;
        let upstream_addr: SocketAddr = "127.0.0.1:9".parse().expect("addr");
        Arc::new(ConnCtx {
            info: ConnInfo {
                id: 1,
                client: "127.0.0.1:40000".parse().expect("addr"),
                orig_dst: "127.0.0.1:8080".parse().expect("addr"),
                tls: None,
                process: None,
            },
            upstream: interceptor::proxy::upstream_for(&cfg).expect("upstream"),
            upstream_addr,
            rule: cfg.intercept.ports[0].clone(),
            http,
            stop: None,
            max_age: None,
            now: None,
        })
    })
    .clone()
}

/// Bit 1 of `ctl`: the client half-closes after sending (the agent does
/// not enable hyper's half-close support, so an answer may not come);
/// otherwise it keeps the connection open and reads until the agent
/// closes it (after the header read timeout, which paused time makes
/// immediate), and every request read is answered.
fn raw(ctl: u8, data: &[u8]) {
    let half_close = ctl & 2 != 0;
    RT.with(|rt| {
        rt.block_on(async {
            let ctx = conn_ctx();
            let (client, server) = tokio::io::duplex(64 << 10);
            let (mut rd, mut wr) = tokio::io::split(client);
            let served = serve(server, None, ctx, Arc::new(Mcp));
            let send = async {
                let _ = wr.write_all(data).await;
                if half_close {
                    let _ = wr.shutdown().await;
                }
            };
            let mut answer = Vec::new();
            let read = rd.read_to_end(&mut answer);
            let (requests, (), _) = tokio::join!(served, send, read);
            if requests > 0 && !half_close {
                assert!(answer.starts_with(b"HTTP/1."), "{answer:?}");
            }
        })
    });
}

fuzz_target!(|data: &[u8]| {
    let Some((&ctl, rest)) = data.split_first() else {
        return;
    };
    if ctl & 1 == 0 {
        structured(ctl, rest);
    } else {
        raw(ctl, rest);
    }
});
