//! Messages that every peer reads the way the agent does: a client's, which
//! servers act on, and a server's, which clients act on.
//!
//! JSON leaves room that servers fill differently: with a key given twice,
//! serde and Python keep the last, others the first; Go's encoding/json
//! matches `"PARAMS"` or `"Name"` to `params` and `name` (and `ſ`, `K` to
//! `s`, `k`); an integer beyond 64 bits is exact in Python and JavaScript's
//! BigInt but an `f64` here, so the audit and the approval digest would
//! name a neighbour of what the server runs. The agent cannot judge such a
//! message as the server will read it, so it refuses it (-32600).

use serde_json::{Map, Value};

use super::{Body, ParseError};

/// Member names at each level of a message where servers look them up.
const TOP: &[&str] = &["jsonrpc", "id", "method", "params", "result", "error"];
const PARAMS: &[&str] = &[
    "name",
    "arguments",
    "uri",
    "_meta",
    "cursor",
    "protocolVersion",
    "capabilities",
    "clientInfo",
    "level",
    "ref",
    "argument",
    "context",
    "requestId",
    "reason",
    "progressToken",
    "progress",
    "total",
    "message",
    "roots",
    "task",
    // MCP 2026-07-28: multi round-trip retries and the tasks extension.
    "inputResponses",
    "requestState",
    "taskId",
];
const META: &[&str] = &["progressToken"];
const RESULT: &[&str] = &[
    "content",
    "model",
    "role",
    "stopReason",
    "action",
    "roots",
    "_meta",
    // A server's results: what decides how a client reads the rest.
    "isError",
    "structuredContent",
    "tools",
    "resources",
    "resourceTemplates",
    "prompts",
    "contents",
    "messages",
    "nextCursor",
    "protocolVersion",
    "capabilities",
    "serverInfo",
    // MCP 2026-07-28: input requests, tasks, caching.
    "resultType",
    "inputRequests",
    "requestState",
    "taskId",
    "status",
    "result",
    "error",
    "cacheScope",
    "ttlMs",
];
const ERROR: &[&str] = &["code", "message", "data"];

/// Checks a parsed client body against its bytes (see the module doc).
pub fn check(bytes: &[u8], body: &Body) -> Result<(), ParseError> {
    scan(bytes)?;
    for m in body.messages() {
        if let Some(o) = m.value.as_object() {
            check_members(o)?;
        }
    }
    Ok(())
}

/// A key as Go's case-insensitive match sees it.
fn fold(k: &str) -> String {
    let mut out = String::with_capacity(k.len());
    fold_into(k, &mut out);
    out
}

/// `fold`, appended to `out`.
fn fold_into(k: &str, out: &mut String) {
    out.extend(k.chars().flat_map(char::to_lowercase).map(|c| match c {
        'ſ' => 's',
        'ς' => 'σ',
        c => c,
    }));
}

/// Whether `k` folds to `name` (an ASCII member name) without being it.
fn is_variant(k: &str, name: &str) -> bool {
    if k == name {
        return false;
    }
    if k.is_ascii() {
        return k.eq_ignore_ascii_case(name);
    }
    // Folded text holds no ASCII upper case: compared to `name` lowered.
    fold(k).eq_ignore_ascii_case(name)
}

fn variant(obj: &Map<String, Value>, names: &[&str], level: &str) -> Result<(), ParseError> {
    for k in obj.keys() {
        if let Some(n) = names.iter().find(|n| is_variant(k, n)) {
            return Err(ParseError::Invalid(format!(
                "member {k:?} in {level} is a case variant of {n:?}; servers that match \
                 names case-insensitively would read it as {n:?}"
            )));
        }
    }
    Ok(())
}

fn check_members(top: &Map<String, Value>) -> Result<(), ParseError> {
    variant(top, TOP, "the message")?;
    if let Some(p) = top.get("params").and_then(Value::as_object) {
        variant(p, PARAMS, "params")?;
        if let Some(m) = p.get("_meta").and_then(Value::as_object) {
            variant(m, META, "params._meta")?;
        }
    }
    if let Some(r) = top.get("result").and_then(Value::as_object) {
        variant(r, RESULT, "result")?;
    }
    if let Some(e) = top.get("error").and_then(Value::as_object) {
        variant(e, ERROR, "error")?;
    }
    Ok(())
}

