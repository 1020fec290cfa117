//! `Mcp-Param-{Name}` headers (SEP-2243): a `tools/call` mirrors each
//! argument its tool declares with `x-mcp-header` into a header, and
//! load balancers, WAFs and rate limiters act on that header while the
//! server acts on the body. Each header is held to the argument the tool
//! declares for it, in the tool's `inputSchema` as the agent last saw it
//! listed, and refused (-32020) when:
//!
//! - it differs from the argument: strings as they are, integers as their
//!   decimal text (`42`, never `042`, `42.0` or `4.2e1`, so one value has one
//!   spelling for a rate limiter's key), booleans `true`/`false`, the
//!   `=?base64?...?=` form decoded first;
//! - it is missing while the argument is present, or present while the
//!   argument is absent or `null` (the spec's table);
//! - the argument is not a string, a boolean or an integer within ±(2^53-1):
//!   no client can mirror it, so intermediaries saw something else;
//! - the tool declares no such header, the method is not `tools/call`, or
//!   the agent never saw the tool listed: it cannot tell what the header
//!   binds to;
//! - it is sent twice (two spellings of one name are one header), or is not
//!   visible ASCII.
//!
//! A call to a tool whose declarations are invalid is refused outright:
//! clients must not list such a tool, and its headers could be bound two
//! ways. The official Python SDK's server is laxer on the last three
//! points (it ignores undeclared headers, unknown tools and invalid
//! schemas); the agent refuses what it cannot judge.

use http::HeaderMap;
use serde_json::{Value, json};

use super::{decode, mismatch};
use crate::{
    error::{Reason, Refusal},
    jsonrpc::{
        Message,
        param_headers::{PARAM_PREFIX, ParamHeader, declared},
    },
};

/// The largest integer every client mirrors exactly (2^53 - 1).
const MAX_SAFE: i64 = (1 << 53) - 1;

/// One `Mcp-Param-*` header as received: its lowercase name and its value
/// (`None`: not visible ASCII).
struct Sent {
    name: String,
    value: Option<String>,
}

/// Checks `msg`'s `Mcp-Param-*` headers. `schema` is the called tool's
/// `inputSchema` as last listed by its server, `None` when the agent has
/// not seen the tool listed.
pub fn check(headers: &HeaderMap, msg: &Message, schema: Option<&Value>) -> Result<(), Refusal> {
    let sent = sent(headers)?;
    let is_call = msg.method() == Some("tools/call");
    if !is_call {
        return match sent.first() {
            Some(s) => Err(refuse(
                &s.name,
                "only a tools/call mirrors arguments into Mcp-Param-* headers",
            )),
            None => Ok(()),
        };
    }
    let tool = msg.target().unwrap_or_default();
    let Some(schema) = schema else {
        return match sent.first() {
            Some(s) => Err(refuse(
                &s.name,
                &format!(
                    "the agent has not seen tool {tool:?} in a tools/list answer of this server, so it cannot tell which argument the header mirrors; list the tools first"
                ),
            )),
            None => Ok(()),
        };
    };
    let declared = declared(schema).map_err(|e| {
        Refusal::new(
            Reason::HeaderMismatch,
            format!("HeaderMismatch: tool {tool:?} is not callable in the stateless form: its {e}; clients must leave it out of tools/list"),
        )
        .with("mismatch", json!({ "tool": tool, "invalid": e.0 }))
    })?;
    for s in &sent {
        if !declared.iter().any(|d| d.header() == s.name) {
            return Err(refuse(
                &s.name,
                &format!("tool {tool:?} declares no such header (x-mcp-header)"),
            ));
        }
    }
    let arguments = msg.params().and_then(|p| p.get("arguments"));
    declared.iter().try_for_each(|d| {
        argument(
            d,
            d.value(arguments),
            sent.iter().find(|s| s.name == d.header()),
        )
    })
}

/// The `Mcp-Param-*` headers, each at most once.
fn sent(headers: &HeaderMap) -> Result<Vec<Sent>, Refusal> {
    let mut out = Vec::new();
    for name in headers
        .keys()
        .filter(|n| n.as_str().starts_with(PARAM_PREFIX))
    {
        let mut all = headers.get_all(name).iter();
        let value = all.next().and_then(|v| v.to_str().ok()).map(str::to_owned);
        if all.next().is_some() {
            return Err(super::repeated(&shown(name.as_str(), None)));
        }
        out.push(Sent {
            name: name.as_str().to_owned(),
            value,
        });
    }
    Ok(out)
}

/// Checks one declared argument against its header.
fn argument(d: &ParamHeader, value: Option<&Value>, sent: Option<&Sent>) -> Result<(), Refusal> {
    let name = format!("Mcp-Param-{}", d.name);
    let at = d.path.join(".");
    let (value, sent) = match (value, sent) {
        (None, None) => return Ok(()),
        (None, Some(_)) => {
            return Err(refuse(
                &name,
                &format!("argument {at} is absent or null, so no header may be sent"),
            ));
        }
        (Some(_), None) => {
            return Err(refuse(
                &name,
                &format!("argument {at} is present, so its header must be sent"),
            ));
        }
        (Some(v), Some(s)) => (v, s),
    };
    let Some(expected) = mirrored(value) else {
        return Err(refuse(
            &name,
            &format!(
                "argument {at} is not a string, a boolean or an integer within ±(2^53-1), so no header can mirror it"
            ),
        ));
    };
    match sent.value.as_deref().map(decode) {
        Some(Some(got)) if got == expected => Ok(()),
        _ => Err(mismatch(&name, Some(&expected), Some(sent.value.clone())).with("argument", at)),
    }
}

/// The text a client mirrors `v` as (before the Base64 form), if any.
fn mirrored(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Number(n) => {
            // 42.0 in the body is the integer 42 (JSON does not tell them
            // apart for the server); its header is still "42".
            let i = n.as_i64().or_else(|| {
                n.as_f64()
                    .filter(|f| f.fract() == 0.0 && f.abs() <= MAX_SAFE as f64)
                    .map(|f| f as i64)
            })?;
            (i.abs() <= MAX_SAFE).then(|| i.to_string())
        }
        _ => None,
    }
}

/// How a header is named in messages: the declared spelling when known.
fn shown(lower: &str, declared: Option<&str>) -> String {
    let rest = declared.unwrap_or(&lower[PARAM_PREFIX.len()..]);
    format!("Mcp-Param-{rest}")
}

/// A refusal of the `Mcp-Param-*` header `name` (lowercase or as
/// declared), saying `why`.
fn refuse(name: &str, why: &str) -> Refusal {
    let shown = if name.starts_with(PARAM_PREFIX) {
        shown(name, None)
    } else {
        name.to_owned()
    };
    Refusal::new(
        Reason::HeaderMismatch,
        format!("HeaderMismatch: {shown}: {why}"),
    )
    .with("mismatch", json!({ "header": shown }))
}

#[cfg(test)]
mod tests;
