//! JSON embedded in text (an MCP tool result's `content[].text` is often a
//! whole JSON document) masked as it is parsed: serde_json's parser drives
//! a visitor that writes the compact form as it goes, so no tree is built
//! and freed, and strings without escapes are copied straight through.
//!
//! The output is exactly what parsing into a `Value`, walking it (`walk`)
//! and serializing it gives, and the same parser decides what is JSON
//! (errors, depth limit, numbers). Three things only the tree does the
//! same way: an object with a key twice (the tree keeps the last value in
//! the first place), a key a detector renames (the tree numbers clashes),
//! and serde_json's private `$serde_json::private::` keys; a document with
//! one goes through the tree instead.

use std::{fmt, sync::LazyLock};

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

use super::{
    Counts, Masked, Profile,
    keys::{KeyId, KeyMemo},
    walk,
};

pub(super) enum Outcome {
    Unchanged,
    Masked(String),
    /// Not JSON to serde_json: masked as text.
    NotJson,
    /// Needs the tree (see the module doc).
    Tree,
}

/// Whether serde_json's maps keep insertion order (its `preserve_order`
/// feature, which a dependency turns on): without it the tree writes keys
/// sorted, and only the tree can.
static ORDERED: LazyLock<bool> = LazyLock::new(|| {
    let mut m = Map::new();
    m.insert("b".to_owned(), Value::Null);
    m.insert("a".to_owned(), Value::Null);
    m.keys().next().is_some_and(|k| k == "b")
});

/// Masks the JSON document `text`, itself a string at embedding level
/// `embed`; what it counts is added to `counts` only if it comes out
/// masked or unchanged.
pub(super) fn mask(
    p: &Profile,
    text: &str,
    counts: &mut Counts,
    embed: u32,
    memo: &mut KeyMemo,
) -> Outcome {
    if !*ORDERED {
        return Outcome::Tree;
    }
    let mut out = Out {
        p,
        buf: String::with_capacity(text.len()),
        counts: Counts::new(),
        embed: embed + 1,
        changed: false,
        tree: false,
        keys: Vec::new(),
        memo,
    };
    let mut de = serde_json::Deserializer::from_str(text);
    let parsed = Seed(&mut out).deserialize(&mut de).and_then(|_| de.end());
    if out.tree {
        return Outcome::Tree;
    }
    if parsed.is_err() {
        return Outcome::NotJson;
    }
    for (k, n) in out.counts {
        let c = counts.entry(k).or_default();
        *c = c.saturating_add(n);
    }
    if !out.changed {
        return Outcome::Unchanged;
    }
    Outcome::Masked(out.buf)
}

struct Out<'p, 'm> {
    p: &'p Profile,
    buf: String,
    counts: Counts,
    /// The level of the strings inside the document.
    embed: u32,
    changed: bool,
    tree: bool,
    /// The keys of the objects being written, innermost last.
    keys: Vec<KeyId>,
    memo: &'m mut KeyMemo,
}

/// Whether a value was written, or dropped whole (see `walk::Change`).
enum Written {
    Yes,
    Gone,
}

impl Out<'_, '_> {
    fn tree<E: de::Error>(&mut self) -> E {
        self.tree = true;
        E::custom("handled by the tree")
    }

    /// `clean`: parsed without escapes, so written as it is.
    fn string(&mut self, s: &str, clean: bool) -> Written {
        let masked = walk::string(self.p, s, &mut self.counts, self.embed, self.memo);
        self.write(masked, |buf| {
            if clean {
                write_raw(buf, s)
            } else {
                write_str(buf, s)
            }
        })
    }

    fn number(&mut self, n: Number) -> Written {
        let masked = walk::number(self.p, &n, &mut self.counts);
        self.write(masked, |buf| write_number(buf, &n))
    }

    /// Writes what masking made of a value: the value as it was (`same`)
    /// when nothing matched, else its masked text, or nothing when it was
    /// dropped.
    fn write(&mut self, masked: Option<Masked>, same: impl FnOnce(&mut String)) -> Written {
        match masked {
            None => same(&mut self.buf),
            Some(Masked::Text(t)) => {
                self.changed = true;
                write_str(&mut self.buf, &t);
            }
            Some(Masked::Gone) => {
                self.changed = true;
                return Written::Gone;
            }
        }
        Written::Yes
    }
}

/// As serde_json writes a string: `"` and `\` escaped, control bytes as
/// `\b \t \n \f \r` or `\u00xx`, everything else as it is (so a string
/// parsed without escapes is written as it came).
fn write_str(buf: &mut String, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    buf.push('"');
    let mut from = 0;
    for (i, b) in s.bytes().enumerate() {
        let escape = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\x08' => "\\b",
            b'\t' => "\\t",
            b'\n' => "\\n",
            b'\x0c' => "\\f",
            b'\r' => "\\r",
            0..=0x1f => "",
            _ => continue,
        };
        // Escaped bytes are ASCII: `i` and `i + 1` are char boundaries.
        buf.push_str(&s[from..i]);
        if escape.is_empty() {
            buf.push_str("\\u00");
            buf.push(char::from(HEX[usize::from(b >> 4)]));
            buf.push(char::from(HEX[usize::from(b & 0xf)]));
        } else {
            buf.push_str(escape);
        }
        from = i + 1;
    }
    buf.push_str(&s[from..]);
    buf.push('"');
}

fn write_raw(buf: &mut String, s: &str) {
    buf.push('"');
    buf.push_str(s);
    buf.push('"');
}

