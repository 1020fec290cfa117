//! Built-in detectors: the literal gate, the token-like detectors (each a
//! regex with a literal the regex engine skips to; email by hand, see
//! `matchers`), and overlap resolution. The number-shaped ones are in
//! `numeric`.
//!
//! The patterns only propose candidates; precision comes from the code
//! around them (the `regex` crate has no look-around, so "not part of a
//! longer word" is checked on the bytes beside the match).

use std::{net::Ipv6Addr, sync::LazyLock};

use aho_corasick::{AhoCorasick, Input, MatchKind};
use regex::Regex;

use super::{
    gate::{Pre, may_hold_literal},
    matchers,
};

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

    /// The shortest value it takes (`a@b.co`, `::1`, `1.1.1.1`, a `+` and
    /// eight digits, ...): shorter texts are not looked at.
    pub(crate) fn min_len(self) -> usize {
        match self {
            Kind::Ipv6 => 3,
            Kind::Email => 6,
            Kind::Ipv4 => 7,
            Kind::Phone => 9,
            Kind::Ssn => 11,
            Kind::Card => 13,
            Kind::Iban | Kind::ApiToken => 15,
            Kind::Jwt => 18,
            Kind::AwsAccessKey => 20,
            Kind::AwsSecretKey => 40,
            Kind::PrivateKey => 27,
        }
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

/// `det_of[kind]` for a detector a profile does not use.
pub(crate) const NONE: u32 = u32::MAX;

struct Builtins {
    aws_access_key: Regex,
    api_token: Regex,
    jwt: Regex,
    private_key: Regex,
    ipv6: Regex,
    /// Spellings of the AWS secret key's name.
    aws_cue: AhoCorasick,
    /// Literal prefixes of the token-like detectors, and which detector
    /// each belongs to.
    literals: AhoCorasick,
    literal_kinds: Vec<u32>,
}

// Patterns are ASCII-only and byte-oriented (`(?-u)`): the DFA stays small
// and fast, and every match starts and ends next to an ASCII byte, so the
// spans are always `str` boundaries.
const AWS_ACCESS_KEY: &str = r"(?-u)\b(?:AKIA|ASIA|AGPA|AIDA|AROA|ANPA|ANVA|AIPA)[A-Z0-9]{16}\b";
const API_TOKEN: &str = r"(?-u)\b(?:gh[pousr]_[A-Za-z0-9]{36}|github_pat_[A-Za-z0-9_]{82}|xox[baprs]-[A-Za-z0-9\-]{10,}|[srp]k_(?:live|test)_[A-Za-z0-9]{16,}|sk-ant-[A-Za-z0-9_\-]{20,}|sk-[A-Za-z0-9_\-]{20,}|AIza[A-Za-z0-9_\-]{35}|glpat-[A-Za-z0-9_\-]{20}|npm_[A-Za-z0-9]{36})";
const JWT: &str = r"(?-u)eyJ[A-Za-z0-9_\-]{5,}\.eyJ[A-Za-z0-9_\-]{5,}\.[A-Za-z0-9_\-]*";
// A block without its END line (a truncated paste) is masked up to the
// end of its body rather than left readable.
const PRIVATE_KEY: &str = r"(?s)-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY-----(?:.*?-----END (?:[A-Z0-9]+ )*PRIVATE KEY-----|[A-Za-z0-9+/=\s\\:,\-]*)";
const IPV6: &str = r"(?-u)[0-9A-Fa-f:]*:[0-9A-Fa-f:]*:(?:[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}|[0-9A-Fa-f:]*)";

/// How the AWS secret key's name is written (env vars, CLI config, SDK
/// and CloudFormation JSON); case-sensitive so the search for them stays
/// a fast literal scan.
pub(crate) const AWS_CUES: &[&str] = &[
    "secret_access_key",
    "SECRET_ACCESS_KEY",
    "Secret_Access_Key",
    "secret-access-key",
    "SECRET-ACCESS-KEY",
    "Secret-Access-Key",
    "SecretAccessKey",
    "secretAccessKey",
    "secretaccesskey",
    "SECRETACCESSKEY",
];

pub(crate) const LITERALS: &[(&str, Kind)] = &[
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
];

/// Detectors the literal gate decides for.
const LITERAL_KINDS: u32 = (1 << Kind::ApiToken as u32)
    | (1 << Kind::AwsAccessKey as u32)
    | (1 << Kind::Jwt as u32)
    | (1 << Kind::PrivateKey as u32)
    | (1 << Kind::AwsSecretKey as u32);

/// The shortest token-like value (`xoxb-` and ten more).
const MIN_TOKEN: usize = 15;

static BUILTINS: LazyLock<Builtins> = LazyLock::new(|| {
    let re = |p: &str| Regex::new(p).expect("built-in mask pattern");
    // Leftmost-first: the only kind the vectorized (Teddy) searcher
    // serves, ten times the speed of the standard automaton on a long
    // text. No literal is a prefix of another, so the matches are the
    // same.
    let ac = |pats: &[&str]| {
        AhoCorasick::builder()
            .match_kind(MatchKind::LeftmostFirst)
            .build(pats)
            .expect("built-in mask literals")
    };
    let mut literals: Vec<(&str, Kind)> = LITERALS.to_vec();
    literals.extend(AWS_CUES.iter().map(|c| (*c, Kind::AwsSecretKey)));
    Builtins {
        aws_access_key: re(AWS_ACCESS_KEY),
        api_token: re(API_TOKEN),
        jwt: re(JWT),
        private_key: re(PRIVATE_KEY),
        ipv6: re(IPV6),
        aws_cue: ac(AWS_CUES),
        literals: ac(&literals.iter().map(|(l, _)| *l).collect::<Vec<_>>()),
        literal_kinds: literals.iter().map(|(_, k)| k.bit()).collect(),
    }
});

/// Forces the one-time regex compilation (at startup, not on the first
/// answer).
pub(crate) fn warm() {
    LazyLock::force(&BUILTINS);
    super::numeric::warm();
}

/// Which of the non-numeric detectors in `wanted` can match `text`, given
/// what [`Pre`] found in it: `@` for email, two colons for IPv6, and for
/// the token-like ones the literal scan, only where the first two bytes of
/// a literal occur. Overlapping literals count: `sk-----BEGIN` holds both
/// `sk-` and `-----BEGIN`, and a scan that resumed after `sk-` would never
/// see the private key.
pub(crate) fn gate(text: &str, pre: &Pre, wanted: u32) -> u32 {
    let mut bits = 0;
    if wanted & Kind::Email.bit() != 0 && pre.at {
        bits |= Kind::Email.bit();
    }
    if wanted & Kind::Ipv6.bit() != 0 && pre.two_colons {
        bits |= Kind::Ipv6.bit();
    }
    let lit = wanted & LITERAL_KINDS;
    if lit != 0 && text.len() >= MIN_TOKEN && pre.literal && may_hold_literal(text) {
        let b = &*BUILTINS;
        let mut found = 0;
        let mut at = 0;
        // Resumed one byte past each match's start, not at its end, so
        // overlapping literals are seen (an overlapping search would give
        // up the vectorized searcher).
        while let Some(m) = b.literals.find(Input::new(text).range(at..)) {
            found |= b.literal_kinds[m.pattern().as_usize()] & lit;
            if found == lit {
                break;
            }
            at = m.start() + 1;
        }
        bits |= found;
    }
    bits
}

pub(crate) fn is_word(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// Runs one token-like detector (not a number-shaped one) over `text`,
/// appending accepted spans.
pub(crate) fn scan(kind: Kind, text: &str, det: u32, out: &mut Vec<Hit>) {
    let b = &*BUILTINS;
    let t = text.as_bytes();
    let mut push = |start, end| out.push(Hit { start, end, det });
    let re = match kind {
        Kind::AwsSecretKey => {
            for cue in b.aws_cue.find_iter(text) {
                if let Some((s, e)) = aws_secret_after(t, cue.end()) {
                    push(s, e);
                }
            }
            return;
        }
        Kind::Email => {
            let mut at = 0;
            while let Some((s, e)) = matchers::email_at(t, at) {
                if email_ok(&t[s..e]) {
                    push(s, e);
                }
                at = e;
            }
            return;
        }
        Kind::ApiToken => &b.api_token,
        Kind::AwsAccessKey => &b.aws_access_key,
        Kind::Jwt => &b.jwt,
        Kind::PrivateKey => &b.private_key,
        Kind::Ipv6 => &b.ipv6,
        Kind::Card | Kind::Ssn | Kind::Phone | Kind::Ipv4 | Kind::Iban => return,
    };
    for m in re.find_iter(text) {
        let (s, e) = (m.start(), m.end());
        let ok = match kind {
            Kind::ApiToken => token_ok(t, s, e),
            Kind::Jwt => s == 0 || !(is_word(t[s - 1]) || t[s - 1] == b'-'),
            Kind::Ipv6 => ipv6_ok(t, s, e, m.as_str()),
            _ => true,
        };
        if ok {
            push(s, e);
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
    // Every one is at most four letters: compared lower-cased, as one word.
    let not_tld = tld.len() <= 4 && {
        let mut w = [0u8; 4];
        w[..tld.len()].copy_from_slice(tld);
        let w = w.map(|c| c.to_ascii_lowercase());
        NOT_TLDS
            .iter()
            .any(|x| x.len() == tld.len() && w[..x.len()] == **x)
    };
    local.len() <= 64
        && !local.starts_with(b".")
        && !not_tld
        && domain
            .split(|&c| c == b'.')
            .all(|l| !l.is_empty() && l[0] != b'-' && l[l.len() - 1] != b'-')
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
