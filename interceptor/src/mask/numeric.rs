//! The number-shaped detectors (card, SSN, phone, IPv4, IBAN) in one pass.
//!
//! Tool output is full of numbers (ids, timestamps, prices) and a regex
//! without a literal to look for runs its automaton over all of them, one
//! pass per detector. Here one byte loop measures each run of digit groups
//! (digits joined by at most two of ` -.()`), and only runs whose count
//! and grouping can be a detector's value (13+ digits for a card, 3-2-4
//! for an SSN, 3-3-4 or a leading `+` for a phone, ...) go to that
//! detector's regex and validator, on that run alone.

use std::sync::LazyLock;

use regex::Regex;

use super::detect::{Hit, Kind, NONE, is_word};

struct Patterns {
    card: Regex,
    ssn: Regex,
    phone: Regex,
    ipv4: Regex,
    iban: Regex,
}

// ASCII-only and byte-oriented: spans always fall on `str` boundaries.
const CARD: &str = r"(?-u)[0-9](?:[ \-]?[0-9]){12,18}";
const SSN: &str = r"(?-u)[0-9]{3}-[0-9]{2}-[0-9]{4}";
const PHONE: &str = r"(?-u)\+[1-9](?:[ .\-()]{0,2}[0-9]){7,14}|\([2-9][0-9]{2}\)[ .\-]?[0-9]{3}[ .\-][0-9]{4}|[2-9][0-9]{2}-[0-9]{3}-[0-9]{4}|[2-9][0-9]{2}\.[0-9]{3}\.[0-9]{4}";
const IPV4: &str = r"(?-u)(?:(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])\.){3}(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])";
const IBAN: &str =
    r"(?-u)[A-Z]{2}[0-9]{2}(?:(?: [A-Z0-9]{4}){2,7}(?: [A-Z0-9]{1,3})?|[A-Z0-9]{11,30})";
/// Longest IBAN the pattern takes: country, check digits, seven groups
/// of four and a short one, spaced.
const IBAN_MAX: usize = 4 + 7 * 5 + 4;

static PATTERNS: LazyLock<Patterns> = LazyLock::new(|| {
    let re = |p: &str| Regex::new(p).expect("built-in mask pattern");
    Patterns {
        card: re(CARD),
        ssn: re(SSN),
        phone: re(PHONE),
        ipv4: re(IPV4),
        iban: re(IBAN),
    }
});

pub(crate) fn warm() {
    LazyLock::force(&PATTERNS);
}

/// Detectors this pass serves.
pub(crate) const KINDS: [Kind; 5] = [Kind::Card, Kind::Ssn, Kind::Phone, Kind::Ipv4, Kind::Iban];

/// The fewest digits any wanted detector's value has (an IBAN needs only
/// its two check digits).
pub(crate) fn min_digits(det_of: &[u32; 12]) -> usize {
    [
        (Kind::Iban, 2),
        (Kind::Ipv4, 4),
        (Kind::Phone, 8),
        (Kind::Ssn, 9),
        (Kind::Card, 13),
    ]
    .into_iter()
    .find(|(k, _)| det_of[*k as usize] != NONE)
    .map_or(usize::MAX, |(_, n)| n)
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
}

fn measure(t: &[u8], start: usize) -> Run {
    let mut r = Run {
        end: start,
        digits: 0,
        seps: false,
        dots: 0,
        ssn: false,
        nanp: false,
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
        r.end = j;
        let mut k = j;
        while k < t.len() && k - j < 2 && is_sep(t[k]) {
            k += 1;
        }
        if k == j || k == t.len() || !t[k].is_ascii_digit() {
            return r;
        }
        r.seps = true;
        r.dots += t[j..k].iter().filter(|&&c| c == b'.').count();
        j = k;
    }
}