/// As serde_json writes a number (integers in decimal, floats as ryu
/// prints them, which `Number`'s `Display` does too).
fn write_number(buf: &mut String, n: &Number) {
    let digits = |buf: &mut String, mut u: u64| {
        let mut d = [0u8; 20];
        let mut i = d.len();
        loop {
            i -= 1;
            d[i] = b'0' + (u % 10) as u8;
            u /= 10;
            if u == 0 {
                break;
            }
        }
        buf.push_str(std::str::from_utf8(&d[i..]).unwrap_or_default());
    };
    if let Some(u) = n.as_u64() {
        digits(buf, u);
    } else if let Some(i) = n.as_i64() {
        buf.push('-');
        digits(buf, i.unsigned_abs());
    } else {
        buf.push_str(&n.to_string());
    }
}

/// Deserializes one value into `Out`.
struct Seed<'a, 'p, 'm>(&'a mut Out<'p, 'm>);

impl<'de> DeserializeSeed<'de> for Seed<'_, '_, '_> {
    type Value = Written;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Written, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Seed<'_, '_, '_> {
    type Value = Written;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, b: bool) -> Result<Written, E> {
        self.0.buf.push_str(if b { "true" } else { "false" });
        Ok(Written::Yes)
    }

    fn visit_i64<E>(self, n: i64) -> Result<Written, E> {
        Ok(self.0.number(n.into()))
    }

    fn visit_u64<E>(self, n: u64) -> Result<Written, E> {
        Ok(self.0.number(n.into()))
    }

    fn visit_f64<E: de::Error>(self, n: f64) -> Result<Written, E> {
        match Number::from_f64(n) {
            Some(n) => Ok(self.0.number(n)),
            None => self.visit_unit(),
        }
    }

    fn visit_i128<E: de::Error>(self, _: i128) -> Result<Written, E> {
        Err(self.0.tree())
    }

    fn visit_u128<E: de::Error>(self, _: u128) -> Result<Written, E> {
        Err(self.0.tree())
    }

    fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Written, E> {
        Ok(self.0.string(s, true))
    }

    fn visit_str<E>(self, s: &str) -> Result<Written, E> {
        Ok(self.0.string(s, false))
    }

    fn visit_unit<E>(self) -> Result<Written, E> {
        self.0.buf.push_str("null");
        Ok(Written::Yes)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Written, A::Error> {
        let o = self.0;
        o.buf.push('[');
        let mut first = true;
        loop {
            let mark = o.buf.len();
            if !first {
                o.buf.push(',');
            }
            match seq.next_element_seed(Seed(&mut *o))? {
                None => {
                    o.buf.truncate(mark);
                    break;
                }
                Some(Written::Yes) => {}
                // An array keeps its length: the dropped element reads null.
                Some(Written::Gone) => o.buf.push_str("null"),
            }
            first = false;
        }
        o.buf.push(']');
        Ok(Written::Yes)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Written, A::Error> {
        let o = self.0;
        o.buf.push('{');
        let outer_keys = o.keys.len();
        // One bit per bucket of this object's keys: a key whose bucket is
        // taken is compared with the others, exactly. Past 64 keys the
        // buckets are all taken, and one sort at the end is cheaper.
        let mut buckets = 0u64;
        const FEW: usize = 64;
        let mut first = true;
        while let Some(key) = map.next_key_seed(KeySeed)? {
            let k = key.as_str();
            if k.starts_with("$serde_json::private::") {
                return Err(o.tree());
            }
            let id = KeyId::of(k.as_bytes());
            let bucket = 1 << (id.hash() >> 58);
            let seen = &o.keys[outer_keys..];
            if buckets & bucket != 0 && seen.len() <= FEW && seen.contains(&id) {
                return Err(o.tree());
            }
            buckets |= bucket;
            o.keys.push(id);
            // The tree renames keys after the values, and only kept
            // entries; asking first is the same, as asking counts nothing.
            let verdict = o.memo.judge(o.p, k, id);
            if !verdict.clean {
                return Err(o.tree());
            }
            let entry = o.buf.len();
            if !first {
                o.buf.push(',');
            }
            match key {
                Key::Borrowed(k) => write_raw(&mut o.buf, k),
                Key::Owned(ref k) => write_str(&mut o.buf, k),
            }
            o.buf.push(':');
            let kept = if verdict.hit {
                let mut v: Value = map.next_value()?;
                let kept = walk::key_value(o.p, &mut v, &mut o.counts).kept(&mut o.changed);
                if kept {
                    o.buf.push_str(&v.to_string());
                }
                kept
            } else {
                matches!(map.next_value_seed(Seed(&mut *o))?, Written::Yes)
            };
            if kept {
                first = false;
            } else {
                // Dropped whole: the entry goes, as in the tree.
                o.changed = true;
                o.buf.truncate(entry);
            }
        }
        let keys = &mut o.keys[outer_keys..];
        if keys.len() > FEW {
            keys.sort_unstable();
            if keys.windows(2).any(|w| w[0] == w[1]) {
                return Err(o.tree());
            }
        }
        o.keys.truncate(outer_keys);
        o.buf.push('}');
        Ok(Written::Yes)
    }
}

/// An object key, borrowed from the text unless it had escapes.
enum Key<'de> {
    Borrowed(&'de str),
    Owned(String),
}

impl Key<'_> {
    fn as_str(&self) -> &str {
        match self {
            Key::Borrowed(s) => s,
            Key::Owned(s) => s,
        }
    }
}

struct KeySeed;

impl<'de> DeserializeSeed<'de> for KeySeed {
    type Value = Key<'de>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Key<'de>, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeySeed {
    type Value = Key<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object key")
    }

    fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Key<'de>, E> {
        Ok(Key::Borrowed(s))
    }

    fn visit_str<E>(self, s: &str) -> Result<Key<'de>, E> {
        Ok(Key::Owned(s.to_owned()))
    }
}

#[cfg(test)]
pub(super) fn ordered() -> bool {
    *ORDERED
}
