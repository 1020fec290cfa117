//! Masking inside JSON values: key names, strings, integers, object keys
//! and JSON embedded in strings.

use std::io::Write;

use serde_json::{Map, Number, Value};

use super::{
    Counts, KEY_LABEL, KEY_NAME, Masked, Profile, Strategy, bump,
    embedded::{self, Outcome},
    keys::{KeyId, KeyMemo},
    numeric,
    strategy::{self, is_masked},
};

/// JSON inside a string inside JSON... is followed this many levels; past
/// that a string is masked as text (every detector still applies, only
/// key names are missed). Each level may nest 128 deep (serde_json's
/// limit), so this also bounds the recursion.
const MAX_EMBED: u32 = 3;

/// What masking did to one value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Change {
    Same,
    Changed,
    /// Dropped whole: an object removes the entry, an array keeps a
    /// `null` in its place.
    Gone,
}

impl Change {
    /// Whether an object entry with this value stays; sets `changed` if
    /// the value changed or went.
    pub(super) fn kept(self, changed: &mut bool) -> bool {
        *changed |= self != Change::Same;
        self != Change::Gone
    }
}

/// Masks a whole JSON value (a dropped one becomes `null`).
pub(crate) fn top(p: &Profile, v: &mut Value, counts: &mut Counts) -> bool {
    match value(p, v, counts, 0, &mut KeyMemo::default()) {
        Change::Same => false,
        Change::Changed => true,
        Change::Gone => {
            *v = Value::Null;
            true
        }
    }
}

/// Masks `v` at embedding level `embed`, in place.
pub(super) fn value(
    p: &Profile,
    v: &mut Value,
    counts: &mut Counts,
    embed: u32,
    memo: &mut KeyMemo,
) -> Change {
    let masked = match v {
        Value::String(s) => string(p, s, counts, embed, memo),
        Value::Number(n) => number(p, n, counts),
        Value::Array(a) => {
            let mut changed = Change::Same;
            for x in a {
                match value(p, x, counts, embed, memo) {
                    Change::Same => {}
                    Change::Changed => changed = Change::Changed,
                    Change::Gone => {
                        *x = Value::Null;
                        changed = Change::Changed;
                    }
                }
            }
            return changed;
        }
        Value::Object(m) => return object(p, m, counts, embed, memo),
        Value::Null | Value::Bool(_) => None,
    };
    match masked {
        None => Change::Same,
        Some(Masked::Text(t)) => {
            *v = Value::String(t);
            Change::Changed
        }
        Some(Masked::Gone) => Change::Gone,
    }
}

/// A string at embedding level `embed`: JSON in it is masked inside
/// (`embedded`, or the tree for what only the tree does right), anything
/// else as text.
pub(super) fn string(
    p: &Profile,
    s: &str,
    counts: &mut Counts,
    embed: u32,
    memo: &mut KeyMemo,
) -> Option<Masked> {
    if embed < MAX_EMBED && looks_like_json(s) {
        match embedded::mask(p, s, counts, embed, memo) {
            Outcome::Unchanged => return None,
            Outcome::Masked(t) => return Some(Masked::Text(t)),
            Outcome::NotJson => {}
            // What only the tree does right: parsed, walked, written back.
            Outcome::Tree => {
                if let Ok(mut inner) = serde_json::from_str::<Value>(s)
                    && (inner.is_object() || inner.is_array())
                {
                    let changed = value(p, &mut inner, counts, embed + 1, memo) != Change::Same;
                    return changed.then(|| Masked::Text(inner.to_string()));
                }
            }
        }
    }
    p.apply(s, counts, false)
}

fn looks_like_json(s: &str) -> bool {
    let t = s.trim_ascii();
    matches!(
        (t.as_bytes().first(), t.as_bytes().last()),
        (Some(b'{'), Some(b'}')) | (Some(b'['), Some(b']'))
    )
}

