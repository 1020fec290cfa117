//! One compiled profile: its detectors, strategies and key names, and the
//! masking of one text with them (compiling it from its config is in
//! `profile/compile.rs`).

use regex::Regex;

use super::{
    Counts, Strategy, bump,
    detect::{self, Hit, Kind},
    gate::{self, Pre},
    numeric,
    strategy::{self, HmacKey},
    walk,
};
use crate::config::Validator;

mod compile;

/// One compiled profile.
#[derive(Debug)]
pub struct Profile {
    name: String,
    /// Built-ins in tie-break order, then customs in config order.
    dets: Vec<Det>,
    /// Bits of the built-in kinds in `dets`.
    builtin: u32,
    /// Index in `dets` per built-in kind, or `detect::NONE`.
    det_of: [u32; 12],
    has_custom: bool,
    /// The shortest text any detector can take something from.
    min_len: usize,
    /// Fewest digits a text needs for the number-shaped detectors other
    /// than IBAN to find anything (an IBAN has its own cue, see `find`),
    /// without a `+` in it and with one.
    numeric_min: [usize; 2],
    /// Normalized (ASCII lower-case, no `-`/`_`) key names, sorted.
    keys: Vec<Vec<u8>>,
    /// Per first and per last byte of a normalized key name, one bit per
    /// length (mod 64) of a key name starting (ending) with it: almost
    /// every key in an answer is turned away by these two lookups, before
    /// any comparison.
    key_first: LengthBits,
    key_last: LengthBits,
    longest_key: usize,
    pub(super) key_strategy: Strategy,
    pub(super) hmac: HmacKey,
}

/// Per byte, one bit per key-name length (mod 64); see `Profile::key_first`.
type LengthBits = Box<[u64; 256]>;

#[derive(Debug)]
struct Det {
    name: String,
    label: String,
    strategy: Strategy,
    how: How,
}

#[derive(Debug)]
enum How {
    Builtin(Kind),
    Custom(Regex, Option<Validator>),
}

/// The result of masking one text.
pub(crate) enum Masked {
    Text(String),
    /// The text was one dropped value as a whole.
    Gone,
}

/// Hits found in a text, and whether the text may be scanned again only
/// around what they replace (see [`Profile::apply`]).
struct Found {
    hits: Vec<Hit>,
    local: bool,
}

/// One pass's output: the text, where its replacements are in it, and
/// whether one of them was `partial`.
struct Pass {
    out: String,
    spans: Spans,
    partial: bool,
}

/// Where a pass's replacements are: most texts have one or two, which
/// need no allocation.
enum Spans {
    Few([(usize, usize); 4], usize),
    Many(Vec<(usize, usize)>),
}

impl Spans {
    fn push(&mut self, span: (usize, usize)) {
        match self {
            Spans::Few(a, n) if *n < a.len() => {
                a[*n] = span;
                *n += 1;
            }
            Spans::Few(a, _) => {
                let mut v = a.to_vec();
                v.push(span);
                *self = Spans::Many(v);
            }
            Spans::Many(v) => v.push(span),
        }
    }

    fn as_slice(&self) -> &[(usize, usize)] {
        match self {
            Spans::Few(a, n) => &a[..*n],
            Spans::Many(v) => v,
        }
    }
}

/// Bits of the detectors `numeric::scan` serves.
const NUMERIC: u32 = {
    let mut b = 0;
    let mut i = 0;
    while i < numeric::KINDS.len() {
        b |= 1 << numeric::KINDS[i] as u32;
        i += 1;
    }
    b
};

/// Detectors whose values are not bounded by the bytes `hard` names: a
/// private key's body spans lines and punctuation, an AWS secret is found
/// up to 30 bytes after its cue. A text holding their literals is always
/// scanned again whole.
const UNBOUNDED: u32 = (1 << Kind::PrivateKey as u32) | (1 << Kind::AwsSecretKey as u32);

impl Profile {
    /// The profile's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether this profile masks anything at all (false for `none`).
    pub fn is_active(&self) -> bool {
        !self.dets.is_empty() || !self.keys.is_empty()
    }

