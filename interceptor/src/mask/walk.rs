//! Masking inside JSON values: key names, strings, integers, object keys
//! and JSON embedded in strings.

use serde_json::{Map, Number, Value};

use super::{
    Counts, KEY_LABEL, KEY_NAME, Masked, Profile, Strategy, bump,
    strategy::{self, is_masked},
};

/// JSON inside a string inside JSON... is followed this many levels; past
/// that a string is masked as text (every detector still applies, only
/// key names are missed). Each level may nest 128 deep (serde_json's
/// limit), so this also bounds the recursion.
const MAX_EMBED: u32 = 3;

pub(crate) fn value(p: &Profile, v: &mut Value, counts: &mut Counts, embed: u32) -> bool {
    let new = match v {
        Value::String(s) => string(p, s, counts, embed),
        Value::Number(n) => number(p, n, counts),
        Value::Array(a) => {
            let mut changed = false;
            for x in a {
                changed |= value(p, x, counts, embed);
            }
            return changed;
        }
        Value::Object(m) => return object(p, m, counts, embed),
        Value::Null | Value::Bool(_) => None,
    };
    new.map(|n| *v = n).is_some()
}

fn string(p: &Profile, s: &str, counts: &mut Counts, embed: u32) -> Option<Value> {
    if embed < MAX_EMBED
        && looks_like_json(s)
        && let Ok(mut inner) = serde_json::from_str::<Value>(s)
        && (inner.is_object() || inner.is_array())
    {
        return value(p, &mut inner, counts, embed + 1).then(|| Value::String(inner.to_string()));
    }
    masked(p.apply(s, counts, false)?)
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
fn number(p: &Profile, n: &Number, counts: &mut Counts) -> Option<Value> {
    if n.is_f64() {
        return None;
    }
    // Nothing built in matches fewer than 13 bare digits; most numbers in
    // answers are small, so decide that without formatting them.
    let small = n.as_u64().is_some_and(|u| u < 1_000_000_000_000)
        || n.as_i64()
            .is_some_and(|i| i.unsigned_abs() < 1_000_000_000_000);
    if small && !p.has_custom() {
        return None;
    }
    let text = n.to_string();
    if text.len() < 13 && !p.has_custom() {
        return None;
    }
    masked(p.apply(&text, counts, false)?)
}

fn masked(m: Masked) -> Option<Value> {
    Some(match m {
        Masked::Text(t) => Value::String(t),
        Masked::Gone => Value::Null,
    })
}

fn object(p: &Profile, m: &mut Map<String, Value>, counts: &mut Counts, embed: u32) -> bool {
    let mut changed = false;
    m.retain(|k, v| {
        if !p.key_hit(k) {
            changed |= value(p, v, counts, embed);
            return true;
        }
        match key_value(p, v, counts) {
            KeyAction::Keep => true,
            KeyAction::Changed => {
                changed = true;
                true
            }
            KeyAction::Remove => {
                changed = true;
                false
            }
        }
    });
    if p.masks_text() {
        changed |= rename_keys(p, m, counts);
    }
    changed
}

enum KeyAction {
    Keep,
    Changed,
    Remove,
}

fn key_value(p: &Profile, v: &mut Value, counts: &mut Counts) -> KeyAction {
    let s = p.key_strategy;
    let text = match v {
        // Nothing to hide in an absent value or a flag.
        Value::Null | Value::Bool(_) => return KeyAction::Keep,
        // Masked already (the answer, now seen again by the audit).
        Value::String(t) if is_masked(t, KEY_LABEL) || looks_partial(t) => {
            return KeyAction::Keep;
        }
        _ if s == Strategy::Drop => {
            bump(counts, KEY_NAME);
            return KeyAction::Remove;
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
        return KeyAction::Keep;
    }
    bump(counts, KEY_NAME);
    *v = Value::String(out);
    KeyAction::Changed
}

/// `****1234`-like: what partial leaves, which partial again would star
/// completely.
fn looks_partial(t: &str) -> bool {
    t.starts_with('*') && t.chars().filter(|c| c.is_alphanumeric()).count() <= 4
}

/// Object keys that are themselves sensitive (`{"alice@example.com": ...}`),
/// renamed in place, order kept; a clash after masking gets `#2`, `#3`...
fn rename_keys(p: &Profile, m: &mut Map<String, Value>, counts: &mut Counts) -> bool {
    let renames: Vec<(usize, String)> = m
        .keys()
        .enumerate()
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
