//! Resource URIs, `file://` arguments and path arguments as policy judges
//! them: the way the server will resolve them, or refused where servers
//! could resolve them differently.
//!
//! Servers read URIs with WHATWG parsers (Node's `URL` and
//! `fileURLToPath`) or with Python's `urllib.parse` followed by
//! `unquote` and `os.path.normpath`. Both agree on a URI whose escapes
//! decode to nothing that delimits or walks: then the judged form is the
//! WHATWG parse (scheme lowercased, dot segments resolved) with its
//! escapes decoded once. They disagree, and the URI is refused, when it
//! has a backslash (a separator to WHATWG in `file:` and `http:`, a
//! character to Python), or an escape that decodes to a delimiter or a
//! dot segment (`%2F`, `%5C`, `%3F`, `%23`, `%00`, `%25`, `%2e%2e`):
//! decoded before the split by one server, after it by another.

use percent_encoding::percent_decode_str;
use url::{Position, Url};

/// Why a URI or path cannot be judged; each says what the server could
/// read instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Ambiguous {
    /// Not an absolute URI with a scheme.
    #[error("is not an absolute URI")]
    NotUri,
    /// A control character, NUL included, raw or escaped.
    #[error("contains a control character")]
    Control,
    /// `file:x`: WHATWG parsers read `/x`, Python's urlsplit `x`.
    #[error("is a file: URI whose path has no leading slash, which parsers resolve differently")]
    FileRelative,
    /// `//` before a `..`, which WHATWG parsers and file systems resolve
    /// to different places.
    #[error(
        "has an empty segment (//) before a \"..\", which parsers and file systems resolve differently"
    )]
    EmptyThenUp,
    /// Leading or trailing whitespace, which some parsers strip.
    #[error("has leading or trailing whitespace")]
    Whitespace,
    /// A backslash: a separator to some servers, a character to others.
    #[error("contains a backslash, which some servers read as a path separator")]
    Backslash,
    /// An escape that decodes to `/ \ ? # %` or a dot segment.
    #[error(
        "has an escape that decodes to a delimiter or a dot segment \
         (%2F, %5C, %3F, %23, %25, %2E), which servers split differently"
    )]
    EncodedDelimiter,
    /// A drive-letter path with dot segments: relative on POSIX, absolute
    /// on Windows, so `..` leads to different places.
    #[error("is a drive-letter path with dot segments, which resolve differently by system")]
    DriveDots,
    /// Escapes that do not decode to UTF-8.
    #[error("has an escape that is not UTF-8")]
    NotUtf8,
}

/// A resource URI as policy sees it (see the module doc): `FILE:///srv/
/// data/./b/../a%20b?x` is `file:///srv/data/a b` (a `file:` URI's query
/// and fragment are left out: servers open the path alone).
pub fn resource_uri(uri: &str) -> Result<String, Ambiguous> {
    if uri.chars().any(char::is_control) {
        return Err(Ambiguous::Control);
    }
    if uri.trim() != uri {
        return Err(Ambiguous::Whitespace);
    }
    if uri.contains('\\') {
        return Err(Ambiguous::Backslash);
    }
    let url = Url::parse(uri).map_err(|_| Ambiguous::NotUri)?;
    // The path as written (before `?` or `#`): its escapes must not make
    // new segments, delimiters or dot segments once decoded.
    let after_scheme = &uri[uri.find(':').map_or(0, |i| i + 1)..];
    if url.scheme() == "file" && !after_scheme.starts_with('/') {
        return Err(Ambiguous::FileRelative);
    }
    let raw_path = after_scheme.split(['?', '#']).next().unwrap_or_default();
    check_escapes(raw_path, true)?;
    if empty_then_up(raw_path) {
        return Err(Ambiguous::EmptyThenUp);
    }
    check_escapes(
        &uri[raw_path.len() + (uri.len() - after_scheme.len())..],
        false,
    )?;
    let head = &url[..Position::BeforePath];
    let path = decode(url.path())?;
    let tail = decode(&url[Position::AfterPath..])?;
    if url.scheme() == "file" {
        // Servers open the path and ignore the rest: a query must not
        // keep `file:///etc/passwd?x` from matching a guard on the file,
        // nor `//` (one `/` to the file system) `file:///etc//passwd`.
        let mut path = path;
        while path.contains("//") {
            path = path.replace("//", "/");
        }
        return Ok(format!("{head}{path}"));
    }
    Ok(format!("{head}{path}{tail}"))
}