    /// Masks one text; `None` when nothing matched (no allocation on that
    /// path). A dropped value is cut out of the text.
    pub fn mask_str(&self, text: &str, counts: &mut Counts) -> Option<String> {
        self.apply(text, counts, false).map(|m| match m {
            Masked::Text(t) => t,
            Masked::Gone => String::new(),
        })
    }

    /// Masks every string in a JSON value in place: object values whose
    /// key matches `keys` (whatever they hold: strings, numbers;
    /// objects/arrays under such a key are masked wholesale by replacing
    /// with the redaction; null and booleans are left), strings by the
    /// detectors, and strings that are themselves a JSON object or array
    /// (JSON embedded in text, e.g. MCP tool result `content[].text`) are
    /// masked inside and re-serialized (compact) when something in them
    /// changed. Integers are checked as their decimal text (a card number
    /// sent as a number); object keys by the detectors too (`drop` then
    /// redacts, so the entry survives). A value a detector drops whole is
    /// removed with its key from an object, as a key-name drop removes it;
    /// in an array it becomes `null`, so later elements keep their
    /// positions. Returns true if anything changed.
    pub fn mask_json(&self, value: &mut serde_json::Value, counts: &mut Counts) -> bool {
        self.is_active() && walk::top(self, value, counts)
    }

    /// Accepted detector hits in `text`, sorted and non-overlapping.
    #[cfg(test)]
    pub(super) fn hits(&self, text: &str) -> Vec<Hit> {
        self.find(text).hits
    }

    fn find(&self, text: &str) -> Found {
        let mut hits = Vec::new();
        if text.len() < self.min_len {
            return Found { hits, local: true };
        }
        let pre = Pre::of(text);
        if self.builtin & NUMERIC != 0 {
            // An IBAN needs only its two check digits (and 15 characters);
            // the other number-shaped values need more digits, in one
            // stretch of digits and separators.
            let min = self.numeric_min[usize::from(pre.plus)];
            // Where the first stretch with enough digits starts.
            let runs = if pre.digits < min {
                None
            } else if text.len() > gate::SHORT {
                Some(0)
            } else {
                numeric::first_stretch(text.as_bytes(), min)
            };
            let iban = pre.digits >= 2
                && pre.upper >= 2
                && text.len() >= numeric::IBAN_MIN
                && self.det_of[Kind::Iban as usize] != detect::NONE;
            match (runs, iban) {
                (None, false) => {}
                (None, true) => numeric::scan(text, &self.det_of, usize::MAX, 0, &mut hits),
                // Nothing before the stretch but an IBAN can be taken.
                (Some(from), iban) => {
                    let from = if iban { 0 } else { from };
                    numeric::scan(text, &self.det_of, min, from, &mut hits);
                }
            }
        }
        let bits = detect::gate(text, &pre, self.builtin & !NUMERIC);
        if bits != 0 {
            for k in Kind::ALL.into_iter().filter(|k| bits & k.bit() != 0) {
                detect::scan(k, text, self.det_of[k as usize], &mut hits);
            }
        }
        // Customs come after the built-ins.
        let customs = if self.has_custom { self.dets.len() } else { 0 };
        for (i, d) in self.dets.iter().enumerate().skip(self.dets.len() - customs) {
            if let How::Custom(re, validator) = &d.how {
                hits.extend(
                    re.find_iter(text)
                        .filter(|m| !m.is_empty() && custom_valid(*validator, m.as_str()))
                        .map(|m| Hit {
                            start: m.start(),
                            end: m.end(),
                            det: i as u32,
                        }),
                );
            }
        }
        detect::resolve(
            &mut hits,
            |d| matches!(self.dets[d as usize].how, How::Builtin(k) if k.first()),
        );
        Found {
            hits,
            local: !self.has_custom && bits & UNBOUNDED == 0,
        }
    }

