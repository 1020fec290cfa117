//! JSON-RPC 2.0 messages as MCP uses them, both directions.
//!
//! A message keeps the exact bytes it arrived as, so an unchanged message is
//! forwarded byte for byte; only a phase that rewrites one re-serializes it.
//!
//! A leaf module: every stage (mcp, the pipeline and its phases, audit) may
//! use these types, and it imports nothing from the rest of the crate.
#![forbid(unsafe_code)]

use bytes::Bytes;
use serde_json::{Map, Value};

pub mod mcp_names;
pub mod param_headers;

/// What a message is, by JSON-RPC's rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// A call that expects a response.
    Request,
    /// A call that expects no response.
    Notification,
    /// A successful response.
    Response,
    /// An error response.
    Error,
}

/// Why a body is not JSON-RPC.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// Not UTF-8.
    #[error("body is not valid UTF-8 (byte {0})")]
    Utf8(usize),
    /// Not JSON.
    #[error("body is not valid JSON: {0}")]
    Json(String),
    /// JSON, but not a JSON-RPC 2.0 message or batch.
    #[error("not a JSON-RPC 2.0 message: {0}")]
    Invalid(String),
}

impl ParseError {
    /// The refusal answering this failure.
    pub fn refusal(&self) -> crate::error::Refusal {
        use crate::error::{Reason, Refusal};
        let reason = match self {
            ParseError::Utf8(_) | ParseError::Json(_) => Reason::ParseError,
            ParseError::Invalid(_) => Reason::InvalidRequest,
        };
        Refusal::new(reason, self.to_string())
    }
}

/// One JSON-RPC message and its kind.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    /// What kind of message it is.
    pub kind: Kind,
    /// The message as parsed.
    pub value: Value,
    /// The bytes this message arrived as; `None` once rewritten.
    pub raw: Option<Bytes>,
}

/// A POST body or SSE `data`: one message or a batch (2025-03-26 allows
/// batches; later revisions do not, which is the server's to enforce).
#[derive(Debug, Clone, PartialEq)]
pub enum Body {
    /// One message.
    Single(Message),
    /// A batch of messages.
    Batch(Vec<Message>),
}

impl Body {
    /// The messages, one for a single message.
    pub fn messages(&self) -> &[Message] {
        match self {
            Body::Single(m) => std::slice::from_ref(m),
            Body::Batch(v) => v,
        }
    }

    /// The messages, mutable, for rewriting.
    pub fn messages_mut(&mut self) -> &mut [Message] {
        match self {
            Body::Single(m) => std::slice::from_mut(m),
            Body::Batch(v) => v,
        }
    }

    /// Takes out the messages at `indices`; the rest are re-serialized.
    pub fn remove(&mut self, indices: &[usize]) {
        let all = match std::mem::replace(self, Body::Batch(Vec::new())) {
            Body::Single(m) => vec![m],
            Body::Batch(v) => v,
        };
        let kept: Vec<Message> = all
            .into_iter()
            .enumerate()
            .filter(|(i, _)| !indices.contains(i))
            .map(|(_, mut m)| {
                m.raw = None;
                m
            })
            .collect();
        *self = match <[Message; 1]>::try_from(kept) {
            Ok([m]) => Body::Single(m),
            Err(v) => Body::Batch(v),
        };
    }

    /// The bytes to send: the original when nothing changed.
    pub fn to_bytes(&self, original: &Bytes) -> Bytes {
        if self.messages().iter().all(|m| m.raw.is_some()) {
            return original.clone();
        }
        let v = match self {
            Body::Single(m) => m.value.clone(),
            Body::Batch(ms) => Value::Array(ms.iter().map(|m| m.value.clone()).collect()),
        };
        Bytes::from(serde_json::to_vec(&v).unwrap_or_default())
    }
}

/// Parses a body: UTF-8, JSON, then JSON-RPC shape.
pub fn parse(bytes: &Bytes) -> Result<Body, ParseError> {
    if let Err(e) = std::str::from_utf8(bytes) {
        return Err(ParseError::Utf8(e.valid_up_to()));
    }
    let value: Value =
        serde_json::from_slice(bytes).map_err(|e| ParseError::Json(e.to_string()))?;
    match value {
        Value::Array(items) => {
            if items.is_empty() {
                return Err(ParseError::Invalid("empty batch".into()));
            }
            let mut ms = items
                .into_iter()
                .map(classify)
                .collect::<Result<Vec<_>, _>>()?;
            // Members have no bytes of their own; an empty `raw` marks them
            // unchanged so the batch goes out as it came.
            for m in &mut ms {
                m.raw = Some(Bytes::new());
            }
            Ok(Body::Batch(ms))
        }
        v => classify(v).map(|mut m| {
            m.raw = Some(bytes.clone());
            Body::Single(m)
        }),
    }
}

/// Parses a client's body and refuses what servers could read otherwise
/// than the agent: a duplicate key, a case variant of a member name, a
/// number that is not exact (see `strict`).
pub fn parse_client(bytes: &Bytes) -> Result<Body, ParseError> {
    let body = parse(bytes)?;
    strict::check(bytes, &body)?;
    Ok(body)
}

