//! Request paths and queries read the way servers and routers read them,
//! so that the agent decides on the path the server will act on, not on
//! how the client spelled it.
//!
//! Servers differ: Express matches `/MCP`, `/mcp/` and `//mcp` to a route
//! `/mcp`; others decode `%6d` before routing or resolve dot segments. The
//! normal form here is the union of those readings (case folded, escapes
//! decoded, empty segments and `;params` dropped, `\` read as `/`), so a
//! path any of them routes to an MCP endpoint normalizes to that endpoint.
//! Where readings would disagree on *which* path it is (dot segments, an
//! escaped `/`, `%`, `?`, `#`, `\` or control byte), the path is refused.
//!
//! A leaf module: config validates configured paths with it and mcp routes
//! requests with it; it imports nothing from the rest of the crate.
#![forbid(unsafe_code)]

/// Why a path or query has no single reading.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    /// Not an absolute path (`*`, or a relative form).
    #[error("the request target is not an absolute path")]
    NotAbsolute,
    /// A `%` not followed by two hex digits.
    #[error("the request target has a malformed percent-escape")]
    BadEscape,
    /// An escape that decodes to a delimiter (`/ \ % ? # ;`) or a control
    /// byte: servers that decode before splitting see another path.
    #[error("the request target escapes a delimiter or control character")]
    EscapedDelimiter,
    /// Decoded bytes that are not UTF-8.
    #[error("the request target does not decode to UTF-8")]
    NotUtf8,
    /// A `.` or `..` segment (also escaped): resolved by some servers, not
    /// by others. Real clients resolve them before sending.
    #[error("the request path has a dot segment")]
    DotSegment,
}

/// The normal form of an absolute path: lowercase, percent-decoded, with
/// `\` as `/`, `;params` and empty segments dropped, no trailing slash.
pub fn normalize(path: &str) -> Result<String, PathError> {
    if !path.starts_with('/') && !path.starts_with('\\') {
        return Err(PathError::NotAbsolute);
    }
    let mut out = String::with_capacity(path.len());
    for raw in path.split(['/', '\\']) {
        // Tomcat, Jetty and Spring drop path parameters before routing;
        // a server that decodes first would read their escapes as part of
        // the path, so those must have one reading too.
        let mut parts = raw.split(';');
        let seg = decode(parts.next().unwrap_or_default(), false)?;
        for param in parts {
            if [".", ".."].contains(&decode(param, false)?.as_str()) {
                return Err(PathError::DotSegment);
            }
        }
        if seg.is_empty() {
            continue;
        }
        if seg == "." || seg == ".." {
            return Err(PathError::DotSegment);
        }
        out.push('/');
        out.push_str(&seg.to_lowercase());
    }
    if out.is_empty() {
        out.push('/');
    }
    Ok(out)
}

/// The `key=value` pairs of a query, decoded (`+` is a space), in order.
/// An escaped delimiter (`&`, `=`) or control byte is refused: parsers
/// that decode first would split the query differently.
pub fn query_pairs(query: &str) -> Result<Vec<(String, String)>, PathError> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            Ok((decode(k, true)?, decode(v, true)?))
        })
        .collect()
}

/// Whether normalized `path` is matched by `pattern`: a path (`/healthz`,
/// normalized here) or a prefix ending `/*` (`/api/*`: `/api` and below).
pub fn matches(pattern: &str, path: &str) -> bool {
    let (base, prefix) = match pattern.strip_suffix("/*") {
        Some(b) => (b, true),
        None => (pattern, false),
    };
    let Ok(base) = normalize(if base.is_empty() { "/" } else { base }) else {
        return false;
    };
    if path == base {
        return true;
    }
    prefix
        && (base == "/"
            || path
                .strip_prefix(base.as_str())
                .is_some_and(|r| r.starts_with('/')))
}

/// Percent-decodes `s`; in a query `+` is a space and `&`/`=` are the
/// delimiters an escape must not produce.
fn decode(s: &str, query: bool) -> Result<String, PathError> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let c = match b[i] {
            b'%' => {
                let hex = b.get(i + 1..i + 3).ok_or(PathError::BadEscape)?;
                let hex = std::str::from_utf8(hex).map_err(|_| PathError::BadEscape)?;
                let v = u8::from_str_radix(hex, 16).map_err(|_| PathError::BadEscape)?;
                if !hex.bytes().all(|h| h.is_ascii_hexdigit()) {
                    return Err(PathError::BadEscape);
                }
                let delimiter = if query {
                    matches!(v, b'&' | b'=' | b'#' | b'%')
                } else {
                    matches!(v, b'/' | b'\\' | b'%' | b'?' | b'#' | b';')
                };
                if delimiter || v < 0x20 || v == 0x7f {
                    return Err(PathError::EscapedDelimiter);
                }
                i += 3;
                v
            }
            b'+' if query => {
                i += 1;
                b' '
            }
            c if c < 0x20 || c == 0x7f => return Err(PathError::EscapedDelimiter),
            c => {
                i += 1;
                c
            }
        };
        out.push(c);
    }
    String::from_utf8(out).map_err(|_| PathError::NotUtf8)
}

#[cfg(test)]
mod tests;
