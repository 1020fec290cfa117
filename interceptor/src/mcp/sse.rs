//! Server-Sent Events framing, incremental: bytes in as they arrive, whole
//! events out, each with the exact bytes it came as (forwarded unchanged
//! unless a phase rewrites its data or masks its other lines). At most one event is buffered, and
//! never more than `max_event` bytes of it.

use bytes::{Bytes, BytesMut};

/// Why an SSE stream could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SseError {
    /// An event grew past the limit without ending.
    #[error("an SSE event exceeded {0} bytes")]
    TooLarge(usize),
    /// An event's field text is not UTF-8.
    #[error("an SSE event is not valid UTF-8")]
    Utf8,
}

/// One event: its raw bytes (terminating blank line included) and fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// The event's bytes as received.
    pub raw: Bytes,
    /// The event's type.
    pub event: Option<String>,
    /// `data` lines joined with `\n`; `None` for comment-only blocks
    /// (keep-alives), which carry no message.
    pub data: Option<String>,
    /// The event's id.
    pub id: Option<String>,
}

impl Event {
    /// The event type, `message` when unnamed (as browsers treat it).
    pub fn kind(&self) -> &str {
        self.event.as_deref().unwrap_or("message")
    }

    /// Every line of the event but its `data` lines (comments, `event`,
    /// `id`, `retry`, unknown fields), `\n`-joined; empty when there are
    /// none. A masking phase reads these too: they reach the client's
    /// wire whenever the event is forwarded as it came.
    pub fn side_text(&self) -> String {
        // `raw` parsed as UTF-8 when the event was made.
        let text = String::from_utf8_lossy(&self.raw);
        let mut out = String::new();
        for line in text.split(['\n', '\r']) {
            let field = line.split_once(':').map_or(line, |(f, _)| f);
            if line.is_empty() || field.trim_start_matches('\u{feff}') == "data" {
                continue;
            }
            if !out.is_empty() {
                out.push('\n');
            }
            out.push_str(line);
        }
        out
    }
}

/// An incremental parser of an SSE stream.
pub struct Parser {
    buf: BytesMut,
    /// Where the search for the end of the current event resumes.
    scan: usize,
    max_event: usize,
}

impl Parser {
    /// A parser that refuses events longer than `max_event` bytes.
    pub fn new(max_event: usize) -> Self {
        Self {
            buf: BytesMut::new(),
            scan: 0,
            max_event,
        }
    }

    /// Feeds a chunk; returns the events it completed.
    pub fn push(&mut self, chunk: &[u8]) -> Result<Vec<Event>, SseError> {
        self.buf.extend_from_slice(chunk);
        let mut out = Vec::new();
        while let Some(end) = self.find_end() {
            // A whole event may arrive in one chunk: the limit is on events,
            // not on what is left over between them.
            if end > self.max_event {
                return Err(SseError::TooLarge(self.max_event));
            }
            let raw = self.buf.split_to(end).freeze();
            self.scan = 0;
            out.push(parse_block(raw)?);
        }
        if self.buf.len() > self.max_event {
            return Err(SseError::TooLarge(self.max_event));
        }
        Ok(out)
    }

    /// What is buffered and not yet returned: an unfinished event when the
    /// stream ends, or the rest of the chunk after an error. The relay
    /// drops it (no phase has seen it).
    pub fn leftover(&mut self) -> Bytes {
        self.scan = 0;
        self.buf.split().freeze()
    }

    /// Index just past the blank line that ends the first event, if any.
    /// A line ends with `\n`, `\r\n` or `\r`; an event with an empty line.
    fn find_end(&mut self) -> Option<usize> {
        let b = &self.buf;
        let mut i = self.scan;
        // `line_start` tracks whether position i begins a line.
        let mut line_start = i == 0 || matches!(b.get(i.wrapping_sub(1)), Some(b'\n' | b'\r'));
        while i < b.len() {
            match b[i] {
                b'\r' if b.get(i + 1).is_none() => break, // wait: \r or \r\n?
                b'\r' | b'\n' => {
                    let len = if b[i] == b'\r' && b[i + 1] == b'\n' {
                        2
                    } else {
                        1
                    };
                    if line_start {
                        return Some(i + len);
                    }
                    line_start = true;
                    i += len;
                }
                _ => {
                    line_start = false;
                    i += 1;
                }
            }
        }
        // Resume at the start of the current line next time.
        let mut back = i;
        while back > 0 && !matches!(b[back - 1], b'\n' | b'\r') {
            back -= 1;
        }
        self.scan = back;
        None
    }
}

fn parse_block(raw: Bytes) -> Result<Event, SseError> {
    let text = std::str::from_utf8(&raw).map_err(|_| SseError::Utf8)?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut event = None;
    let mut data: Option<String> = None;
    let mut id = None;
    for line in text.split(['\n', '\r']) {
        if line.is_empty() || line.starts_with(':') {
            continue;
        }
        let (field, value) = match line.split_once(':') {
            Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
            None => (line, ""),
        };
        match field {
            "event" => event = Some(value.to_string()),
            "data" => match &mut data {
                Some(d) => {
                    d.push('\n');
                    d.push_str(value);
                }
                None => data = Some(value.to_string()),
            },
            "id" => id = Some(value.to_string()),
            _ => {}
        }
    }
    Ok(Event {
        raw,
        event,
        data,
        id,
    })
}

/// Serializes an event whose data a phase rewrote, keeping its type and id.
pub fn serialize(event: Option<&str>, id: Option<&str>, data: &str) -> Bytes {
    let mut s = String::with_capacity(data.len() + 32);
    if let Some(e) = event {
        s.push_str("event: ");
        s.push_str(e);
        s.push('\n');
    }
    if let Some(i) = id {
        s.push_str("id: ");
        s.push_str(i);
        s.push('\n');
    }
    for line in data.split('\n') {
        s.push_str("data: ");
        s.push_str(line);
        s.push('\n');
    }
    s.push('\n');
    Bytes::from(s)
}

#[cfg(test)]
mod tests;
