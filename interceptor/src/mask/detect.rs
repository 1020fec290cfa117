//! Built-in detectors: a cheap gate, candidate regexes, then boundary
//! checks and validators on each candidate.
//!
//! The regexes only propose candidates; precision comes from the code
//! around them (the `regex` crate has no look-around, so "not part of a
//! longer number" is checked on the bytes beside the match).

use std::{net::Ipv6Addr, sync::LazyLock};

use aho_corasick::{AhoCorasick, AhoCorasickBuilder};
use regex::Regex;

/// Built-in detectors, in tie-break order (earlier wins between two
/// candidates with the same span).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    PrivateKey,
    Jwt,
    AwsSecretKey,
    ApiToken,
    AwsAccessKey,
    Iban,
    Email,
    Card,
    Ssn,
    Phone,
    Ipv6,
    Ipv4,
}

impl Kind {
    pub(crate) const ALL: [Kind; 12] = [
        Kind::PrivateKey,
        Kind::Jwt,
        Kind::AwsSecretKey,
        Kind::ApiToken,
        Kind::AwsAccessKey,
        Kind::Iban,
        Kind::Email,
        Kind::Card,
        Kind::Ssn,
        Kind::Phone,
        Kind::Ipv6,
        Kind::Ipv4,
    ];

    /// The built-in `standard` profile's detectors (IPs are opt-in: they
    /// are everywhere in tool output and rarely personal).
    pub(crate) const STANDARD: [Kind; 10] = [
        Kind::Email,
        Kind::Phone,
        Kind::Card,
        Kind::Ssn,
        Kind::Iban,
        Kind::AwsAccessKey,
        Kind::AwsSecretKey,
        Kind::ApiToken,
        Kind::Jwt,
        Kind::PrivateKey,
    ];

    pub(crate) fn name(self) -> &'static str {
        match self {
            Kind::PrivateKey => "private_key",
            Kind::Jwt => "jwt",
            Kind::AwsSecretKey => "aws_secret_key",
            Kind::ApiToken => "api_token",
            Kind::AwsAccessKey => "aws_access_key",
            Kind::Iban => "iban",
            Kind::Email => "email",
            Kind::Card => "card",
            Kind::Ssn => "ssn",
            Kind::Phone => "phone",
            Kind::Ipv6 => "ipv6",
            Kind::Ipv4 => "ipv4",
        }
    }

    pub(crate) fn from_name(name: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.name() == name)
    }

    pub(crate) fn bit(self) -> u32 {
        1 << self as u32
    }

    /// Whole blocks whose insides look like other things (a PEM body has
    /// base64 runs, a JWT payload can spell anything): they are chosen
    /// before any other candidate.
    pub(crate) fn first(self) -> bool {
        matches!(self, Kind::PrivateKey | Kind::Jwt)
    }
}

/// One accepted candidate: a byte span of the text and the index of its
/// detector in the profile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Hit {
    pub start: usize,
    pub end: usize,
    pub det: u32,
}

struct Builtins {
    email: Regex,
    phone: Regex,
    card: Regex,
    ssn: Regex,
    iban: Regex,
    aws_access_key: Regex,
    api_token: Regex,
    jwt: Regex,
    private_key: Regex,
    ipv4: Regex,
    ipv6: Regex,
    /// Case-insensitive cues for the AWS secret key.
    aws_cue: AhoCorasick,
    /// Literal prefixes of the token-like detectors, and which detector
    /// each belongs to.
    literals: AhoCorasick,
    literal_kinds: Vec<u32>,
}

// Patterns are ASCII-only and byte-oriented (`(?-u)`): the DFA stays small
// and fast, and every match starts and ends next to an ASCII byte, so the
// spans are always `str` boundaries.
const EMAIL: &str =
    r"(?-u)[A-Za-z0-9._%+\-]+@[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)*\.[A-Za-z]{2,24}\b";