/// Runs the wanted number-shaped detectors (`det_of[kind]`) over `text`.
pub(crate) fn scan(text: &str, det_of: &[u32; 12], out: &mut Vec<Hit>) {
    let det = |k: Kind| det_of[k as usize];
    let p = &*PATTERNS;
    let t = text.as_bytes();
    let mut i = 0;
    while let Some(off) = t[i..].iter().position(u8::is_ascii_digit) {
        let start = i + off;
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
            if run.seps {
                cards(&p.card, text, start, run.end, &mut push);
            } else if let Some(e) = card_end(t, start, run.end) {
                push(Kind::Card, start, e);
            }
        }
        if det(Kind::Ssn) != NONE && run.ssn {
            for m in p.ssn.find_iter(&text[start..run.end]) {
                let (s, e) = (start + m.start(), start + m.end());
                if num_start_ok(t, s) && num_end_ok(t, e) && ssn_ok(&t[s..e]) {
                    push(Kind::Ssn, s, e);
                }
            }
        }
        if det(Kind::Phone) != NONE && (run.nanp || (t[from] == b'+' && run.digits >= 8)) {
            for m in p.phone.find_iter(&text[from..run.end]) {
                let (s, e) = (from + m.start(), from + m.end());
                if phone_ok(t, s, e, after_hit && s == from) {
                    push(Kind::Phone, s, e);
                }
            }
        }
        if det(Kind::Ipv4) != NONE && run.dots >= 3 {
            for m in p.ipv4.find_iter(&text[start..run.end]) {
                let (s, e) = (start + m.start(), start + m.end());
                if num_start_ok(t, s) && num_end_ok(t, e) {
                    push(Kind::Ipv4, s, e);
                }
            }
        }
        i = run.end;
    }
}