/// One pass over JSON serde_json has accepted: duplicate keys (exact or
/// by case folding) in any object, and numbers that are not exact.
pub(super) fn scan(b: &[u8]) -> Result<(), ParseError> {
    let mut open = keys::Open::new();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'{' => open.object(),
            b'[' => open.array(),
            b'}' | b']' => open.close(),
            b'"' => {
                let end = string_end(b, i);
                if open.in_object() && next_is_colon(&b[end..]) {
                    let raw = &b[i + 1..end.saturating_sub(1).max(i + 1)];
                    let decode = || {
                        serde_json::from_slice::<String>(&b[i..end])
                            .map_err(|e| ParseError::Json(e.to_string()))
                    };
                    if !open.insert(raw, decode)? {
                        let key = decode()?;
                        return Err(ParseError::Invalid(format!(
                            "key {key:?} appears twice in one object (or in two spellings \
                             that differ only in case); servers differ on which one counts"
                        )));
                    }
                }
                i = end;
                continue;
            }
            b'-' | b'0'..=b'9' => {
                let len = b[i..]
                    .iter()
                    .take_while(|c| matches!(c, b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E'))
                    .count();
                let text = std::str::from_utf8(&b[i..i + len]).unwrap_or_default();
                exact_number(text)?;
                i += len;
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    Ok(())
}

/// Whether the first byte after whitespace is a `:` (the string before
/// was a key).
fn next_is_colon(rest: &[u8]) -> bool {
    rest.iter().find(|c| !c.is_ascii_whitespace()) == Some(&b':')
}

/// The index just past the string that starts at `start` (a `"`).
fn string_end(b: &[u8], start: usize) -> usize {
    let mut i = start + 1;
    while let Some(at) = memchr::memchr2(b'"', b'\\', &b[i.min(b.len())..]) {
        i += at;
        if b[i] == b'"' {
            return i + 1;
        }
        i += 2;
    }
    b.len()
}

/// Refuses a number the agent would hold as a value other than the one
/// its text names: an integer beyond i64/u64, or a decimal the nearest
/// `f64` does not equal digit for digit (once trailing zeros are gone).
fn exact_number(text: &str) -> Result<(), ParseError> {
    let inexact = || {
        ParseError::Invalid(format!(
            "the number {text} cannot be held exactly (an integer beyond 64 bits or \
             a decimal with more digits than a double); send it as a string"
        ))
    };
    if !text.contains(['.', 'e', 'E']) {
        // serde_json holds `-0` as the float -0.0; Python reads the int 0.
        let negative_zero = text.starts_with('-') && text[1..].bytes().all(|c| c == b'0');
        return match !negative_zero && (text.parse::<i64>().is_ok() || text.parse::<u64>().is_ok())
        {
            true => Ok(()),
            false => Err(inexact()),
        };
    }
    let f: f64 = text.parse().map_err(|_| inexact())?;
    if !f.is_finite() || decimal(text) != decimal(&format!("{f:e}")) {
        return Err(inexact());
    }
    Ok(())
}

/// A number's text as (negative, significant digits, power of ten of the
/// last digit); zero has no digits. `None` if the exponent overflows.
fn decimal(text: &str) -> Option<(bool, String, i64)> {
    let (neg, t) = match text.strip_prefix('-') {
        Some(t) => (true, t),
        None => (false, text),
    };
    let (mant, exp) = match t.split_once(['e', 'E']) {
        Some((m, e)) => (m, e.trim_start_matches('+').parse::<i64>().ok()?),
        None => (t, 0),
    };
    let (int, frac) = mant.split_once('.').unwrap_or((mant, ""));
    let digits = format!("{int}{frac}");
    let mut exp10 = exp.checked_sub(i64::try_from(frac.len()).ok()?)?;
    let digits = digits.trim_start_matches('0');
    let trimmed = digits.trim_end_matches('0');
    exp10 = exp10.checked_add(i64::try_from(digits.len() - trimmed.len()).ok()?)?;
    if trimmed.is_empty() {
        return Some((neg, String::new(), 0));
    }
    Some((neg, trimmed.to_string(), exp10))
}

mod keys;
#[cfg(test)]
mod tests;
