//! Compiling a profile from its config: which detectors, in which order,
//! with which strategies, and the index of key names it masks whole.

use regex::Regex;

use super::{Det, How, LengthBits, Profile, normalize_key};
use crate::{
    config::{CustomDetector, MaskProfile},
    mask::{
        KEY_NAME, MaskError, Strategy,
        detect::{self, Kind},
        numeric,
        strategy::HmacKey,
    },
};

impl Profile {
    /// Compiles profile `name`: its detectors (built-ins, then customs),
    /// their strategies, and the index of key names it masks whole.
    pub(in crate::mask) fn compile(
        name: &str,
        cfg: &MaskProfile,
        hmac: &HmacKey,
    ) -> Result<Self, MaskError> {
        let kinds = builtin_kinds(name, cfg)?;
        let mut dets = builtin_dets(cfg, &kinds);
        for c in &cfg.custom {
            let det = custom_det(name, cfg, c, &dets)?;
            dets.push(det);
        }
        check_strategies(name, cfg, &dets)?;
        let (keys, key_first, key_last) = key_index(&cfg.keys);
        let mut det_of = [detect::NONE; 12];
        for (i, d) in dets.iter().enumerate() {
            if let How::Builtin(k) = d.how {
                det_of[k as usize] = i as u32;
            }
        }
        let min_len = if cfg.custom.is_empty() {
            kinds
                .iter()
                .map(|k| k.min_len())
                .min()
                .unwrap_or(usize::MAX)
        } else {
            1
        };
        Ok(Self {
            min_len,
            numeric_min: numeric::min_digits(&det_of),
            det_of,
            name: name.to_owned(),
            builtin: kinds.iter().fold(0, |b, k| b | k.bit()),
            has_custom: !cfg.custom.is_empty(),
            longest_key: keys.iter().map(Vec::len).max().unwrap_or(0),
            keys,
            key_first,
            key_last,
            key_strategy: cfg.key_strategy,
            hmac: hmac.clone(),
            dets,
        })
    }
}

/// The built-in detectors the profile names, in its order; an unknown
/// name is refused.
fn builtin_kinds(name: &str, cfg: &MaskProfile) -> Result<Vec<Kind>, MaskError> {
    cfg.detectors
        .iter()
        .map(|d| {
            Kind::from_name(d).ok_or_else(|| MaskError::UnknownDetector {
                profile: name.to_owned(),
                name: d.clone(),
            })
        })
        .collect()
}

/// The strategy the profile sets for detector `n`, else `default`.
fn strategy_of(cfg: &MaskProfile, n: &str, default: Strategy) -> Strategy {
    cfg.strategies.get(n).copied().unwrap_or(default)
}

/// The built-in detectors of `kinds`, in tie-break order (`Kind::ALL`).
fn builtin_dets(cfg: &MaskProfile, kinds: &[Kind]) -> Vec<Det> {
    Kind::ALL
        .into_iter()
        .filter(|k| kinds.contains(k))
        .map(|k| Det {
            name: k.name().to_owned(),
            label: k.name().to_ascii_uppercase(),
            strategy: strategy_of(cfg, k.name(), default_strategy(k)),
            how: How::Builtin(k),
        })
        .collect()
}

/// One custom detector: a name of its own (not a built-in's, not one of
/// `dets`) and a regex that compiles.
fn custom_det(
    name: &str,
    cfg: &MaskProfile,
    c: &CustomDetector,
    dets: &[Det],
) -> Result<Det, MaskError> {
    let bad = |why| MaskError::BadCustom {
        profile: name.to_owned(),
        name: c.name.clone(),
        why,
    };
    if c.name.is_empty()
        || !c
            .name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
    {
        return Err(bad("the name must be lower-case letters, digits and _"));
    }
    if Kind::from_name(&c.name).is_some() || c.name == KEY_NAME {
        return Err(bad("the name is taken by a built-in detector"));
    }
    if dets.iter().any(|d| d.name == c.name) {
        return Err(bad("defined twice"));
    }
    let re = Regex::new(&c.regex).map_err(|e| MaskError::BadRegex {
        profile: name.to_owned(),
        detector: c.name.clone(),
        source: Box::new(e),
    })?;
    Ok(Det {
        name: c.name.clone(),
        label: c.name.to_ascii_uppercase(),
        strategy: strategy_of(cfg, &c.name, c.strategy),
        how: How::Custom(re, c.validator),
    })
}

/// Refuses a strategy set for a detector that is neither built in nor
/// defined by the profile (a typo would leave its values unmasked as
/// the operator meant).
fn check_strategies(name: &str, cfg: &MaskProfile, dets: &[Det]) -> Result<(), MaskError> {
    for n in cfg.strategies.keys() {
        if Kind::from_name(n).is_none() && !dets.iter().any(|d| &d.name == n) {
            return Err(MaskError::UnknownStrategy {
                profile: name.to_owned(),
                name: n.clone(),
            });
        }
    }
    Ok(())
}

/// Normalized key names, sorted, and their first- and last-byte length
/// bits (see `Profile::key_first`).
fn key_index(names: &[String]) -> (Vec<Vec<u8>>, LengthBits, LengthBits) {
    let mut keys: Vec<Vec<u8>> = names.iter().map(|k| normalize_key(k)).collect();
    keys.sort();
    keys.dedup();
    let (mut key_first, mut key_last) = (Box::new([0u64; 256]), Box::new([0u64; 256]));
    for k in &keys {
        let len = 1 << (k.len() & 63);
        key_first[usize::from(k.first().copied().unwrap_or(0))] |= len;
        key_last[usize::from(k.last().copied().unwrap_or(0))] |= len;
    }
    (keys, key_first, key_last)
}

fn default_strategy(k: Kind) -> Strategy {
    match k {
        Kind::Card => Strategy::Partial,
        _ => Strategy::Redact,
    }
}
