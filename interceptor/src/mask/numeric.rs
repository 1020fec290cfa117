//! The number-shaped detectors (card, SSN, phone, IPv4, IBAN) in one pass.
//!
//! Tool output is full of numbers (ids, timestamps, prices) and a regex
//! without a literal to look for runs its automaton over all of them, one
//! pass per detector. Here one byte loop measures each run of digit groups
//! (digits joined by at most two of ` -.()`), and only runs whose count
//! and grouping can be a detector's value (13+ digits for a card, 3-2-4
//! for an SSN, 3-3-4, a leading `+` or a national grouping for a phone,
//! ...) go to that detector's regex and validator, on that run alone.
//!
//! National phone numbers (`415 555 2671`, `020 7946 0958`, `06 12 34 56
//! 78`, `030 12345678`) are taken only as a whole run of exactly their
//! grouping: one more group either side (`020 7946 0958 12`) is a list of
//! numbers, not a phone, and so are dates, versions and amounts, which
//! group differently (`2026 11 25`, `1 234 567`).

mod check;

pub use check::luhn;
use check::{CARD_LEAD, card_end, iban_at, next_group, phone_ok, ssn_ok};
pub(crate) use check::{card_sized, mod97};
use std::sync::LazyLock;

use regex::Regex;

use super::{
    detect::{Hit, Kind, NONE, is_word},
    matchers,
};

struct Patterns {
    ssn: Regex,
    ipv4: Regex,
    iban: Regex,
}

// ASCII-only and byte-oriented: spans always fall on `str` boundaries.
const SSN: &str = r"(?-u)[0-9]{3}-[0-9]{2}-[0-9]{4}";
const IPV4: &str = r"(?-u)(?:(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])\.){3}(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])";
const IBAN: &str =
    r"(?-u)[A-Z]{2}[0-9]{2}(?:(?: [A-Z0-9]{4}){2,7}(?: [A-Z0-9]{1,3})?|[A-Z0-9]{11,30})";
/// Longest IBAN the pattern takes: country, check digits, seven groups
/// of four and a short one, spaced.
const IBAN_MAX: usize = 4 + 7 * 5 + 4;
/// Shortest IBAN (Norway's).
pub(crate) const IBAN_MIN: usize = 15;

static PATTERNS: LazyLock<Patterns> = LazyLock::new(|| {
    let re = |p: &str| Regex::new(p).expect("built-in mask pattern");
    Patterns {
        ssn: re(SSN),
        ipv4: re(IPV4),
        iban: re(IBAN),
    }
});

pub(crate) fn warm() {
    LazyLock::force(&PATTERNS);
}

/// Detectors this pass serves.
pub(crate) const KINDS: [Kind; 5] = [Kind::Card, Kind::Ssn, Kind::Phone, Kind::Ipv4, Kind::Iban];

/// The fewest digits any wanted detector's value has, IBAN aside (it
/// needs only its two check digits, and has its own cue: capitals), in a
/// text without a `+` and in one with: only a phone number written with
/// its `+` has as few as eight.
pub(crate) fn min_digits(det_of: &[u32; 12]) -> [usize; 2] {
    let want = |k: Kind| det_of[k as usize] != NONE;
    let mut min = [usize::MAX; 2];
    for (k, plain, plus) in [
        (Kind::Ipv4, 4, 4),
        (Kind::Phone, 10, 8),
        (Kind::Ssn, 9, 9),
        (Kind::Card, 13, 13),
    ] {
        if want(k) {
            min = [min[0].min(plain), min[1].min(plus)];
        }
    }
    min
}

/// Per byte: 1 for a digit, and a mask that keeps a stretch's count
/// (digits and separators, `+` included) or clears it (anything else).
static STRETCH: [(usize, usize); 256] = {
    let mut c = [(0, 0); 256];
    let mut b = 0;
    while b < 256 {
        c[b] = match b as u8 {
            b'0'..=b'9' => (1, usize::MAX),
            b' ' | b'-' | b'.' | b'(' | b')' | b'+' => (0, usize::MAX),
            _ => (0, 0),
        };
        b += 1;
    }
    c
};