/// Parses a server's body as strictly as a client's (`parse_client`): a
/// server's answer is judged too, and a client that reads a duplicate key,
/// a case variant (`"ResultType"`, `"InputRequests"`) or an inexact number
/// otherwise than the agent would act on what no phase saw.
pub fn parse_server(bytes: &Bytes) -> Result<Body, ParseError> {
    parse_client(bytes)
}

/// The JSON-level checks of `parse_client` on any JSON text (duplicate or
/// case-folded duplicate keys, numbers that are not exact): for arguments
/// given to `policy explain`.
pub fn check_json(text: &[u8]) -> Result<(), ParseError> {
    strict::scan(text)
}

fn classify(value: Value) -> Result<Message, ParseError> {
    let Value::Object(obj) = &value else {
        return Err(ParseError::Invalid(
            "a message must be a JSON object".into(),
        ));
    };
    if obj.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
        return Err(ParseError::Invalid("\"jsonrpc\" must be \"2.0\"".into()));
    }
    // MCP: "Requests MUST include a string or integer ID". A fractional
    // or huge float id would pair differently at each peer.
    let id_ok = |id: &Value| match id {
        Value::String(_) => true,
        Value::Number(n) => n.is_i64() || n.is_u64(),
        _ => false,
    };
    let kind = if let Some(method) = obj.get("method") {
        if !method.is_string() {
            return Err(ParseError::Invalid("\"method\" must be a string".into()));
        }
        if let Some(p) = obj.get("params")
            && !(p.is_object() || p.is_array())
        {
            return Err(ParseError::Invalid(
                "\"params\" must be an object or array".into(),
            ));
        }
        match obj.get("id") {
            None => Kind::Notification,
            Some(id) if id_ok(id) => Kind::Request,
            Some(_) => {
                return Err(ParseError::Invalid(
                    "\"id\" must be a string or an integer".into(),
                ));
            }
        }
    } else if obj.contains_key("result") || obj.contains_key("error") {
        if obj.contains_key("result") && obj.contains_key("error") {
            return Err(ParseError::Invalid("both \"result\" and \"error\"".into()));
        }
        match obj.get("id") {
            // A null id is legal on error responses (e.g. parse errors).
            Some(id) if id_ok(id) || (id.is_null() && obj.contains_key("error")) => {}
            _ => {
                return Err(ParseError::Invalid(
                    "a response needs a string or integer \"id\"".into(),
                ));
            }
        }
        if obj.contains_key("error") {
            Kind::Error
        } else {
            Kind::Response
        }
    } else {
        return Err(ParseError::Invalid(
            "neither a request, notification nor response".into(),
        ));
    };
    Ok(Message {
        kind,
        value,
        raw: None,
    })
}

impl Message {
    fn obj(&self) -> Option<&Map<String, Value>> {
        self.value.as_object()
    }

    /// The message's id, if it has one.
    pub fn id(&self) -> Option<&Value> {
        self.obj()
            .and_then(|o| o.get("id"))
            .filter(|v| !v.is_null())
    }

    /// The id as a pairing key: `1` and `"1"` stay distinct.
    pub fn id_key(&self) -> Option<String> {
        self.id().map(Value::to_string)
    }

    /// The method, for requests and notifications.
    pub fn method(&self) -> Option<&str> {
        self.obj()
            .and_then(|o| o.get("method"))
            .and_then(Value::as_str)
    }

    /// The params, if present.
    pub fn params(&self) -> Option<&Value> {
        self.obj().and_then(|o| o.get("params"))
    }

    /// The result, for successful responses.
    pub fn result(&self) -> Option<&Value> {
        self.obj().and_then(|o| o.get("result"))
    }

    /// The error, for error responses.
    pub fn error(&self) -> Option<&Value> {
        self.obj().and_then(|o| o.get("error"))
    }

    /// The tool, resource URI or prompt a request is about (OTel
    /// `gen_ai.tool.name` and friends), by method.
    pub fn target(&self) -> Option<&str> {
        let field = match self.method()? {
            "tools/call" | "prompts/get" => "name",
            "resources/read"
            | "resources/subscribe"
            | "resources/unsubscribe"
            | "notifications/resources/updated" => "uri",
            _ => return None,
        };
        self.params()?.get(field)?.as_str()
    }

    /// Replaces the message; it will be re-serialized when sent.
    pub fn rewrite(&mut self, value: Value) -> Result<(), ParseError> {
        let m = classify(value)?;
        *self = m;
        Ok(())
    }
}

mod strict;
#[cfg(test)]
mod tests;

/// JSON with object keys sorted at every level and no whitespace, so the
/// same arguments always give the same digest, whatever order they came in.
pub fn canonical(v: &Value) -> String {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            let parts: Vec<String> = keys
                .into_iter()
                .map(|k| format!("{}:{}", Value::String(k.clone()), canonical(&m[k])))
                .collect();
            format!("{{{}}}", parts.join(","))
        }
        Value::Array(a) => format!(
            "[{}]",
            a.iter().map(canonical).collect::<Vec<_>>().join(",")
        ),
        other => other.to_string(),
    }
}