/// Card candidates in a grouped run `start..end`.
fn cards(
    re: &Regex,
    text: &str,
    start: usize,
    end: usize,
    push: &mut impl FnMut(Kind, usize, usize),
) {
    let t = text.as_bytes();
    let hay = &text[..end];
    let mut pos = start;
    while pos < end
        && let Some(m) = re.find_at(hay, pos)
    {
        match card_end(t, m.start(), m.end()) {
            Some(e) => {
                push(Kind::Card, m.start(), e);
                pos = e;
            }
            // "12 4111 1111 1111 1111": the card may start at the next
            // group, which the failed candidate swallowed.
            None => pos = next_group(t, m.start(), m.end()),
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

pub(crate) fn luhn(digits: impl DoubleEndedIterator<Item = u8>) -> bool {
    let mut sum = 0u32;
    let mut n = 0;
    for (i, d) in digits.rev().enumerate() {
        let mut v = u32::from(d - b'0');
        if i % 2 == 1 {
            v *= 2;
            if v > 9 {
                v -= 9;
            }
        }
        sum += v;
        n += 1;
    }
    n >= 2 && sum.is_multiple_of(10)
}

/// ISO 13616 check: the first four characters moved to the end, letters
/// as 10..35, the whole number mod 97 is 1. `chars` are upper-case ASCII
/// alphanumerics.
pub(crate) fn mod97(chars: &[u8]) -> bool {
    if chars.len() < 5 {
        return false;
    }
    let mut r = 0u32;
    for &c in chars[4..].iter().chain(&chars[..4]) {
        r = match c {
            b'0'..=b'9' => (r * 10 + u32::from(c - b'0')) % 97,
            b'A'..=b'Z' => (r * 100 + u32::from(c - b'A') + 10) % 97,
            _ => return false,
        };
    }
    r == 1
}

/// IBAN length per country (SWIFT IBAN registry); an unknown country is
/// not an IBAN, which keeps SKU-like codes out.
fn iban_len(cc: &[u8]) -> Option<usize> {
    #[rustfmt::skip]
    const TABLE: &[(&[u8; 2], u8)] = &[
        (b"AD", 24), (b"AE", 23), (b"AL", 28), (b"AT", 20), (b"AZ", 28), (b"BA", 20),
        (b"BE", 16), (b"BG", 22), (b"BH", 22), (b"BI", 27), (b"BR", 29), (b"BY", 28),
        (b"CH", 21), (b"CR", 22), (b"CY", 28), (b"CZ", 24), (b"DE", 22), (b"DJ", 27),
        (b"DK", 18), (b"DO", 28), (b"EE", 20), (b"EG", 29), (b"ES", 24), (b"FI", 18),
        (b"FK", 18), (b"FO", 18), (b"FR", 27), (b"GB", 22), (b"GE", 22), (b"GI", 23),
        (b"GL", 18), (b"GR", 27), (b"GT", 28), (b"HR", 21), (b"HU", 28), (b"IE", 22),
        (b"IL", 23), (b"IQ", 23), (b"IS", 26), (b"IT", 27), (b"JO", 30), (b"KW", 30),
        (b"KZ", 20), (b"LB", 28), (b"LC", 32), (b"LI", 21), (b"LT", 20), (b"LU", 20),
        (b"LV", 21), (b"LY", 25), (b"MC", 27), (b"MD", 24), (b"ME", 22), (b"MK", 19),
        (b"MN", 20), (b"MR", 27), (b"MT", 31), (b"MU", 30), (b"NI", 28), (b"NL", 18),
        (b"NO", 15), (b"OM", 23), (b"PK", 24), (b"PL", 28), (b"PS", 29), (b"PT", 25),
        (b"QA", 29), (b"RO", 24), (b"RS", 22), (b"RU", 33), (b"SA", 24), (b"SC", 31),
        (b"SD", 18), (b"SE", 24), (b"SI", 19), (b"SK", 24), (b"SM", 27), (b"SO", 23),
        (b"ST", 25), (b"SV", 28), (b"TL", 23), (b"TN", 24), (b"TR", 26), (b"UA", 29),
        (b"VA", 22), (b"VG", 24), (b"XK", 20), (b"YE", 30),
    ];
    TABLE
        .iter()
        .find(|(c, _)| c[..] == *cc)
        .map(|(_, n)| usize::from(*n))
}

/// The card's end in the candidate `s..e`: trailing groups are dropped
/// until one validates ("4111 1111 1111 1111 2026" is a card and a year).
fn card_end(t: &[u8], s: usize, e: usize) -> Option<usize> {
    if !num_start_ok(t, s) || !(b'2'..=b'6').contains(&t[s]) {
        return None;
    }
    let m = &t[s..e];
    let mut end = m.len();
    loop {
        if num_end_ok(t, s + end) && card_ok(&m[..end]) {
            return Some(s + end);
        }
        end = m[..end].iter().rposition(|c| !c.is_ascii_digit())?;
    }
}

fn card_ok(m: &[u8]) -> bool {
    let digits = || m.iter().copied().filter(u8::is_ascii_digit);
    let n = digits().count();
    if !(13..=19).contains(&n) {
        return false;
    }
    if let Some(sep) = m.iter().copied().find(|c| !c.is_ascii_digit()) {
        // One kind of separator, groups as cards print them (4-4-4-4,
        // 4-6-5, ...): "3 4 5 6 7 8 9 1 2 3 4 5 6" is a list, not a card.
        let mut groups = m.split(|c| !c.is_ascii_digit());
        if m.iter().any(|&c| !c.is_ascii_digit() && c != sep)
            || !groups.all(|g| (3..=6).contains(&g.len()))
        {
            return false;
        }
    }
    luhn(digits())
}

fn next_group(t: &[u8], s: usize, e: usize) -> usize {
    t[s..e]
        .iter()
        .position(|c| !c.is_ascii_digit())
        .map_or(e, |i| s + i + 1)
}

/// Area not 000, 666 or 9xx; group not 00; serial not 0000. Dashes are
/// required: a bare nine-digit number is as likely an order or zip+4.
fn ssn_ok(m: &[u8]) -> bool {
    let (area, group, serial) = (&m[0..3], &m[4..6], &m[7..11]);
    area != b"000" && area != b"666" && area[0] != b'9' && group != b"00" && serial != b"0000"
}

/// `after_hit`: `s` is right after another hit, so its left side will be
/// a replacement, not the digit it is now.
fn phone_ok(t: &[u8], s: usize, e: usize, after_hit: bool) -> bool {
    if !(after_hit || num_start_ok(t, s)) || !num_end_ok(t, e) {
        return false;
    }
    let m = &t[s..e];
    if m[0] != b'+' {
        return true;
    }
    let count = |x: u8| m.iter().filter(|&&c| c == x).count();
    let seps = m[1..].iter().filter(|c| !c.is_ascii_digit()).count();
    // "+3.14159265358979" is a signed decimal, not a grouped number.
    let decimal = seps == 1 && count(b'.') == 1;
    !decimal && count(b'(') == count(b')')
}

/// An IBAN whose check digits start at `digit` (the country code is the
/// two bytes before): its end.
fn iban_at(text: &str, digit: usize) -> Option<usize> {
    let t = text.as_bytes();
    if digit < 2
        || !t[digit - 2].is_ascii_uppercase()
        || !t[digit - 1].is_ascii_uppercase()
        || !t.get(digit + 1).is_some_and(u8::is_ascii_digit)
        || (digit > 2 && is_word(t[digit - 3]))
    {
        return None;
    }
    let s = digit - 2;
    let want = iban_len(&t[s..digit])?;
    let hay = &text[..text.floor_char_boundary(s + IBAN_MAX)];
    let m = PATTERNS.iban.find_at(hay, s).filter(|m| m.start() == s)?;
    let m = &t[s..m.end()];
    let mut end = m.len();
    loop {
        let chars: Vec<u8> = m[..end].iter().copied().filter(|&c| c != b' ').collect();
        if chars.len() == want && !t.get(s + end).is_some_and(|&c| is_word(c)) && mod97(&chars) {
            return Some(s + end);
        }
        // Grouped IBANs followed by more capitals ("... 3000 EUR"): the
        // regex took a group too many.
        end = m[..end].iter().rposition(|&c| c == b' ')?;
    }
}
