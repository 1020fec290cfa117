//! A deterministic tool-result corpus: customer records as an MCP server
//! would return them, about 5-10% of the bytes sensitive, the rest the
//! ids, timestamps, versions and prices that must pass unchanged. For
//! throughput measurement (`mask_rate`); it lives here so the agent binary
//! does not carry it.

use std::fmt::Write;

/// Tool-result JSON text of about `bytes` bytes (never much more than one
/// record past it), the same for the same seed.
pub fn corpus(seed: u64, bytes: usize) -> String {
    generate(seed, bytes).0
}

/// The corpus and every sensitive value in it, as (detector, value).
fn generate(seed: u64, bytes: usize) -> (String, Vec<(&'static str, String)>) {
    let mut g = Gen {
        state: seed ^ 0x9e37_79b9_7f4a_7c15,
        secrets: Vec::new(),
    };
    let mut out = String::with_capacity(bytes + 2048);
    out.push_str("{\"customers\":[");
    let mut n = 0u64;
    while out.len() < bytes {
        if n > 0 {
            out.push(',');
        }
        g.record(&mut out, n);
        n += 1;
    }
    out.push_str("]}");
    (out, g.secrets)
}

const FIRST: &[&str] = &[
    "alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy", "mallory",
    "niaj", "olivia", "peggy", "rupert", "sybil", "trent", "victor", "walter", "yasmin",
];
const LAST: &[&str] = &[
    "martin", "smith", "garcia", "mueller", "rossi", "dubois", "tanaka", "kowalski", "silva",
    "nguyen", "okafor", "jensen", "novak", "haddad", "murphy",
];
const DOMAINS: &[&str] = &[
    "example.com",
    "mail.example.org",
    "corp.example.net",
    "customers.example.co.uk",
];
const STREETS: &[&str] = &[
    "Oak Street",
    "Main St",
    "Rue de la Paix",
    "Hauptstrasse",
    "Elm Ave",
];
const CITIES: &[&str] = &[
    "Springfield",
    "Paris",
    "Berlin",
    "Lisbon",
    "Austin",
    "Osaka",
];
const STATUS: &[&str] = &["pending", "paid", "shipped", "delivered", "refunded"];
const ALNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

struct Gen {
    state: u64,
    secrets: Vec<(&'static str, String)>,
}

impl Gen {
    /// splitmix64: tiny, fast, deterministic; no crate for a corpus.
    fn next(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn pick<'a>(&mut self, xs: &[&'a str]) -> &'a str {
        xs[self.below(xs.len() as u64) as usize]
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    fn digits(&mut self, n: usize) -> String {
        (0..n)
            .map(|_| char::from(b'0' + self.below(10) as u8))
            .collect()
    }

    fn alnum(&mut self, n: usize) -> String {
        (0..n)
            .map(|_| char::from(ALNUM[self.below(ALNUM.len() as u64) as usize]))
            .collect()
    }

    fn hex(&mut self, n: usize) -> String {
        (0..n)
            .map(|_| char::from(b"0123456789abcdef"[self.below(16) as usize]))
            .collect()
    }

    fn uuid(&mut self) -> String {
        let h = self.hex(32);
        format!(
            "{}-{}-4{}-a{}-{}",
            &h[..8],
            &h[8..12],
            &h[13..16],
            &h[17..20],
            &h[20..]
        )
    }

    fn secret(&mut self, kind: &'static str, value: String) -> String {
        self.secrets.push((kind, value.clone()));
        value
    }

    fn email(&mut self, first: &str, last: &str) -> String {
        let v = format!("{first}.{last}{}@{}", self.below(100), self.pick(DOMAINS));
        self.secret("email", v)
    }

    fn phone(&mut self) -> String {
        let (a, x, s) = (200 + self.below(790), 200 + self.below(800), self.digits(4));
        let v = match self.below(5) {
            0 => format!("+1 {a}-{x}-{s}"),
            1 => format!("({a}) {x}-{s}"),
            2 => format!("{a}.{x}.{s}"),
            3 => format!("+44 20 {} {}", self.digits(4), self.digits(4)),
            _ => format!("+49 30 {}", self.digits(7)),
        };
        self.secret("phone", v)
    }

    /// A Luhn-valid number of `len` digits after `prefix`.
    fn luhn_number(&mut self, prefix: &str, len: usize) -> String {
        let mut d = format!("{prefix}{}", self.digits(len - prefix.len() - 1));
        let check = (0..10u8)
            .find(|c| interceptor::mask::luhn(d.bytes().chain([b'0' + c])))
            .unwrap_or(0);
        d.push(char::from(b'0' + check));
        d
    }

    fn card(&mut self) -> String {
        let (d, amex) = match self.below(3) {
            0 => (self.luhn_number("4", 16), false),
            1 => {
                let p = format!("5{}", 1 + self.below(5));
                (self.luhn_number(&p, 16), false)
            }
            _ => (
                {
                    let p = if self.chance(50) { "34" } else { "37" };
                    self.luhn_number(p, 15)
                },
                true,
            ),
        };
        let v = match (self.below(3), amex) {
            (0, _) => d,
            (_, true) => format!("{} {} {}", &d[..4], &d[4..10], &d[10..]),
            (k, false) => {
                let sep = if k == 1 { " " } else { "-" };
                [&d[..4], &d[4..8], &d[8..12], &d[12..]].join(sep)
            }
        };
        self.secret("card", v)
    }

    /// 16 digits starting with 4 whose check digit is wrong.
    fn not_a_card(&mut self) -> String {
        let mut d = self.luhn_number("4", 16);
        let last = d.pop().map_or(0, |c| c as u8 - b'0');
        d.push(char::from(b'0' + (last + 1 + self.below(9) as u8) % 10));
        d
    }

    fn iban(&mut self) -> String {
        let bban = self.digits(18);
        let n = format!("{bban}131400").into_bytes(); // "DE00" moved to the end
        let r = n
            .iter()
            .fold(0u32, |r, c| (r * 10 + u32::from(c - b'0')) % 97);
        let v = format!("DE{:02}{bban}", 98 - r);
        let v = if self.chance(50) {
            let b = v
                .as_bytes()
                .chunks(4)
                .map(|c| std::str::from_utf8(c).unwrap_or(""));
            b.collect::<Vec<_>>().join(" ")
        } else {
            v
        };
        self.secret("iban", v)
    }

    fn ssn(&mut self) -> String {
        let v = format!(
            "{:03}-{:02}-{:04}",
            1 + self.below(665),
            1 + self.below(99),
            1 + self.below(9999)
        );
        self.secret("ssn", v)
    }

    fn record(&mut self, out: &mut String, n: u64) {
        let (first, last) = (self.pick(FIRST), self.pick(LAST));
        let id = self.uuid();
        let email = self.email(first, last);
        let phone = self.phone();
        let _ = write!(
            out,
            r#"{{"id":"{id}","customer":{{"name":"{}{} {}{}","email":"{email}","phone":"{phone}","address":{{"street":"{} {}","city":"{}","zip":"{:05}","country":"US"}}}}"#,
            first[..1].to_ascii_uppercase(),
            &first[1..],
            last[..1].to_ascii_uppercase(),
            &last[1..],
            1 + self.below(999),
            self.pick(STREETS),
            self.pick(CITIES),
            self.below(100_000),
        );
        if self.chance(50) {
            let card = self.card();
            let _ = write!(
                out,
                r#","payment":{{"method":"card","card":"{card}","expiry":"{:02}/{}"}}"#,
                1 + self.below(12),
                27 + self.below(5)
            );
        } else if self.chance(20) {
            let iban = self.iban();
            let _ = write!(out, r#","payment":{{"method":"sepa","iban":"{iban}"}}"#);
        }
        if self.chance(10) {
            let ssn = self.ssn();
            let _ = write!(out, r#","tax_id":"{ssn}""#);
        }
        out.push_str(r#","orders":["#);
        for i in 0..1 + self.below(4) {
            if i > 0 {
                out.push(',');
            }
            let _ = write!(
                out,
                r#"{{"order_id":"ORD-2026-{:06}","sku":"SKU-{}-{}","qty":{},"unit_price":"{}.{:02}","created_at":"2026-{:02}-{:02}T{:02}:{:02}:{:02}Z","status":"{}","tracking":"1Z{}AA{}","ref":"{}","epoch_ms":{}}}"#,
                n * 4 + i,
                self.digits(4),
                self.alnum(3).to_ascii_uppercase(),
                1 + self.below(9),
                self.below(500),
                self.below(100),
                1 + self.below(12),
                1 + self.below(28),
                self.below(24),
                self.below(60),
                self.below(60),
                self.pick(STATUS),
                self.digits(3),
                self.digits(11),
                self.not_a_card(),
                1_700_000_000_000 + self.below(100_000_000_000),
            );
        }
        let commit = self.hex(40);
        let request = self.uuid();
        let _ = write!(
            out,
            r#"],"meta":{{"request_id":"{request}","app_version":"10.0.{}.{}","build":"1.4.{}+2026{}","commit":"{commit}","checksum":"sha256:{}"}}"#,
            self.below(20_000),
            self.below(5_000),
            self.below(30),
            self.digits(8),
            self.hex(64),
        );
        let note = match self.below(20) {
            0 => format!("Called back on {}.", self.phone()),
            1 => format!("Asked to copy {}.", self.email("billing", last)),
            2 => {
                let t = format!("ghp_{}", self.alnum(36));
                format!("Pasted a token {} in chat.", self.secret("api_token", t))
            }
            3 => {
                let k = format!("AKIA{}", self.alnum(16).to_ascii_uppercase());
                format!("Key id {} rotated.", self.secret("aws_access_key", k))
            }
            4 => {
                let j = format!("eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ7bn0ifQ.{}", self.alnum(43));
                format!("Session {} expired.", self.secret("jwt", j))
            }
            _ => format!(
                "Prefers delivery after {}:00; version {}.",
                8 + self.below(10),
                "2.3.1"
            ),
        };
        let _ = write!(out, r#","notes":"{note}"}}"#);
    }
}

#[cfg(test)]
mod tests {
    use interceptor::{
        config::Mask,
        mask::{Counts, Masker},
    };
    use serde_json::Value;

    use super::*;

    /// The corpus is what it claims (5-10% sensitive, deterministic) and
    /// the standard profile masks exactly its secrets, as text and as JSON.
    #[test]
    fn large_mixed_text() {
        let (text, secrets) = generate(1, 1 << 20);
        assert!(text.len() >= 1 << 20 && text.len() < (1 << 20) + 4096);
        assert_eq!(text, corpus(1, 1 << 20), "deterministic");
        assert_ne!(text, corpus(2, 1 << 20));
        let sensitive: usize = secrets.iter().map(|(_, v)| v.len()).sum();
        let share = sensitive as f64 / text.len() as f64;
        assert!((0.05..=0.10).contains(&share), "sensitive share {share}");

        let mut want = Counts::new();
        for (k, _) in &secrets {
            *want.entry((*k).to_owned()).or_default() += 1;
        }
        let mk = Masker::new(&Mask::default(), [7; 32]).expect("masker");
        let p = mk.profile(None);
        let mut counts = Counts::new();
        let out = p.mask_str(&text, &mut counts).expect("masked");
        assert_eq!(counts, want);
        for (k, v) in &secrets {
            assert!(!out.contains(v.as_str()), "{k} {v} left in the output");
        }
        // The near misses the corpus carries survive: order ids, uuids, refs,
        // timestamps, versions.
        let v: Value = serde_json::from_str(&out).expect("still JSON");
        let orig: Value = serde_json::from_str(&text).expect("JSON");
        let (a, b) = (&v["customers"], &orig["customers"]);
        for i in [0, 1, 100] {
            assert_eq!(a[i]["id"], b[i]["id"]);
            assert_eq!(a[i]["orders"], b[i]["orders"]);
            assert_eq!(a[i]["meta"], b[i]["meta"]);
            assert_eq!(a[i]["customer"]["address"], b[i]["customer"]["address"]);
        }
        // The same through the JSON walk.
        let mut walked = orig.clone();
        let mut c2 = Counts::new();
        assert!(p.mask_json(&mut walked, &mut c2));
        assert_eq!(c2, want);
        assert_eq!(walked, v);
    }
}