/// Where the first stretch of `t` made of digits and separators (which
/// holds every run `measure` finds, with the `+` or `(` before it) with
/// at least `min` digits starts: hex ids and hashes, full of digits, have
/// none. Without branches until it is found: in hex, digit or not is a
/// coin toss the predictor loses.
pub(crate) fn first_stretch(t: &[u8], min: usize) -> Option<usize> {
    let (mut n, mut start) = (0, 0);
    for (i, &b) in t.iter().enumerate() {
        let (digit, keep) = STRETCH[usize::from(b)];
        n = (n + digit) & keep;
        start = if keep == 0 { i + 1 } else { start };
        if n >= min {
            return Some(start);
        }
    }
    None
}

/// The end of the stretch from `start`, and its digits.
fn stretch(t: &[u8], start: usize) -> (usize, usize) {
    let mut digits = 0;
    for (i, &b) in t[start..].iter().enumerate() {
        let (digit, keep) = STRETCH[usize::from(b)];
        if keep == 0 {
            return (start + i, digits);
        }
        digits += digit;
    }
    (t.len(), digits)
}

/// The first digit at or after `from`: near ones byte by byte (digits
/// are dense in ids), then 16 bytes at a time across stretches without
/// one, which the compiler turns into one vector compare each.
fn next_digit(t: &[u8], from: usize) -> Option<usize> {
    let near = t.get(from..)?;
    if let Some(p) = near.iter().take(8).position(u8::is_ascii_digit) {
        return Some(from + p);
    }
    let mut i = from + 8;
    while let Some(chunk) = t.get(i..i + 16).and_then(|c| <&[u8; 16]>::try_from(c).ok()) {
        let digits = chunk
            .iter()
            .fold(0u8, |a, &b| a | u8::from(b.wrapping_sub(b'0') < 10));
        if digits != 0 {
            break;
        }
        i += 16;
    }
    t.get(i..)?
        .iter()
        .position(u8::is_ascii_digit)
        .map(|p| i + p)
}

fn is_sep(b: u8) -> bool {
    matches!(b, b' ' | b'-' | b'.' | b'(' | b')')
}

/// One run of digit groups.
struct Run {
    end: usize,
    digits: usize,
    seps: bool,
    dots: usize,
    /// Groups 3-2-4 in a row (SSN), 3-3-4 (North American phone).
    ssn: bool,
    nanp: bool,
    /// How many groups, the lengths of the first `lens.len()` of them, and
    /// the one byte between every two of them (`MIXED` if they differ or
    /// one is two bytes).
    groups: usize,
    lens: [usize; 5],
    sep: u8,
}

const MIXED: u8 = 0xff;

fn measure(t: &[u8], start: usize) -> Run {
    let mut r = Run {
        end: start,
        digits: 0,
        seps: false,
        dots: 0,
        ssn: false,
        nanp: false,
        groups: 0,
        lens: [0; 5],
        sep: 0,
    };
    let (mut g1, mut g2) = (0, 0);
    let mut j = start;
    loop {
        let g = j;
        while j < t.len() && t[j].is_ascii_digit() {
            j += 1;
        }
        let len = j - g;
        r.digits += len;
        r.ssn |= (g1, g2, len) == (3, 2, 4);
        r.nanp |= (g1, g2, len) == (3, 3, 4);
        (g1, g2) = (g2, len);
        if let Some(l) = r.lens.get_mut(r.groups) {
            *l = len;
        }
        r.groups += 1;
        r.end = j;
        let mut k = j;
        while k < t.len() && k - j < 2 && is_sep(t[k]) {
            k += 1;
        }
        if k == j || k == t.len() || !t[k].is_ascii_digit() {
            return r;
        }
        r.sep = match (r.sep, &t[j..k]) {
            (0, &[b]) => b,
            (s, &[b]) if s == b => s,
            _ => MIXED,
        };
        r.seps = true;
        r.dots += t[j..k].iter().filter(|&&c| c == b'.').count();
        j = k;
    }
}

