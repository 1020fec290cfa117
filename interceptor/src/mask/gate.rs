//! The gate: what one cheap look at a text says about which detectors
//! could match it at all. Most strings in tool output (keys, names, ids,
//! dates, statuses) are answered here, without a regex, an automaton or
//! an allocation.
//!
//! [`Pre`] counts digits, capitals, `@`, `+`, colons and the bytes every
//! token literal has one of, in one pass the compiler vectorizes. Whether a token literal (`ghp_`, `AKIA`, `eyJ`, ...) may
//! occur is asked only of texts long enough to hold a token: a short one
//! is searched for the first two bytes of every literal (one bit table
//! lookup per byte) before the Aho-Corasick scan is paid for; a long one
//! goes to that scan, as fast as the byte loop there.

use super::detect::{AWS_CUES, LITERALS};

/// Up to this length a text is searched for literal pairs before the
/// literal scan runs, and for a stretch of digits before the numeric one;
/// past it the scans alone are faster.
pub(crate) const SHORT: usize = 256;

/// The byte pairs that start a token literal or an AWS cue, as two
/// tables: `FIRST[a] & SECOND[b]` is non-zero exactly when `ab` is one.
/// Each distinct first byte has a bit; `SECOND[b]` holds the bits of the
/// first bytes that `b` follows in some literal.
static PAIRS: ([u16; 256], [u16; 256]) = {
    const fn add(first: &mut [u16; 256], second: &mut [u16; 256], lit: &str) {
        let p = lit.as_bytes();
        let (a, b) = (p[0] as usize, p[1] as usize);
        if first[a] == 0 {
            let mut used = 0u16;
            let mut i = 0;
            while i < 256 {
                used |= first[i];
                i += 1;
            }
            // More than 16 distinct first bytes would need a wider type.
            assert!(used != u16::MAX, "too many literal first bytes");
            first[a] = (used + 1) & !used;
        }
        second[b] |= first[a];
    }
    let (mut first, mut second) = ([0u16; 256], [0u16; 256]);
    let mut i = 0;
    while i < LITERALS.len() {
        add(&mut first, &mut second, LITERALS[i].0);
        i += 1;
    }
    i = 0;
    while i < AWS_CUES.len() {
        add(&mut first, &mut second, AWS_CUES[i]);
        i += 1;
    }
    (first, second)
};

/// What a text holds, as far as the detectors care.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Pre {
    pub digits: usize,
    pub upper: usize,
    /// Capitals, `_`, `-` or `y`: every token literal and AWS cue has
    /// one (`eyJ`, `secretaccesskey`), lower-case hex has none.
    pub literal: bool,
    pub plus: bool,
    pub at: bool,
    pub two_colons: bool,
}

impl Pre {
    pub(crate) fn of(text: &str) -> Pre {
        let t = text.as_bytes();
        // A long text goes to the literal scan whatever it holds.
        if t.len() > SHORT {
            Self::count::<false>(t)
        } else {
            Self::count::<true>(t)
        }
    }

    /// Counted in blocks small enough for byte counters, which become
    /// wide vector adds.
    fn count<const LITERAL: bool>(t: &[u8]) -> Pre {
        let (mut digits, mut upper, mut colons) = (0usize, 0usize, 0usize);
        let (mut at, mut plus, mut literal) = (false, false, !LITERAL);
        for c in t.chunks(255) {
            let (mut d, mut u, mut k) = (0u8, 0u8, 0u8);
            let (mut a, mut p, mut l) = (0u8, 0u8, 0u8);
            for &b in c {
                d += u8::from(b.wrapping_sub(b'0') < 10);
                u += u8::from(b.wrapping_sub(b'A') < 26);
                k += u8::from(b == b':');
                a |= u8::from(b == b'@');
                p |= u8::from(b == b'+');
                if LITERAL {
                    l |= u8::from(b == b'_' || b == b'-' || b == b'y');
                }
            }
            digits += usize::from(d);
            upper += usize::from(u);
            colons += usize::from(k);
            at |= a != 0;
            plus |= p != 0;
            literal |= l != 0;
        }
        Pre {
            digits,
            upper,
            literal: literal || upper > 0,
            plus,
            at,
            two_colons: colons >= 2,
        }
    }
}

/// Whether a token literal may occur in `text`: for a short text, whether
/// the first two bytes of one do.
pub(crate) fn may_hold_literal(text: &str) -> bool {
    let t = text.as_bytes();
    if t.len() > SHORT {
        return true;
    }
    let (first, second) = &PAIRS;
    let mut found = 0u16;
    for w in t.windows(2) {
        found |= first[usize::from(w[0])] & second[usize::from(w[1])];
    }
    found != 0
}
