//! The load generator: N keep-alive HTTP/1.1 connections posting MCP
//! `tools/call` requests, closed loop (as fast as answers come) or open loop
//! (at a fixed rate, latency measured from when each request was due, so a
//! stall shows as latency instead of hiding as fewer requests: the
//! coordinated-omission correction). Every request carries the same
//! `Authorization` header, whatever the configuration, so the bytes sent
//! are identical and only the proxy's handling of them differs.

use std::{
    cell::RefCell,
    net::SocketAddr,
    rc::Rc,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use hdrhistogram::Histogram;
use http::HeaderValue;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;

/// A realistic call: a customer record of about 2 KB with personal data.
pub const BODY: &str = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"lookup_customer","arguments":{"id":"c-1042"}}}"#;

/// The call's body: `BODY`, or with `bytes`, the same lookup answered with
/// about that many bytes of customer records (the result-size curve).
pub fn body(bytes: Option<usize>) -> Bytes {
    match bytes {
        None => Bytes::from_static(BODY.as_bytes()),
        Some(n) => Bytes::from(format!(
            r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"lookup_customer","arguments":{{"id":"c-1042","bytes":{n}}}}}}}"#
        )),
    }
}

#[derive(Debug, Clone, Copy)]
pub enum Mode {
    Closed,
    /// Total requests per second across all connections.
    Open(f64),
}

pub struct Outcome {
    pub requests: u64,
    pub errors: u64,
    pub elapsed: Duration,
    /// Microseconds.
    pub hist: Histogram<u64>,
    pub response_bytes: u64,
}

impl Outcome {
    pub fn throughput(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64()
    }

    pub fn pct(&self, q: f64) -> f64 {
        self.hist.value_at_quantile(q) as f64
    }
}

fn request(host: &str, auth: &HeaderValue, body: &Bytes) -> Result<http::Request<Full<Bytes>>> {
    http::Request::post("/mcp")
        .header("host", host)
        .header("authorization", auth.clone())
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(Full::new(body.clone()))
        .context("building request")
}

/// One request, answered: the agent refuses a call a policy denies with a
/// JSON-RPC error in an HTTP 200, which the load loop (status only, to
/// stay cheap) would count as a success.
pub fn probe(target: SocketAddr, bearer: &str, body: &Bytes) -> Result<()> {
    let auth = HeaderValue::from_str(&format!("Bearer {bearer}")).context("bearer token")?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let ask = async move {
        let stream = tokio::net::TcpStream::connect(target)
            .await
            .with_context(|| format!("connecting to {target}"))?;
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(conn);
        let resp = sender
            .send_request(request("mcp.bench", &auth, body)?)
            .await?;
        let status = resp.status();
        let body = resp.into_body().collect().await?.to_bytes();
        anyhow::Ok((status, body))
    };
    // The first call may wait for the issuer's keys, not for much more.
    let (status, body) = rt.block_on(async {
        tokio::time::timeout(Duration::from_secs(20), ask)
            .await
            .context("no answer within 20 s")?
    })?;
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    let answered =
        v.get("error").is_none() && v.get("result").is_some_and(|r| r["isError"] != true);
    if !status.is_success() || !answered {
        bail!(
            "HTTP {status}, not an answer to the call: {}",
            String::from_utf8_lossy(&body[..body.len().min(400)])
        );
    }
    Ok(())
}

/// Runs one measurement on a current-thread runtime (one core for load, so
/// the proxy and the server keep the other). `bearer`: the token sent as
/// `Authorization: Bearer <bearer>` on every request, `body` its body.
pub fn run(
    target: SocketAddr,
    bearer: &str,
    body: &Bytes,
    conns: usize,
    mode: Mode,
    duration: Duration,
) -> Result<Outcome> {
    let auth = HeaderValue::from_str(&format!("Bearer {bearer}")).context("bearer token")?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let hist = Rc::new(RefCell::new(Histogram::<u64>::new_with_bounds(
            1,
            120_000_000,
            3,
        )?));
        let stats = Rc::new(RefCell::new((0u64, 0u64, 0u64)));
        let start = Instant::now();
        let end = start + duration;
        let local = tokio::task::LocalSet::new();
        for c in 0..conns {
            let (hist, stats, auth, body) =
                (hist.clone(), stats.clone(), auth.clone(), body.clone());
            local.spawn_local(async move {
                let interval = match mode {
                    Mode::Open(rate) => Some(Duration::from_secs_f64(conns as f64 / rate)),
                    Mode::Closed => None,
                };
                // Stagger open-loop connections across one interval.
                let mut due =
                    start + interval.map_or(Duration::ZERO, |i| i.mul_f64(c as f64 / conns as f64));
                'conn: while Instant::now() < end {
                    let Ok(stream) = tokio::net::TcpStream::connect(target).await else {
                        stats.borrow_mut().1 += 1;
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        continue;
                    };
                    let _ = stream.set_nodelay(true);
                    let Ok((mut sender, conn)) =
                        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await
                    else {
                        stats.borrow_mut().1 += 1;
                        continue;
                    };
                    tokio::task::spawn_local(conn);
                    loop {
                        let now = Instant::now();
                        if now >= end {
                            break 'conn;
                        }
                        if interval.is_none() {
                            due = now;
                        } else if due > now {
                            tokio::time::sleep_until(due.into()).await;
                        }
                        let Ok(req) = request("mcp.bench", &auth, &body) else {
                            break 'conn;
                        };
                        let sent_for = due;
                        if let Some(i) = interval {
                            due += i;
                        }
                        let resp = match sender.send_request(req).await {
                            Ok(r) => r,
                            Err(_) => {
                                stats.borrow_mut().1 += 1;
                                continue 'conn;
                            }
                        };
                        let ok = resp.status().is_success();
                        let body = resp.into_body().collect().await;
                        let done = Instant::now();
                        match body {
                            Ok(b) if ok => {
                                let us = done.duration_since(sent_for).as_micros() as u64;
                                let _ = hist.borrow_mut().record(us.max(1));
                                let mut s = stats.borrow_mut();
                                s.0 += 1;
                                s.2 += b.to_bytes().len() as u64;
                            }
                            _ => {
                                stats.borrow_mut().1 += 1;
                                continue 'conn;
                            }
                        }
                    }
                }
            });
        }
        local.await;
        let elapsed = start.elapsed();
        let (requests, errors, response_bytes) = *stats.borrow();
        let hist = hist.borrow().clone();
        Ok(Outcome {
            requests,
            errors,
            elapsed,
            hist,
            response_bytes,
        })
    })
}