/// A `file:` argument or an absolute path argument as policy sees it:
/// `file:` URIs as `resource_uri` reads them; absolute paths (`/`, `\`
/// or a drive letter first) with dot segments resolved. A path whose
/// escapes or backslashes would resolve elsewhere at a server that
/// decodes them or treats `\` as a separator is refused. Anything else
/// is returned as it is.
pub fn path_arg(s: &str) -> Result<String, Ambiguous> {
    if s.get(..5).is_some_and(|p| p.eq_ignore_ascii_case("file:")) {
        return resource_uri(s);
    }
    if !absolute(s) {
        return Ok(s.to_string());
    }
    if s.chars().any(char::is_control) {
        return Err(Ambiguous::Control);
    }
    check_escapes(s, true)?;
    // `\` is a separator on Windows and to servers that mend paths, a
    // character on POSIX: `\etc\passwd` is /etc/passwd to one and a
    // relative name to the other, and no one string is right for both a
    // permit on a prefix and a forbid on one.
    if s.contains('\\') {
        return Err(Ambiguous::Backslash);
    }
    if !s.starts_with('/') {
        // A drive letter: relative on POSIX, absolute on Windows.
        if s.split('/').any(|seg| seg == "." || seg == "..") {
            return Err(Ambiguous::DriveDots);
        }
        return Ok(s.to_string());
    }
    Ok(normalize(s))
}

/// Whether the path of a raw URI (after the scheme) has an empty segment
/// with a `..` after it: WHATWG parsers let the `..` remove the empty
/// segment (`/srv/data//../x` is `/srv/data/x`), file systems and Python's
/// normpath treat `//` as `/` first (`/srv/x`).
fn empty_then_up(after_scheme: &str) -> bool {
    let path = match after_scheme.strip_prefix("//") {
        Some(rest) => rest.find('/').map_or("", |i| &rest[i..]),
        None => after_scheme,
    };
    let segs: Vec<&str> = path.split('/').collect();
    let Some(first_empty) = segs
        .iter()
        .enumerate()
        .skip(1)
        .position(|(i, s)| s.is_empty() && i + 1 < segs.len())
    else {
        return false;
    };
    segs[first_empty + 2..].contains(&"..")
}

/// Whether a string is an absolute path on some system.
pub(super) fn absolute(s: &str) -> bool {
    let b = s.as_bytes();
    // `%2F...` is absolute to a server that decodes its arguments.
    let escaped_root = s
        .get(..3)
        .is_some_and(|p| p.eq_ignore_ascii_case("%2f") || p.eq_ignore_ascii_case("%5c"));
    escaped_root
        || s.starts_with(['/', '\\'])
        || (b.len() >= 3
            && b[0].is_ascii_alphabetic()
            && b[1] == b':'
            && matches!(b[2], b'/' | b'\\'))
}

/// Whether a path (or any string that may be one) walks with `..` under
/// any reading: `/` or `\` as separator, escapes decoded or not.
pub fn walks_up(s: &str) -> bool {
    let decoded = percent_decode_str(s).decode_utf8_lossy();
    [s, decoded.as_ref()]
        .iter()
        .any(|t| t.split(['/', '\\']).any(|seg| seg == ".."))
}

/// Refuses escapes that decode to a control character, or (in a path) to
/// `/ \ ? # %` or make a dot segment.
pub(super) fn check_escapes(raw: &str, path: bool) -> Result<(), Ambiguous> {
    let b = raw.as_bytes();
    for (i, _) in raw.match_indices('%') {
        let hex = |j: usize| b.get(j).and_then(|c| (*c as char).to_digit(16));
        let (Some(h), Some(l)) = (hex(i + 1), hex(i + 2)) else {
            continue;
        };
        let c = (h * 16 + l) as u8;
        if c < 0x20 || c == 0x7f {
            return Err(Ambiguous::Control);
        }
        if path && matches!(c, b'/' | b'\\' | b'?' | b'#' | b'%') {
            return Err(Ambiguous::EncodedDelimiter);
        }
    }
    if path {
        for seg in raw.split('/') {
            let d = percent_decode_str(seg).decode_utf8_lossy();
            if seg.contains('%') && (d == "." || d == "..") {
                return Err(Ambiguous::EncodedDelimiter);
            }
        }
    }
    Ok(())
}

fn decode(s: &str) -> Result<String, Ambiguous> {
    let d = percent_decode_str(s)
        .decode_utf8()
        .map_err(|_| Ambiguous::NotUtf8)?;
    if d.chars().any(char::is_control) {
        return Err(Ambiguous::Control);
    }
    Ok(d.into_owned())
}

/// Absolute paths (and `file://` URIs) resolved lexically, so `..` cannot
/// walk out of a prefix a policy checks with `like "/srv/data/*"`.
pub fn normalize(s: &str) -> String {
    let (scheme, path) = match s.strip_prefix("file://") {
        Some(p) => ("file://", p),
        None => ("", s),
    };
    if !path.starts_with('/') {
        return s.to_string();
    }
    let mut parts: Vec<&str> = Vec::new();
    for seg in path.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            other => parts.push(other),
        }
    }
    let trailing = if path.ends_with('/') && !parts.is_empty() {
        "/"
    } else {
        ""
    };
    format!("{scheme}/{}{trailing}", parts.join("/"))
}

#[cfg(test)]
mod tests;