    /// Hits in `text` (the output of a pass) around its replacements
    /// `spans` only; `None` when a window holds what only a whole scan
    /// judges right.
    ///
    /// Why that finds what a whole scan would: every bounded detector's
    /// value, and every byte its checks look at beside it, is made of
    /// ASCII letters, digits and ` _.%+-@()` (and `:` for IPv6); any
    /// other byte (quotes, brackets, commas, newlines, non-ASCII) is
    /// `hard`, and a value never spans one. Between two hard bytes the
    /// text is found the same wherever it sits, so a stretch no
    /// replacement touched holds exactly what the previous pass found in
    /// it: nothing left to take. Each window runs from the hard byte
    /// before a replacement to the one after it (the `[` and `]` of a
    /// token are hard, and a drop joins its neighbours into one window).
    fn find_near(&self, text: &str, spans: &[(usize, usize)]) -> Option<Vec<Hit>> {
        let t = text.as_bytes();
        let ipv6 = self.builtin & Kind::Ipv6.bit() != 0;
        let mut hits = Vec::new();
        let mut i = 0;
        while i < spans.len() {
            let (s, mut e) = spans[i];
            let mut w0 = t[..s]
                .iter()
                .rposition(|&b| hard(b, ipv6))
                .map_or(0, |p| p + 1);
            let mut w1 = t[e..]
                .iter()
                .position(|&b| hard(b, ipv6))
                .map_or(t.len(), |p| e + p);
            // Replacements within one window are scanned together.
            while let Some(&(s2, e2)) = spans.get(i + 1)
                && s2 <= w1
            {
                e = e2;
                w1 = t[e..]
                    .iter()
                    .position(|&b| hard(b, ipv6))
                    .map_or(t.len(), |p| e + p);
                i += 1;
            }
            i += 1;
            // Hard bytes include every non-ASCII one: widen to whole
            // characters (more hard bytes in a window change nothing).
            w0 = text.floor_char_boundary(w0);
            w1 = text.ceil_char_boundary(w1);
            let found = self.find(&text[w0..w1]);
            if !found.local {
                return None;
            }
            hits.extend(found.hits.into_iter().map(|h| Hit {
                start: h.start + w0,
                end: h.end + w0,
                ..h
            }));
        }
        Some(hits)
    }

    /// Masks `text`; in an object key (`in_key`) a dropped value is
    /// redacted instead, so the entry keeps a name.
    ///
    /// Masking is idempotent: the audit masks answers again, and an answer
    /// already masked with the default profile is not scanned twice, so
    /// what comes out must hold nothing a detector takes. A value can
    /// become one only once a neighbour is masked: it overlapped a hit that
    /// won (`-----BEGIN PRIVATE KEY-----_@e.co`), or was refused for what
    /// touched it (`+19201448)1@l.co`: the number ran on into the address).
    /// So a text that had something masked is masked again until nothing
    /// changes, at most `MAX_PASSES` times in all, which bounds what a
    /// crafted chain costs; a text with nothing to mask takes one pass.
    /// Later passes look only around what the pass before replaced (see
    /// `find_near`), unless the text holds a private key or AWS secret
    /// cue, or the profile custom regexes, which are scanned whole again.
    /// Not after `partial`, whose output still looks like what it masked
    /// (`*o@e.io`): masking that again would star what it means to show.
    pub(crate) fn apply(&self, text: &str, counts: &mut Counts, in_key: bool) -> Option<Masked> {
        self.apply_passes(text, counts, in_key, true)
    }

    /// [`Profile::apply`]; with `near` false every pass scans the whole
    /// text (what `find_near` must agree with).
    pub(super) fn apply_passes(
        &self,
        text: &str,
        counts: &mut Counts,
        in_key: bool,
        near: bool,
    ) -> Option<Masked> {
        const MAX_PASSES: usize = 8;
        let found = self.find(text);
        let local = near && found.local;
        let mut pass = self.render(text, &found.hits, counts, in_key)?;
        for _ in 1..MAX_PASSES {
            let Some(p) = &pass else {
                return Some(Masked::Gone);
            };
            if p.partial {
                break;
            }
            let hits = match local
                .then(|| self.find_near(&p.out, p.spans.as_slice()))
                .flatten()
            {
                Some(h) => h,
                None => self.find(&p.out).hits,
            };
            match self.render(&p.out, &hits, counts, in_key) {
                None => break,
                Some(next) => pass = next,
            }
        }
        Some(match pass {
            Some(p) => Masked::Text(p.out),
            None => Masked::Gone,
        })
    }

