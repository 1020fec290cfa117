//! Object keys: what a profile makes of each, remembered for the length
//! of one document. An answer repeats the same few keys in every record
//! (thousands of `"id"`, `"status"`, `"created_at"`), and each is the same
//! question: is it a key name, and do the detectors take anything from it.

use super::{Counts, Profile};

/// A key: up to 16 bytes exactly (two words that together cover every
/// byte, and the length), a longer one by hash. Two keys with one id are
/// the same key, or (long keys only, rarely) a collision, which is only
/// ever taken for a duplicate (see `embedded`), never for a verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct KeyId(u64, u64, usize);

impl KeyId {
    pub(super) fn of(b: &[u8]) -> KeyId {
        let word = |i: usize| {
            let mut w = [0u8; 8];
            w.copy_from_slice(&b[i..i + 8]);
            u64::from_le_bytes(w)
        };
        let half = |i: usize| {
            let mut w = [0u8; 4];
            w.copy_from_slice(&b[i..i + 4]);
            u64::from(u32::from_le_bytes(w))
        };
        let n = b.len();
        match n {
            0 => KeyId(0, 0, 0),
            1..=3 => KeyId(
                u64::from(b[0]) | u64::from(b[n / 2]) << 8 | u64::from(b[n - 1]) << 16,
                0,
                n,
            ),
            4..=7 => KeyId(half(0) | half(n - 4) << 32, 0, n),
            8..=16 => KeyId(word(0), word(n - 8), n),
            _ => KeyId(fnv1a(b), 0, n),
        }
    }

    /// Whether the id is the key's bytes, not a hash of them.
    fn exact(self) -> bool {
        self.2 <= 16
    }

    /// A well-mixed hash of the id.
    pub(super) fn hash(self) -> u64 {
        (self.0 ^ self.1.rotate_left(23) ^ self.2 as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)
    }
}

fn fnv1a(b: &[u8]) -> u64 {
    b.iter().fold(0xcbf2_9ce4_8422_2325, |h, &c| {
        (h ^ u64::from(c)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// What a profile makes of a key.
#[derive(Debug, Clone, Copy)]
pub(super) struct Verdict {
    /// One of the profile's key names: its value is masked whole.
    pub hit: bool,
    /// The detectors take nothing from the key itself.
    pub clean: bool,
}

/// Verdicts on the short keys of one document: 64 sets of two, by id
/// (two ways, as a few dozen keys in 64 single slots would often share
/// one and evict each other in every record).
#[derive(Default)]
pub(super) struct KeyMemo {
    slots: Vec<(KeyId, Verdict)>,
}

impl KeyMemo {
    const SETS: usize = 64;

    /// The verdict on `k` (whose id is `id`). Asking counts nothing: a
    /// key the detectors change is masked, and counted, where it is
    /// renamed.
    pub(super) fn judge(&mut self, p: &Profile, k: &str, id: KeyId) -> Verdict {
        let set = 2 * (id.hash() >> 58) as usize % (2 * Self::SETS);
        if let Some(ways) = self.slots.get(set..set + 2) {
            for (known, v) in ways {
                if *known == id {
                    return *v;
                }
            }
        }
        let v = Verdict {
            hit: p.key_hit(k),
            clean: !p.masks_text() || p.apply(k, &mut Counts::new(), true).is_none(),
        };
        if id.exact() {
            if self.slots.is_empty() {
                // No key is usize::MAX bytes long: an empty slot matches
                // none.
                let empty = KeyId(0, 0, usize::MAX);
                self.slots.resize(2 * Self::SETS, (empty, v));
            }
            // The newer key first; the older moves to the second way.
            self.slots[set + 1] = self.slots[set];
            self.slots[set] = (id, v);
        }
        v
    }
}