const PHONE: &str = r"(?-u)\+[1-9](?:[ .\-()]{0,2}[0-9]){7,14}|\([2-9][0-9]{2}\)[ .\-]?[0-9]{3}[ .\-][0-9]{4}|[2-9][0-9]{2}-[0-9]{3}-[0-9]{4}|[2-9][0-9]{2}\.[0-9]{3}\.[0-9]{4}";
const CARD: &str = r"(?-u)[0-9](?:[ \-]?[0-9]){12,18}";
const SSN: &str = r"(?-u)[0-9]{3}-[0-9]{2}-[0-9]{4}";
const IBAN: &str =
    r"(?-u)\b[A-Z]{2}[0-9]{2}(?:(?: [A-Z0-9]{4}){2,7}(?: [A-Z0-9]{1,3})?|[A-Z0-9]{11,30})\b";
const AWS_ACCESS_KEY: &str = r"(?-u)\b(?:AKIA|ASIA|AGPA|AIDA|AROA|ANPA|ANVA|AIPA)[A-Z0-9]{16}\b";
const API_TOKEN: &str = r"(?-u)\b(?:gh[pousr]_[A-Za-z0-9]{36}|github_pat_[A-Za-z0-9_]{82}|xox[baprs]-[A-Za-z0-9\-]{10,}|[srp]k_(?:live|test)_[A-Za-z0-9]{16,}|sk-ant-[A-Za-z0-9_\-]{20,}|sk-[A-Za-z0-9_\-]{20,}|AIza[A-Za-z0-9_\-]{35}|glpat-[A-Za-z0-9_\-]{20}|npm_[A-Za-z0-9]{36})";
const JWT: &str = r"(?-u)eyJ[A-Za-z0-9_\-]{5,}\.eyJ[A-Za-z0-9_\-]{5,}\.[A-Za-z0-9_\-]*";
// A block without its END line (a truncated paste) is masked up to the
// end of its body rather than left readable.
const PRIVATE_KEY: &str = r"(?s)-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY-----(?:.*?-----END (?:[A-Z0-9]+ )*PRIVATE KEY-----|[A-Za-z0-9+/=\s\\:,\-]*)";
const IPV4: &str = r"(?-u)\b(?:(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])\.){3}(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])\b";
const IPV6: &str = r"(?-u)[0-9A-Fa-f:]*:[0-9A-Fa-f:]*:(?:[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}|[0-9A-Fa-f:]*)";

const LITERALS: &[(&str, Kind)] = &[
    ("ghp_", Kind::ApiToken),
    ("gho_", Kind::ApiToken),
    ("ghu_", Kind::ApiToken),
    ("ghs_", Kind::ApiToken),
    ("ghr_", Kind::ApiToken),
    ("github_pat_", Kind::ApiToken),
    ("xoxb-", Kind::ApiToken),
    ("xoxa-", Kind::ApiToken),
    ("xoxp-", Kind::ApiToken),
    ("xoxr-", Kind::ApiToken),
    ("xoxs-", Kind::ApiToken),
    ("k_live_", Kind::ApiToken),
    ("k_test_", Kind::ApiToken),
    ("sk-", Kind::ApiToken),
    ("AIza", Kind::ApiToken),
    ("glpat-", Kind::ApiToken),
    ("npm_", Kind::ApiToken),
    ("AKIA", Kind::AwsAccessKey),
    ("ASIA", Kind::AwsAccessKey),
    ("AGPA", Kind::AwsAccessKey),
    ("AIDA", Kind::AwsAccessKey),
    ("AROA", Kind::AwsAccessKey),
    ("ANPA", Kind::AwsAccessKey),
    ("ANVA", Kind::AwsAccessKey),
    ("AIPA", Kind::AwsAccessKey),
    ("eyJ", Kind::Jwt),
    ("-----BEGIN", Kind::PrivateKey),
    ("secret_access_key", Kind::AwsSecretKey),
    ("secretaccesskey", Kind::AwsSecretKey),
    ("secret-access-key", Kind::AwsSecretKey),
];

/// Detectors the literal gate decides for.
pub(crate) const LITERAL_KINDS: u32 = (1 << Kind::ApiToken as u32)
    | (1 << Kind::AwsAccessKey as u32)
    | (1 << Kind::Jwt as u32)
    | (1 << Kind::PrivateKey as u32)
    | (1 << Kind::AwsSecretKey as u32);