    /// `text` with `hits` replaced: `None` when there are none,
    /// `Some(None)` when the text was one dropped value.
    fn render(
        &self,
        text: &str,
        hits: &[Hit],
        counts: &mut Counts,
        in_key: bool,
    ) -> Option<Option<Pass>> {
        let strategy = |h: &Hit| match self.dets[h.det as usize].strategy {
            Strategy::Drop if in_key => Strategy::Redact,
            s => s,
        };
        match hits {
            [] => return None,
            [h] if h.start == 0 && h.end == text.len() && strategy(h) == Strategy::Drop => {
                bump(counts, &self.dets[h.det as usize].name);
                return Some(None);
            }
            _ => {}
        }
        let mut out = String::with_capacity(text.len());
        let mut spans = Spans::Few([(0, 0); 4], 0);
        let mut at = 0;
        let mut partial = false;
        for h in hits {
            let d = &self.dets[h.det as usize];
            out.push_str(&text[at..h.start]);
            let value = &text[h.start..h.end];
            let s = strategy(h);
            partial |= s == Strategy::Partial;
            let from = out.len();
            strategy::render(&mut out, s, &d.name, &d.label, value, &self.hmac);
            spans.push((from, out.len()));
            bump(counts, &d.name);
            at = h.end;
        }
        out.push_str(&text[at..]);
        Some(Some(Pass {
            out,
            spans,
            partial,
        }))
    }

    /// Whether `key` is one of the profile's key names (case-insensitive,
    /// `-` and `_` ignored), without allocating.
    pub(crate) fn key_hit(&self, key: &str) -> bool {
        if self.keys.is_empty() {
            return false;
        }
        let mut buf = [0u8; 64];
        let mut n = 0;
        for b in key.bytes().filter(|&b| b != b'-' && b != b'_') {
            if n == self.longest_key || n == buf.len() {
                return false;
            }
            buf[n] = b.to_ascii_lowercase();
            n += 1;
        }
        let (first, last) = (buf[0], buf[n.saturating_sub(1)]);
        if (self.key_first[usize::from(first)] & self.key_last[usize::from(last)]) >> (n & 63) & 1
            == 0
        {
            return false;
        }
        self.keys
            .binary_search_by(|k| k.as_slice().cmp(&buf[..n]))
            .is_ok()
    }

    /// Whether object keys can be masked by the detectors at all.
    pub(crate) fn masks_text(&self) -> bool {
        !self.dets.is_empty()
    }

    pub(crate) fn has_custom(&self) -> bool {
        self.has_custom
    }
}

/// A byte no bounded detector's value holds or looks at (see
/// [`Profile::find_near`]).
fn hard(b: u8, ipv6: bool) -> bool {
    !(b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'_' | b'.' | b'%' | b'+' | b'-' | b'@' | b'(' | b')' | b' '
        )
        || (ipv6 && b == b':'))
}

fn normalize_key(k: &str) -> Vec<u8> {
    k.bytes()
        .filter(|&b| b != b'-' && b != b'_')
        .map(|b| b.to_ascii_lowercase())
        .collect()
}

fn custom_valid(v: Option<Validator>, m: &str) -> bool {
    let Some(v) = v else { return true };
    let alnum: Vec<u8> = m
        .chars()
        .filter(|c| c.is_alphanumeric())
        .map(|c| if c.is_ascii() { c as u8 } else { 0 })
        .collect();
    match v {
        Validator::Luhn => {
            alnum.iter().all(u8::is_ascii_digit) && numeric::luhn(alnum.iter().copied())
        }
        Validator::Mod97 => {
            let upper: Vec<u8> = alnum.iter().map(u8::to_ascii_uppercase).collect();
            numeric::mod97(&upper)
        }
    }
}
