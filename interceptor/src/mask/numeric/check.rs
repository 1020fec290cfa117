//! Whether a run of digits the scan found is a value: card (Luhn, lengths),
//! SSN (reserved areas), phone (grouping), IBAN (country length, mod-97).

use super::{IBAN_MAX, PATTERNS, num_end_ok, num_start_ok};
use crate::mask::detect::is_word;

/// The Luhn check over ASCII digits (card numbers; the bench corpus makes
/// valid ones with it).
pub fn luhn(digits: impl DoubleEndedIterator<Item = u8>) -> bool {
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
pub(super) fn iban_len(cc: &[u8]) -> Option<usize> {
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
        .binary_search_by(|(c, _)| c[..].cmp(cc))
        .ok()
        .map(|i| usize::from(TABLE[i].1))
}

/// The first digits cards have (Visa 4, Mastercard 2 and 5, Amex 3,
/// Discover 6).
pub(super) const CARD_LEAD: std::ops::RangeInclusive<u8> = b'2'..=b'6';

/// Whether an integer has a card's length (13-19 digits) and first digit.
pub(crate) fn card_sized(n: u64) -> bool {
    (1_000_000_000_000..10_000_000_000_000_000_000).contains(&n)
        && CARD_LEAD.contains(&(b'0' + (n / 10u64.pow(n.ilog10())) as u8))
}

/// The card's end in the candidate `s..e`: trailing groups are dropped
/// until one validates ("4111 1111 1111 1111 2026" is a card and a year).
pub(super) fn card_end(t: &[u8], s: usize, e: usize) -> Option<usize> {
    if !num_start_ok(t, s) || !CARD_LEAD.contains(&t[s]) {
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

pub(super) fn card_ok(m: &[u8]) -> bool {
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

pub(super) fn next_group(t: &[u8], s: usize, e: usize) -> usize {
    t[s..e]
        .iter()
        .position(|c| !c.is_ascii_digit())
        .map_or(e, |i| s + i + 1)
}

/// Area not 000, 666 or 9xx; group not 00; serial not 0000. Dashes are
/// required: a bare nine-digit number is as likely an order or zip+4.
pub(super) fn ssn_ok(m: &[u8]) -> bool {
    let (area, group, serial) = (&m[0..3], &m[4..6], &m[7..11]);
    area != b"000" && area != b"666" && area[0] != b'9' && group != b"00" && serial != b"0000"
}

/// `after_hit`: `s` is right after another hit, so its left side will be
/// a replacement, not the digit it is now.
pub(super) fn phone_ok(t: &[u8], s: usize, e: usize, after_hit: bool) -> bool {
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
pub(super) fn iban_at(text: &str, digit: usize) -> Option<usize> {
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
        if !t.get(s + end).is_some_and(|&c| is_word(c)) && iban_ok(&m[..end], want) {
            return Some(s + end);
        }
        // Grouped IBANs followed by more capitals ("... 3000 EUR"): the
        // regex took a group too many.
        end = m[..end].iter().rposition(|&c| c == b' ')?;
    }
}

/// `m` (capitals, digits and single spaces) is `want` characters and
/// passes mod-97, checked without copying it.
pub(super) fn iban_ok(m: &[u8], want: usize) -> bool {
    let mut chars = [0u8; IBAN_MAX];
    let mut n = 0;
    for &c in m.iter().filter(|&&c| c != b' ') {
        if n == want {
            return false;
        }
        chars[n] = c;
        n += 1;
    }
    n == want && mod97(&chars[..n])
}