static BUILTINS: LazyLock<Builtins> = LazyLock::new(|| {
    let re = |p: &str| Regex::new(p).expect("built-in mask pattern");
    let ci = |pats: &[&str]| {
        AhoCorasickBuilder::new()
            .ascii_case_insensitive(true)
            .build(pats)
            .expect("built-in mask literals")
    };
    Builtins {
        email: re(EMAIL),
        phone: re(PHONE),
        card: re(CARD),
        ssn: re(SSN),
        iban: re(IBAN),
        aws_access_key: re(AWS_ACCESS_KEY),
        api_token: re(API_TOKEN),
        jwt: re(JWT),
        private_key: re(PRIVATE_KEY),
        ipv4: re(IPV4),
        ipv6: re(IPV6),
        aws_cue: ci(&["secret_access_key", "secretaccesskey", "secret-access-key"]),
        // Case-insensitive on purpose: one automaton for all of them; a
        // false gate hit only costs one regex run.
        literals: ci(&LITERALS.iter().map(|(l, _)| *l).collect::<Vec<_>>()),
        literal_kinds: LITERALS.iter().map(|(_, k)| k.bit()).collect(),
    }
});

/// Forces the one-time regex compilation (at startup, not on the first
/// answer).
pub(crate) fn warm() {
    LazyLock::force(&BUILTINS);
}

const DIGIT: u8 = 1;
/// Separators a number may be grouped with.
const SEP: u8 = 2;
const UPPER: u8 = 4;
const AT: u8 = 8;
const PLUS: u8 = 16;
const DOT: u8 = 32;
const COLON: u8 = 64;

static CLASS: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        t[b] = if c.is_ascii_digit() {
            DIGIT
        } else if c.is_ascii_uppercase() {
            UPPER
        } else {
            match c {
                b' ' | b'-' | b'(' | b')' | b'/' => SEP,
                b'.' => SEP | DOT,
                b'@' => AT,
                b'+' => PLUS,
                b':' => COLON,
                _ => 0,
            }
        };
        b += 1;
    }
    t
};

/// Which detectors in `wanted` can possibly match `text`: one pass over
/// the bytes (digit runs, `@`, `+`, IBAN-like starts) plus one literal
/// scan, so most strings are answered without any regex.
pub(crate) fn gate(text: &str, wanted: u32) -> u32 {
    let mut bits = 0u32;
    let (mut run, mut max_run, mut seps) = (0u32, 0u32, 0u32);
    let (mut upper, mut iban_digits, mut colons) = (0u32, 0u32, 0u32);
    let mut seen = 0u8;
    let mut iban = false;
    for &b in text.as_bytes() {
        let c = CLASS[b as usize];
        seen |= c;
        if c & DIGIT != 0 {
            run += 1;
            seps = 0;
            if iban_digits > 0 || upper >= 2 {
                iban_digits += 1;
                iban |= iban_digits >= 2;
            }
            upper = 0;
            continue;
        }
        iban_digits = 0;
        upper = if c & UPPER != 0 { upper + 1 } else { 0 };
        colons += u32::from(c & COLON != 0);
        if c & SEP != 0 && seps < 2 {
            seps += 1;
        } else {
            max_run = max_run.max(run);
            run = 0;
            seps = 0;
        }
    }
    max_run = max_run.max(run);
    let mut set = |k: Kind, on: bool| {
        if on {
            bits |= k.bit();
        }
    };
    set(Kind::Email, seen & AT != 0);
    set(Kind::Card, max_run >= 13);
    set(Kind::Ssn, max_run >= 9);
    set(
        Kind::Phone,
        max_run >= 10 || (seen & PLUS != 0 && max_run >= 8),
    );
    set(Kind::Iban, iban);
    set(Kind::Ipv4, seen & DOT != 0 && max_run >= 4);
    set(Kind::Ipv6, colons >= 2);
    let lit = wanted & LITERAL_KINDS;
    if lit != 0 {
        let b = &*BUILTINS;
        let mut found = 0;
        for m in b.literals.find_overlapping_iter(text) {
            found |= b.literal_kinds[m.pattern().as_usize()] & lit;
            if found == lit {
                break;
            }
        }
        bits |= found;
    }
    bits & wanted
}

