//! What replaces a detected value, and the keyed hash behind `hash`.

use sha2::{Digest, Sha256};

use super::Strategy;

/// HMAC-SHA256 (RFC 2104) with the key's inner and outer pads hashed once,
/// so each value costs two compressions fewer.
#[derive(Clone)]
pub(crate) struct HmacKey {
    inner: Sha256,
    outer: Sha256,
}

impl HmacKey {
    const BLOCK: usize = 64;

    pub(crate) fn new(key: &[u8]) -> Self {
        let mut k = [0u8; Self::BLOCK];
        if key.len() > Self::BLOCK {
            k[..32].copy_from_slice(&Sha256::digest(key));
        } else {
            k[..key.len()].copy_from_slice(key);
        }
        let pad = |b: u8| {
            let mut p = k;
            p.iter_mut().for_each(|x| *x ^= b);
            Sha256::new_with_prefix(p)
        };
        Self {
            inner: pad(0x36),
            outer: pad(0x5c),
        }
    }

    /// The MAC of the concatenation of `parts`.
    pub(crate) fn mac(&self, parts: &[&[u8]]) -> [u8; 32] {
        let mut inner = self.inner.clone();
        for p in parts {
            inner.update(p);
        }
        let mut outer = self.outer.clone();
        outer.update(inner.finalize());
        let mut out = [0u8; 32];
        out.copy_from_slice(&outer.finalize());
        out
    }
}

impl std::fmt::Debug for HmacKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HmacKey(..)")
    }
}

/// Appends the replacement of `value` (found by detector `name`, shown as
/// `label`) to `out`.
pub(crate) fn render(
    out: &mut String,
    strategy: Strategy,
    name: &str,
    label: &str,
    value: &str,
    key: &HmacKey,
) {
    match strategy {
        Strategy::Redact => {
            out.push('[');
            out.push_str(label);
            out.push(']');
        }
        Strategy::Partial => partial(out, value),
        Strategy::Hash => {
            // The name is part of the MAC so equal strings found by
            // different detectors do not correlate across them.
            let mac = key.mac(&[name.as_bytes(), &[0], value.as_bytes()]);
            out.push('[');
            out.push_str(label);
            out.push(':');
            out.push_str(&hex::encode(&mac[..8]));
            out.push(']');
        }
        Strategy::Drop => {}
    }
}

/// Keeps the last four alphanumerics and the separators between them;
/// four or fewer alphanumerics reveal too much, so all are starred.
fn partial(out: &mut String, value: &str) {
    let alnum = value.chars().filter(|c| c.is_alphanumeric()).count();
    let keep_from = if alnum <= 4 { usize::MAX } else { alnum - 4 };
    let mut i = 0;
    for c in value.chars() {
        if c.is_alphanumeric() {
            out.push(if i >= keep_from { c } else { '*' });
            i += 1;
        } else {
            out.push(c);
        }
    }
}

/// `[LABEL]` and `[LABEL:<16 hex>]`: what a value masked with `label` by
/// redact or hash looks like, so masking twice (answer, then audit) does
/// not hash a hash.
pub(crate) fn is_masked(value: &str, label: &str) -> bool {
    let Some(rest) = value.strip_prefix('[').and_then(|v| v.strip_suffix(']')) else {
        return false;
    };
    let Some(rest) = rest.strip_prefix(label) else {
        return false;
    };
    rest.is_empty()
        || rest
            .strip_prefix(':')
            .is_some_and(|h| h.len() == 16 && h.bytes().all(|b| b.is_ascii_hexdigit()))
}