/// Integers as their decimal text: a card number can arrive as a number.
/// Floats cannot hold one exactly and would not print back the same.
pub(super) fn number(p: &Profile, n: &Number, counts: &mut Counts) -> Option<Masked> {
    if n.is_f64() {
        return None;
    }
    // Of the built-in detectors only the card takes a bare run of digits
    // (the others need a `+`, separators, letters or an `@`), and only
    // 13 to 19 of them after no sign, starting with a 2 to 6: most numbers
    // in answers (counts, ids, epoch times) are decided without being
    // formatted.
    if !p.has_custom() && !n.as_u64().is_some_and(numeric::card_sized) {
        return None;
    }
    // An integer is at most 20 characters: formatted on the stack.
    let mut buf = [0u8; 24];
    let mut w = &mut buf[..];
    write!(w, "{n}").ok()?;
    let len = 24 - w.len();
    let text = std::str::from_utf8(&buf[..len]).ok()?;
    p.apply(text, counts, false)
}

fn object(
    p: &Profile,
    m: &mut Map<String, Value>,
    counts: &mut Counts,
    embed: u32,
    memo: &mut KeyMemo,
) -> Change {
    let mut changed = false;
    m.retain(|k, v| {
        let change = if memo.judge(p, k, KeyId::of(k.as_bytes())).hit {
            key_value(p, v, counts)
        } else {
            value(p, v, counts, embed, memo)
        };
        change.kept(&mut changed)
    });
    if p.masks_text() {
        changed |= rename_keys(p, m, counts, memo);
    }
    if changed {
        Change::Changed
    } else {
        Change::Same
    }
}

/// The value of a key whose name `keys` matches, masked whole by the
/// profile's key strategy (`Gone` under `drop`).
pub(super) fn key_value(p: &Profile, v: &mut Value, counts: &mut Counts) -> Change {
    let s = p.key_strategy;
    let text = match v {
        // Nothing to hide in an absent value or a flag.
        Value::Null | Value::Bool(_) => return Change::Same,
        // Masked already (the answer, now seen again by the audit).
        Value::String(t) if is_masked(t, KEY_LABEL) || looks_partial(t) => {
            return Change::Same;
        }
        _ if s == Strategy::Drop => {
            bump(counts, KEY_NAME);
            return Change::Gone;
        }
        Value::String(t) => std::mem::take(t),
        Value::Number(n) => n.to_string(),
        Value::Array(_) | Value::Object(_) => v.to_string(),
    };
    // A structure has no "last four" worth keeping.
    let s = match (s, &*v) {
        (Strategy::Partial, Value::Array(_) | Value::Object(_)) => Strategy::Redact,
        _ => s,
    };
    let mut out = String::new();
    strategy::render(&mut out, s, KEY_NAME, KEY_LABEL, &text, &p.hmac);
    if out == text {
        *v = Value::String(text);
        return Change::Same;
    }
    bump(counts, KEY_NAME);
    *v = Value::String(out);
    Change::Changed
}

/// `****1234`-like: what partial leaves, which partial again would star
/// completely.
fn looks_partial(t: &str) -> bool {
    t.starts_with('*') && t.chars().filter(|c| c.is_alphanumeric()).count() <= 4
}

/// Object keys that are themselves sensitive (`{"alice@example.com": ...}`),
/// renamed in place, order kept; a clash after masking gets `#2`, `#3`...
fn rename_keys(
    p: &Profile,
    m: &mut Map<String, Value>,
    counts: &mut Counts,
    memo: &mut KeyMemo,
) -> bool {
    let renames: Vec<(usize, String)> = m
        .keys()
        .enumerate()
        .filter(|(_, k)| !memo.judge(p, k, KeyId::of(k.as_bytes())).clean)
        .filter_map(|(i, k)| match p.apply(k, counts, true)? {
            Masked::Text(t) => Some((i, t)),
            Masked::Gone => None,
        })
        .collect();
    if renames.is_empty() {
        return false;
    }
    let old = std::mem::take(m);
    let mut renames = renames.into_iter().peekable();
    for (i, (k, v)) in old.into_iter().enumerate() {
        let k = match renames.next_if(|(j, _)| *j == i) {
            Some((_, new)) => new,
            None => k,
        };
        m.insert(unique(m, k), v);
    }
    true
}

fn unique(m: &Map<String, Value>, name: String) -> String {
    if !m.contains_key(&name) {
        return name;
    }
    (2..)
        .map(|n| format!("{name}#{n}"))
        .find(|k| !m.contains_key(k))
        .unwrap_or(name)
}
