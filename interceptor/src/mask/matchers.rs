//! What the email, card and phone patterns match, found by hand: the same
//! spans as the regexes beside each (leftmost, then greedy, as the `regex`
//! crate finds them; the tests hold each to its regex on texts built to
//! sit on its edges), without a regex search's fixed cost, which on the
//! short strings of tool output is most of the work.

use super::detect::is_word;

/// The email pattern.
#[cfg(test)]
pub(crate) const EMAIL: &str =
    r"(?-u)[A-Za-z0-9._%+\-]+@[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)*\.[A-Za-z]{2,24}\b";

/// The first [`EMAIL`] match starting at or after `from`: the local part
/// is the run of its characters before an `@`, the domain the most labels
/// after it that still end in a top-level domain of 2-24 letters at a
/// word boundary.
pub(crate) fn email_at(t: &[u8], from: usize) -> Option<(usize, usize)> {
    let local = |c: u8| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'%' | b'+' | b'-');
    let label = |c: u8| c.is_ascii_alphanumeric() || c == b'-';
    let mut at = from;
    loop {
        let a = find_byte(t, at, b'@')?;
        at = a + 1;
        let s = a - t[from..a].iter().rev().take_while(|&&c| local(c)).count();
        if s == a {
            continue;
        }
        // Labels after the `@`: the first must be there; each later one
        // follows a single dot. The match ends in the last label whose
        // leading letters (2-24 of them, then a non-word byte) can be the
        // top-level domain, and has at least one label before it.
        let mut end = None;
        let mut i = a + 1;
        let mut first = true;
        loop {
            let n = t[i..].iter().take_while(|&&c| label(c)).count();
            if n == 0 {
                break;
            }
            if !first {
                let letters = t[i..i + n]
                    .iter()
                    .take_while(|c| c.is_ascii_alphabetic())
                    .count();
                let e = i + letters;
                if (2..=24).contains(&letters) && !t.get(e).is_some_and(|&c| is_word(c)) {
                    end = Some(e);
                }
            }
            first = false;
            i += n;
            if t.get(i) != Some(&b'.') {
                break;
            }
            i += 1;
        }
        if let Some(e) = end {
            return Some((s, e));
        }
    }
}

/// The first `b` at or after `from`, 16 bytes at a time (one vector
/// compare each) across a long text without one.
fn find_byte(t: &[u8], from: usize, b: u8) -> Option<usize> {
    let mut i = from;
    while let Some(chunk) = t.get(i..i + 16).and_then(|c| <&[u8; 16]>::try_from(c).ok()) {
        if chunk.iter().fold(false, |a, &c| a | (c == b)) {
            break;
        }
        i += 16;
    }
    t.get(i..)?.iter().position(|&c| c == b).map(|p| i + p)
}

/// The card pattern.
#[cfg(test)]
pub(crate) const CARD: &str = r"(?-u)[0-9](?:[ \-]?[0-9]){12,18}";

/// The first [`CARD`] match in `t[..end]` starting at or after `from`:
/// from the first digit, up to 19 digits with single spaces or dashes
/// between; with fewer than 13 no start before the break can do better,
/// so the search goes on after it.
pub(crate) fn card_at(t: &[u8], from: usize, end: usize) -> Option<(usize, usize)> {
    let digit = |j: usize| j < end && t[j].is_ascii_digit();
    let mut p = from;
    loop {
        p += t.get(p..end)?.iter().position(u8::is_ascii_digit)?;
        let (mut n, mut j) = (1, p + 1);
        while n < 19 {
            if digit(j) {
                j += 1;
            } else if j < end && matches!(t[j], b' ' | b'-') && digit(j + 1) {
                j += 2;
            } else {
                break;
            }
            n += 1;
        }
        if n >= 13 {
            return Some((p, j));
        }
        p = j;
    }
}

/// The phone pattern: `+` and 8-15 digits with up to two separators
/// between any two, or a North American number written `(415) 555-2671`,
/// `415-555-2671` or `415.555.2671`.
#[cfg(test)]
pub(crate) const PHONE: &str = r"(?-u)\+[1-9](?:[ .\-()]{0,2}[0-9]){7,14}|\([2-9][0-9]{2}\)[ .\-]?[0-9]{3}[ .\-][0-9]{4}|[2-9][0-9]{2}-[0-9]{3}-[0-9]{4}|[2-9][0-9]{2}\.[0-9]{3}\.[0-9]{4}";

/// The first [`PHONE`] match in `t[..end]` starting at or after `from`.
pub(crate) fn phone_at(t: &[u8], from: usize, end: usize) -> Option<(usize, usize)> {
    let t = &t[..end];
    (from..t.len()).find_map(|s| phone_from(t, s).map(|e| (s, e)))
}

/// The end of a [`PHONE`] match starting at `s`: only one alternative can
/// start with a given byte (`+`, `(`, or a digit and then `-` or `.`), and
/// each is matched without backtracking: a separator run is taken whole
/// (at most two) when a digit follows it, and nothing else can follow.
fn phone_from(t: &[u8], s: usize) -> Option<usize> {
    let digit = |j: usize| t.get(j).is_some_and(u8::is_ascii_digit);
    let nxx = |j: usize| t.get(j).is_some_and(|c| (b'2'..=b'9').contains(c));
    let digits = |j: usize, n: usize| (j..j + n).all(digit);
    let at = |j: usize, set: &[u8]| t.get(j).is_some_and(|c| set.contains(c));
    match t[s] {
        b'+' if t.get(s + 1).is_some_and(|c| (b'1'..=b'9').contains(c)) => {
            let (mut n, mut j) = (0, s + 2);
            while n < 14 {
                let seps = t[j..].iter().take_while(|c| b" .-()".contains(c)).count();
                if seps > 2 || !digit(j + seps) {
                    break;
                }
                j += seps + 1;
                n += 1;
            }
            (n >= 7).then_some(j)
        }
        b'(' if nxx(s + 1) && digits(s + 2, 2) && at(s + 4, b")") => {
            let j = s + 5 + usize::from(at(s + 5, b" .-"));
            (digits(j, 3) && at(j + 3, b" .-") && digits(j + 4, 4)).then_some(j + 8)
        }
        _ if nxx(s) && digits(s + 1, 2) => {
            let sep = *t.get(s + 3)?;
            (matches!(sep, b'-' | b'.')
                && digits(s + 4, 3)
                && t.get(s + 7) == Some(&sep)
                && digits(s + 8, 4))
            .then_some(s + 12)
        }
        _ => None,
    }
}
