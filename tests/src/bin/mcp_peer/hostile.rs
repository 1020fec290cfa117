//! `mcp-peer server --hostile MODE`: the rmcp server, with its answers
//! bent on the wire the way a hostile or sloppy server bends them, for
//! tests of what the interceptor forwards.
//!
//! - `float-ids`: every response id `N` is sent as `N.0` (zod, and so the
//!   TypeScript SDK, reads it as `N`).
//! - `mixed-case-type`: `Content-Type: Text/Event-Stream` (or
//!   `Application/JSON`), which rmcp's and the Python SDK's clients read
//!   as the lowercase type.
//!
//! Frames are rewritten one by one: rmcp writes each SSE event, and a JSON
//! answer, as one frame.

use std::convert::Infallible;

use bytes::Bytes;
use http_body_util::{BodyExt, combinators::BoxBody};
use hyper::{
    Response,
    header::{CONTENT_LENGTH, CONTENT_TYPE, HeaderValue},
};
use serde_json::{Value, json};

/// How the server bends its answers.
#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub enum Hostile {
    /// Response ids `N` sent as `N.0`.
    FloatIds,
    /// The answer's media type in mixed case.
    MixedCaseType,
}

type HttpResponse = Response<BoxBody<Bytes, Infallible>>;

/// `resp`, bent as `mode` says.
pub fn mangle(mode: Hostile, resp: HttpResponse) -> HttpResponse {
    let (mut parts, body) = resp.into_parts();
    match mode {
        Hostile::MixedCaseType => {
            let mixed = parts
                .headers
                .get(CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .map(|v| {
                    v.replace("text/event-stream", "Text/Event-Stream")
                        .replace("application/json", "Application/JSON")
                });
            if let Some(v) = mixed.and_then(|m| HeaderValue::from_str(&m).ok()) {
                parts.headers.insert(CONTENT_TYPE, v);
            }
            Response::from_parts(parts, body)
        }
        Hostile::FloatIds => {
            // The body grows by two bytes per id.
            parts.headers.remove(CONTENT_LENGTH);
            let body = body.map_frame(|f| f.map_data(|d| float_ids(&d))).boxed();
            Response::from_parts(parts, body)
        }
    }
}

/// One frame: a JSON body, or SSE lines whose `data:` is JSON.
fn float_ids(data: &Bytes) -> Bytes {
    let text = String::from_utf8_lossy(data);
    if let Ok(mut v) = serde_json::from_str::<Value>(&text) {
        float(&mut v);
        return Bytes::from(v.to_string());
    }
    let lines: Vec<String> = text
        .split('\n')
        .map(|line| {
            let parsed = line
                .strip_prefix("data:")
                .and_then(|rest| serde_json::from_str::<Value>(rest.trim_start()).ok());
            match parsed {
                Some(mut v) => {
                    float(&mut v);
                    format!("data: {v}")
                }
                None => line.to_string(),
            }
        })
        .collect();
    Bytes::from(lines.join("\n"))
}

fn float(v: &mut Value) {
    match v {
        Value::Array(items) => items.iter_mut().for_each(float),
        Value::Object(o) if o.contains_key("result") || o.contains_key("error") => {
            if let Some(n) = o.get("id").and_then(Value::as_i64) {
                o.insert("id".into(), json!(n as f64));
            }
        }
        _ => {}
    }
}