fn is_word(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
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

/// Runs one built-in detector over `text`, appending accepted spans.
pub(crate) fn scan(kind: Kind, text: &str, det: u32, out: &mut Vec<Hit>) {
    let b = &*BUILTINS;
    let t = text.as_bytes();
    let mut push = |start, end| out.push(Hit { start, end, det });
    match kind {
        Kind::Email => {
            for m in b.email.find_iter(text) {
                if email_ok(&t[m.start()..m.end()]) {
                    push(m.start(), m.end());
                }
            }
        }
        Kind::Phone => {
            for m in b.phone.find_iter(text) {
                if phone_ok(t, m.start(), m.end()) {
                    push(m.start(), m.end());
                }
            }
        }
        Kind::Card => {
            let mut pos = 0;
            while let Some(m) = b.card.find_at(text, pos) {
                match card_end(t, m.start(), m.end()) {
                    Some(end) => {
                        push(m.start(), end);
                        pos = end;
                    }
                    // "12 4111 1111 1111 1111": the card may start at the
                    // next group, which the failed candidate swallowed.
                    None => pos = next_group(t, m.start(), m.end()),
                }
            }
        }
        Kind::Ssn => {
            for m in b.ssn.find_iter(text) {
                let (s, e) = (m.start(), m.end());
                if num_start_ok(t, s) && num_end_ok(t, e) && ssn_ok(&t[s..e]) {
                    push(s, e);
                }
            }
        }
        Kind::Iban => {
            for m in b.iban.find_iter(text) {
                if let Some(end) = iban_end(t, m.start(), m.end()) {
                    push(m.start(), end);
                }
            }
        }
        Kind::AwsAccessKey => {
            for m in b.aws_access_key.find_iter(text) {
                push(m.start(), m.end());
            }
        }
        Kind::AwsSecretKey => {
            for cue in b.aws_cue.find_iter(text) {
                if let Some((s, e)) = aws_secret_after(t, cue.end()) {
                    push(s, e);
                }
            }
        }
        Kind::ApiToken => {
            for m in b.api_token.find_iter(text) {
                if token_ok(t, m.start(), m.end()) {
                    push(m.start(), m.end());
                }
            }
        }
        Kind::Jwt => {
            for m in b.jwt.find_iter(text) {
                let s = m.start();
                if s == 0 || !(is_word(t[s - 1]) || t[s - 1] == b'-') {
                    push(s, m.end());
                }
            }
        }
        Kind::PrivateKey => {
            for m in b.private_key.find_iter(text) {
                push(m.start(), m.end());
            }
        }
        Kind::Ipv4 => {
            for m in b.ipv4.find_iter(text) {
                if num_start_ok(t, m.start()) && num_end_ok(t, m.end()) {
                    push(m.start(), m.end());
                }
            }
        }
        Kind::Ipv6 => {
            for m in b.ipv6.find_iter(text) {
                if ipv6_ok(t, m.start(), m.end(), m.as_str()) {
                    push(m.start(), m.end());
                }
            }
        }
    }
}

/// File names like `icon@2x.png` and package pins look like addresses.
fn email_ok(m: &[u8]) -> bool {
    #[rustfmt::skip]
    const NOT_TLDS: &[&[u8]] = &[
        b"png", b"jpg", b"jpeg", b"gif", b"svg", b"webp", b"ico", b"bmp", b"tif", b"tiff",
        b"css", b"js", b"mjs", b"ts", b"json", b"yaml", b"yml", b"toml", b"txt", b"md",
        b"html", b"htm", b"pdf", b"lock", b"map", b"wasm",
    ];
    let Some(at) = m.iter().position(|&c| c == b'@') else {
        return false;
    };
    let (local, domain) = (&m[..at], &m[at + 1..]);
    let tld = domain.rsplit(|&c| c == b'.').next().unwrap_or_default();
    local.len() <= 64
        && !local.starts_with(b".")
        && !NOT_TLDS.iter().any(|x| tld.eq_ignore_ascii_case(x))
        && domain
            .split(|&c| c == b'.')
            .all(|l| !l.is_empty() && l[0] != b'-' && l[l.len() - 1] != b'-')
}

fn phone_ok(t: &[u8], s: usize, e: usize) -> bool {
    if !num_start_ok(t, s) || !num_end_ok(t, e) {
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

/// The end of the longest valid card number in the candidate `s..e`
/// (trailing groups are dropped until one validates).
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

fn iban_end(t: &[u8], s: usize, e: usize) -> Option<usize> {
    let m = &t[s..e];
    let want = iban_len(&m[..2])?;
    let mut end = m.len();
    loop {
        let chars: Vec<u8> = m[..end].iter().copied().filter(|&c| c != b' ').collect();
        if chars.len() == want && mod97(&chars) {
            return Some(s + end);
        }
        // Grouped IBANs followed by more capitals ("... 3000 EUR"): the
        // regex took a group too many.
        end = m[..end].iter().rposition(|&c| c == b' ')?;
    }
}

/// The 40-character key after a cue: the first base64 run starting within
/// 30 bytes of the cue that is exactly 40 long.
fn aws_secret_after(t: &[u8], cue_end: usize) -> Option<(usize, usize)> {
    let b64 = |c: u8| c.is_ascii_alphanumeric() || c == b'/' || c == b'+';
    let mut i = cue_end;
    let limit = (cue_end + 30).min(t.len());
    while i < limit {
        if !b64(t[i]) {
            i += 1;
            continue;
        }
        let start = i;
        // Bounded: a run past 41 bytes is no key, and cues repeated inside
        // one long run must not make this quadratic.
        while i < t.len() && b64(t[i]) && i - start <= 40 {
            i += 1;
        }
        if i - start == 40 && t.get(i) != Some(&b'=') {
            return Some((start, i));
        }
    }
    None
}

fn token_ok(t: &[u8], s: usize, e: usize) -> bool {
    if t.get(e).is_some_and(u8::is_ascii_alphanumeric) {
        return false;
    }
    let m = &t[s..e];
    if m.starts_with(b"sk-") && !m.starts_with(b"sk-ant-") {
        // Kebab-case names ("sk-learn-compatible-estimator") are not
        // keys; generated keys mix cases and digits.
        let body = &m[3..];
        return body.iter().any(u8::is_ascii_digit)
            && body.iter().any(u8::is_ascii_uppercase)
            && body.iter().any(u8::is_ascii_lowercase);
    }
    true
}

fn ipv6_ok(t: &[u8], s: usize, e: usize, m: &str) -> bool {
    let edge = |c: u8| is_word(c) || c == b':' || c == b'.';
    (s == 0 || !edge(t[s - 1]))
        && t.get(e).is_none_or(|&c| !edge(c))
        && m.bytes().any(|c| c.is_ascii_digit())
        && m.parse::<Ipv6Addr>().is_ok()
}

/// Keeps the earliest, then longest, of overlapping hits, after first
/// placing private keys and JWTs; returns them sorted by start.
pub(crate) fn resolve(hits: &mut Vec<Hit>, first: impl Fn(u32) -> bool) {
    if hits.len() < 2 {
        return;
    }
    hits.sort_unstable_by_key(|h| (!first(h.det), h.start, std::cmp::Reverse(h.end), h.det));
    let split = hits.partition_point(|h| first(h.det));
    let mut kept: Vec<Hit> = Vec::with_capacity(hits.len());
    let mut last_end = 0;
    for h in &hits[..split] {
        if h.start >= last_end {
            kept.push(*h);
            last_end = h.end;
        }
    }
    let n_first = kept.len();
    last_end = 0;
    for h in &hits[split..] {
        if h.start < last_end {
            continue;
        }
        let i = kept[..n_first].partition_point(|k| k.end <= h.start);
        if i < n_first && kept[i].start < h.end {
            continue;
        }
        kept.push(*h);
        last_end = h.end;
    }
    kept.sort_unstable_by_key(|h| h.start);
    *hits = kept;
}
