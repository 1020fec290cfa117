//! What an upstream answer carries, by its `Content-Type`, read the way
//! RFC 9110 says (type and subtype case-insensitive, parameters after
//! `;`), not by prefix. Clients read it loosely (the Python SDK lowercases
//! it, the TypeScript SDK looks for `text/event-stream` anywhere in it),
//! so anything the agent cannot read exactly is `Other`, which is never
//! forwarded as an answer to a request.

use http::{HeaderMap, header};

/// An answer's body kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// `text/event-stream`
    Sse,
    /// `application/json`
    Json,
    /// Anything else: another type, several `Content-Type` headers, a
    /// value that does not parse, or a charset other than UTF-8.
    Other,
}

/// The kind of the answer whose headers are `h`.
pub fn answer(h: &HeaderMap) -> Answer {
    let mut all = h.get_all(header::CONTENT_TYPE).iter();
    let (Some(v), None) = (all.next(), all.next()) else {
        return Answer::Other;
    };
    v.to_str().ok().map_or(Answer::Other, parse)
}

/// One `Content-Type` value.
pub fn parse(v: &str) -> Answer {
    let mut parts = v.split(';');
    let media = parts.next().unwrap_or_default().trim_matches([' ', '\t']);
    let Some((ty, sub)) = media.split_once('/') else {
        return Answer::Other;
    };
    if !is_token(ty) || !is_token(sub) {
        return Answer::Other;
    }
    let kind = match (
        ty.to_ascii_lowercase().as_str(),
        sub.to_ascii_lowercase().as_str(),
    ) {
        ("text", "event-stream") => Answer::Sse,
        ("application", "json") => Answer::Json,
        _ => return Answer::Other,
    };
    match params_ok(parts.collect::<Vec<_>>().join(";").as_str()) {
        true => kind,
        false => Answer::Other,
    }
}

/// Parameters: `; name=value` pairs, value a token or a quoted string;
/// a `charset` must be UTF-8 (JSON and SSE are UTF-8 only).
fn params_ok(mut rest: &str) -> bool {
    loop {
        rest = rest.trim_start_matches([' ', '\t', ';']);
        if rest.is_empty() {
            return true;
        }
        let Some((name, after)) = rest.split_once('=') else {
            return false;
        };
        let name = name.trim_end_matches([' ', '\t']);
        if !is_token(name) {
            return false;
        }
        let (value, tail) = match after.strip_prefix('"') {
            Some(q) => match quoted(q) {
                Some(v) => v,
                None => return false,
            },
            None => {
                let end = after.find(';').unwrap_or(after.len());
                let v = after[..end].trim_end_matches([' ', '\t']);
                if !is_token(v) {
                    return false;
                }
                (v.to_string(), &after[end..])
            }
        };
        if name.eq_ignore_ascii_case("charset") && !value.eq_ignore_ascii_case("utf-8") {
            return false;
        }
        let tail = tail.trim_start_matches([' ', '\t']);
        if !(tail.is_empty() || tail.starts_with(';')) {
            return false;
        }
        rest = tail;
    }
}

/// A quoted string's value (after the opening quote) and what follows it.
fn quoted(s: &str) -> Option<(String, &str)> {
    let mut out = String::new();
    let mut chars = s.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Some((out, &s[i + 1..])),
            '\\' => out.push(chars.next()?.1),
            c => out.push(c),
        }
    }
    None
}

/// RFC 9110 `token`: one or more `tchar`.
fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

#[cfg(test)]
mod tests;
