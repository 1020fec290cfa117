//! JSON-RPC ids as peers really compare them. The agent pairs an answer
//! with its request by the id's exact JSON (`1` and `"1"` differ), but
//! clients are looser: the TypeScript SDK looks a response up by
//! `Number(id)` (so `"1"`, `" 1 "`, `"1e0"`, `""` -> 0 and `1.0` all find
//! request 1), the Python SDK turns digit strings into integers. Two ids
//! that some peer may take for the same request are "twins" here: the
//! agent refuses a request whose id has a twin still waiting, and never
//! forwards an answer that matches a waiting request only as a twin.

use serde_json::Value;

/// The loose form of an id (a `Message::id_key` or a raw JSON value): the
/// number some peer may read it as, else the string itself. Ids with
/// equal loose forms are twins.
#[derive(Debug, Clone, PartialEq)]
pub enum Loose {
    /// Read as a number (JavaScript `Number` or Python `int` semantics);
    /// compared as an `f64`, as JavaScript does.
    Number(u64),
    /// A string no peer reads as a number.
    Text(String),
    /// Neither a string nor a number: twin of nothing.
    None,
}

/// The loose form of the id whose pairing key (its JSON text) is `key`.
pub fn loose_key(key: &str) -> Loose {
    // The common shapes without a JSON parse: the pending table is scanned
    // with this for every request.
    if let Ok(n) = key.parse::<i64>() {
        return number(n as f64);
    }
    if let Some(inner) = key.strip_prefix('"').and_then(|k| k.strip_suffix('"'))
        && !inner.contains(['\\', '"'])
    {
        return match read_number(inner) {
            Some(f) => number(f),
            None => Loose::Text(inner.to_string()),
        };
    }
    match serde_json::from_str::<Value>(key) {
        Ok(v) => loose(&v),
        Err(_) => Loose::None,
    }
}

/// The loose form of an id value.
pub fn loose(id: &Value) -> Loose {
    match id {
        Value::Number(n) => n.as_f64().map_or(Loose::None, number),
        Value::String(s) => match read_number(s) {
            Some(f) => number(f),
            None => Loose::Text(s.clone()),
        },
        _ => Loose::None,
    }
}

/// Whether `a` and `b` may be taken for the same id by some peer.
pub fn twins(a: &Loose, b: &Loose) -> bool {
    !matches!(a, Loose::None) && a == b
}

/// An `f64` as comparable bits, with `-0` and `0` one value (as in
/// JavaScript's `===`).
fn number(f: f64) -> Loose {
    let f = if f == 0.0 { 0.0 } else { f };
    Loose::Number(f.to_bits())
}

/// The number a string id may be read as: JavaScript's `Number(s)`
/// (whitespace trimmed, `""` is 0, `0x`/`0o`/`0b` prefixes, exponents,
/// `Infinity`) or Python's `int(s)` (underscores between digits). Errs
/// towards "a number": a false twin costs a refusal, a missed one a
/// message the client pairs with the wrong request.
fn read_number(s: &str) -> Option<f64> {
    let t = s.trim_matches(|c: char| c.is_whitespace() || c == '\u{feff}');
    if t.is_empty() {
        return Some(0.0);
    }
    let (sign, digits) = match t.as_bytes()[0] {
        b'-' => (-1.0, &t[1..]),
        b'+' => (1.0, &t[1..]),
        _ => (1.0, t),
    };
    let lower = digits.to_ascii_lowercase();
    if lower == "infinity" {
        return Some(sign * f64::INFINITY);
    }
    for (prefix, radix) in [("0x", 16), ("0o", 8), ("0b", 2)] {
        if let Some(rest) = lower.strip_prefix(prefix) {
            let rest = rest.replace('_', "");
            return u128::from_str_radix(&rest, radix)
                .ok()
                .map(|v| sign * v as f64);
        }
    }
    let plain = digits.replace('_', "");
    let ok = !plain.is_empty()
        && plain
            .bytes()
            .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'+' | b'-'));
    if !ok {
        return None;
    }
    plain
        .parse::<f64>()
        .ok()
        .filter(|f| !f.is_nan())
        .map(|f| sign * f)
}

#[cfg(test)]
mod tests;