/// Whether the run at `start` is, as a whole, a phone number written the
/// national way: North American `415 555 2671` (area code and exchange
/// not starting with 0 or 1), or a trunk `0` and 10-11 digits in the
/// groupings the UK (`020 7946 0958`, `0161 496 0000`, `07700 900123`),
/// Germany (`030 12345678`) and France (`06 12 34 56 78`, also with dots)
/// print.
fn national(t: &[u8], start: usize, r: &Run) -> bool {
    if r.groups > r.lens.len() {
        return false;
    }
    let lens = &r.lens[..r.groups];
    let nxx = |i: usize| (b'2'..=b'9').contains(&t[i]);
    if r.sep == b' ' && lens == [3, 3, 4] {
        return nxx(start) && nxx(start + 4);
    }
    if t[start] != b'0' || lens[0] < 2 || t[start + 1] == b'0' {
        return false;
    }
    match (r.sep, lens) {
        (b' ' | b'.', [2, 2, 2, 2, 2]) => true,
        (b' ', [a, b]) => {
            (3..=5).contains(a) && (5..=8).contains(b) && (10..=11).contains(&r.digits)
        }
        (b' ', [a, b, c]) => {
            (3..=5).contains(a)
                && (3..=4).contains(b)
                && (3..=4).contains(c)
                && (10..=11).contains(&r.digits)
        }
        _ => false,
    }
}

/// Runs the wanted number-shaped detectors (`det_of[kind]`) over `text`
/// from `from` on, the ones other than IBAN only where `min` digits are in
/// one stretch of digits and separators (`usize::MAX`: IBANs only).
pub(crate) fn scan(text: &str, det_of: &[u32; 12], min: usize, from: usize, out: &mut Vec<Hit>) {
    let det = |k: Kind| det_of[k as usize];
    let t = text.as_bytes();
    let mut i = from;
    while let Some(start) = next_digit(t, i) {
        if det(Kind::Iban) != NONE
            && let Some(end) = iban_at(text, start)
        {
            out.push(Hit {
                start: start - 2,
                end,
                det: det(Kind::Iban),
            });
            i = end;
            continue;
        }
        // Every run starting here lies in this stretch (and an IBAN can
        // only start at one's first digit, after two capitals): with too
        // few digits in it, all of it is passed at once.
        let (stretch_end, digits) = stretch(t, start);
        if digits < min {
            i = stretch_end;
            continue;
        }
        let run = measure(t, start);
        let lead = start > 0 && matches!(t[start - 1], b'+' | b'(');
        let from = if lead { start - 1 } else { start };
        // Right after a number taken here ("+15000007+10000000"), judge the
        // start as it reads once that number is masked (`[PHONE]+1...`):
        // a second pass (the audit's) must find nothing new.
        let after_hit = lead && out.last().is_some_and(|h| h.end == from);
        let mut push = |k: Kind, s: usize, e: usize| {
            out.push(Hit {
                start: s,
                end: e,
                det: det(k),
            })
        };
        if det(Kind::Card) != NONE && run.digits >= 13 {
            card_hits(t, start, &run, &mut push);
        }
        if det(Kind::Ssn) != NONE && run.ssn {
            ssn_hits(text, start, &run, &mut push);
        }
        if det(Kind::Phone) != NONE {
            phone_hits(t, start, from, &run, after_hit, &mut push);
        }
        if det(Kind::Ipv4) != NONE && run.dots >= 3 {
            ipv4_hits(text, start, &run, &mut push);
        }
        i = run.end;
    }
}

/// Cards in the run at `start` (13 digits or more): grouped runs by
/// group, ungrouped ones as one number.
fn card_hits(t: &[u8], start: usize, run: &Run, push: &mut impl FnMut(Kind, usize, usize)) {
    if run.seps {
        if card_may_start(t, start, run.end) {
            cards(t, start, run.end, push);
        }
    } else if let Some(e) = card_end(t, start, run.end) {
        push(Kind::Card, start, e);
    }
}

