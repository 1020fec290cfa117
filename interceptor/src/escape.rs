//! Caller text made safe for a person to read. Method names, tool names,
//! resource URIs and subjects come from callers and servers; printed raw,
//! an `ESC [2J` clears the operator's screen, a carriage return or a bidi
//! override rewrites what a line seems to say (a denied row shown as
//! allowed, one row hiding another). Every human-facing output (CLI
//! tables and lines, text logs, the Markdown report) passes caller text
//! through [`text`]; JSON outputs stay JSON (see [`json_line`]).
//!
//! A leaf module: it uses nothing else of the crate.

use std::borrow::Cow;

/// Whether `c` must not reach a terminal or document as itself: C0
/// controls (tab and newline too: they forge columns and lines), DEL, C1
/// controls (8-bit CSI and friends), the bidi embeddings, overrides and
/// isolates (U+202A-202E, U+2066-2069), the bidi marks (U+061C, U+200E,
/// U+200F) and the Unicode line and paragraph separators (U+2028, U+2029),
/// which some terminals and editors break lines at.
pub fn is_unsafe(c: char) -> bool {
    matches!(
        c,
        '\0'..='\x1f'
            | '\x7f'..='\u{9f}'
            | '\u{61c}'
            | '\u{200e}'
            | '\u{200f}'
            | '\u{2028}'..='\u{202e}'
            | '\u{2066}'..='\u{2069}'
    )
}

/// `s` with every [`is_unsafe`] character written as an escape: `\x1b`
/// for C0 and DEL, `\u{9b}` / `\u{202e}` for the rest (the form Rust and
/// tracing-subscriber use). Borrowed when nothing needed escaping.
pub fn text(s: &str) -> Cow<'_, str> {
    if !s.chars().any(is_unsafe) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            c if !is_unsafe(c) => out.push(c),
            c if (c as u32) < 0x80 => out.push_str(&format!("\\x{:02x}", c as u32)),
            c => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
        }
    }
    Cow::Owned(out)
}

/// [`text`] of an optional value, `-` when there is none (the tables'
/// placeholder).
pub fn opt(s: Option<&str>) -> Cow<'_, str> {
    s.map_or(Cow::Borrowed("-"), text)
}

/// Text of several lines the program wrote itself (a rendered
/// explanation): each line through [`text`], the line breaks kept. Only
/// for text whose caller parts cannot hold a newline of their own.
pub fn lines(s: &str) -> String {
    s.split('\n').map(text).collect::<Vec<_>>().join("\n")
}

/// `v` with every string and object key through [`text`]: the JSON
/// documents the CLI renders for people (approvals, grants, pinned tool
/// definitions) then hold no caller-chosen control or bidi character,
/// whichever field a rendering picks out.
pub fn value(v: &serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match v {
        Value::String(s) => Value::String(text(s).into_owned()),
        Value::Array(a) => Value::Array(a.iter().map(value).collect()),
        Value::Object(o) => Value::Object(
            o.iter()
                .map(|(k, v)| (text(k).into_owned(), value(v)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// One formatted text log line (ending in `\n`): everything but that final
/// newline passed through [`text`], so caller text in a field or a message
/// cannot add lines, colours or reordering to the log.
pub fn text_line(line: &str) -> String {
    let (body, nl) = match line.strip_suffix('\n') {
        Some(b) => (b, "\n"),
        None => (line, ""),
    };
    format!("{}{nl}", text(body))
}

/// One JSON log line: serde_json already escapes C0 controls; DEL, C1 and
/// the bidi characters it leaves raw are written as `\uXXXX` escapes,
/// which decode to the same string (they can only occur inside strings).
pub fn json_line(line: &str) -> String {
    let (body, nl) = match line.strip_suffix('\n') {
        Some(b) => (b, "\n"),
        None => (line, ""),
    };
    let mut out = String::with_capacity(line.len());
    for c in body.chars() {
        if is_unsafe(c) {
            out.push_str(&format!("\\u{:04x}", c as u32));
        } else {
            out.push(c);
        }
    }
    out.push_str(nl);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controls_and_bidi_are_escaped_and_the_rest_kept() {
        assert_eq!(text("tools/call"), "tools/call");
        assert!(matches!(text("plain ü 名"), Cow::Borrowed(_)));
        assert_eq!(text("a\x1b[2Jb"), "a\\x1b[2Jb");
        assert_eq!(text("x\r\ny\tz\x7f"), "x\\x0d\\x0ay\\x09z\\x7f");
        assert_eq!(text("\u{9b}31m"), "\\u{9b}31m");
        assert_eq!(text("deny\u{202e}wolla"), "deny\\u{202e}wolla");
        assert_eq!(
            text("\u{2066}\u{2069}\u{200f}"),
            "\\u{2066}\\u{2069}\\u{200f}"
        );
        assert_eq!(opt(None), "-");
        assert_eq!(lines("a\x1b\nb\u{202e}"), "a\\x1b\nb\\u{202e}");
        let v = value(&serde_json::json!({ "k\r": ["\x1b", 1] }));
        assert_eq!(v, serde_json::json!({ "k\\x0d": ["\\x1b", 1] }));
        for c in ['\0', '\x1b', '\u{85}', '\u{202a}', '\u{2028}'] {
            assert!(!text(&c.to_string()).chars().any(is_unsafe));
        }
    }

    #[test]
    fn log_lines_keep_their_newline_and_json_stays_json() {
        assert_eq!(text_line("m=\x1b[2J\nforged\n"), "m=\\x1b[2J\\x0aforged\n");
        let v = serde_json::json!({ "m": "a\u{202e}b\u{7f}\u{9b}\n" });
        let line = format!("{v}\n");
        let safe = json_line(&line);
        assert!(!safe.trim_end().chars().any(is_unsafe));
        let back: serde_json::Value = serde_json::from_str(&safe).unwrap();
        assert_eq!(back, v);
    }
}