/// US SSNs (3-2-4 groups) in the run at `start`.
fn ssn_hits(text: &str, start: usize, run: &Run, push: &mut impl FnMut(Kind, usize, usize)) {
    let t = text.as_bytes();
    for m in PATTERNS.ssn.find_iter(&text[start..run.end]) {
        let (s, e) = (start + m.start(), start + m.end());
        if num_start_ok(t, s) && num_end_ok(t, e) && ssn_ok(&t[s..e]) {
            push(Kind::Ssn, s, e);
        }
    }
}

/// Phone numbers in the run at `start` (`from` includes a leading `+` or
/// `(`): international and North American ones by `matchers::phone_at`,
/// national ones as a whole run (see `national`).
fn phone_hits(
    t: &[u8],
    start: usize,
    from: usize,
    run: &Run,
    after_hit: bool,
    push: &mut impl FnMut(Kind, usize, usize),
) {
    // Without 3-3-4 groups only a `+` number at `from` can match,
    // and it is refused for what is before it ("1.4.12+20261234")
    // without asking the regex.
    let plus = t[from] == b'+' && run.digits >= 8 && (after_hit || num_start_ok(t, from));
    if run.nanp || plus {
        let mut at = from;
        while let Some((s, e)) = matchers::phone_at(t, at, run.end) {
            if phone_ok(t, s, e, after_hit && s == from) {
                push(Kind::Phone, s, e);
            }
            at = e;
        }
    }
    if (10..=11).contains(&run.digits)
        && run.sep != MIXED
        && national(t, start, run)
        && num_start_ok(t, start)
        && num_end_ok(t, run.end)
    {
        push(Kind::Phone, start, run.end);
    }
}

/// IPv4 addresses in the run at `start` (three dots or more).
fn ipv4_hits(text: &str, start: usize, run: &Run, push: &mut impl FnMut(Kind, usize, usize)) {
    let t = text.as_bytes();
    for m in PATTERNS.ipv4.find_iter(&text[start..run.end]) {
        let (s, e) = (start + m.start(), start + m.end());
        if num_start_ok(t, s) && num_end_ok(t, e) {
            push(Kind::Ipv4, s, e);
        }
    }
}

/// Whether a card can start in the grouped run `start..end`: every card
/// `cards` takes starts a group with a 2-6 that `card_end` accepts, and
/// has 13 digits from there.
fn card_may_start(t: &[u8], start: usize, end: usize) -> bool {
    let mut left = t[start..end].iter().filter(|b| b.is_ascii_digit()).count();
    let mut s = start;
    while left >= 13 {
        if CARD_LEAD.contains(&t[s]) && num_start_ok(t, s) {
            return true;
        }
        let group = t[s..end].iter().take_while(|b| b.is_ascii_digit()).count();
        left -= group;
        s += group;
        s += t[s..end].iter().take_while(|b| !b.is_ascii_digit()).count();
    }
    false
}

/// Card candidates in a grouped run `start..end`.
fn cards(t: &[u8], start: usize, end: usize, push: &mut impl FnMut(Kind, usize, usize)) {
    let mut pos = start;
    while pos < end
        && let Some((s, e)) = matchers::card_at(t, pos, end)
    {
        match card_end(t, s, e) {
            Some(e) => {
                push(Kind::Card, s, e);
                pos = e;
            }
            // "12 4111 1111 1111 1111": the card may start at the next
            // group, which the failed candidate swallowed.
            None => pos = next_group(t, s, e),
        }
    }
}

/// A number (or `+`/`(`-led phone) starting at `s` does not continue an
/// identifier, a decimal, a dashed id or a signed value.
fn num_start_ok(t: &[u8], s: usize) -> bool {
    s == 0 || !(is_word(t[s - 1]) || matches!(t[s - 1], b'.' | b'-' | b'+'))
}

/// Nor does it go on into a longer number, word, decimal or dashed id.
fn num_end_ok(t: &[u8], e: usize) -> bool {
    match t.get(e) {
        None => true,
        Some(&n) if is_word(n) => false,
        Some(b'-' | b'.') => !t.get(e + 1).is_some_and(u8::is_ascii_digit),
        Some(_) => true,
    }
}
