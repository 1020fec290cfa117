//! Per-identity call budgets: a token bucket per caller (issuer and
//! subject) and tool for each `[[policy.budgets]]` entry whose glob
//! matches the tool.
//!
//! The buckets live in a [`Table`] that outlives config reloads: a reload
//! builds new [`Budgets`] over the same table, so it never refills an
//! exhausted bucket (a SIGHUP is no way around a budget). A bucket is
//! keyed by its rule's tool glob, so a rule keeps its buckets when its
//! rate or burst changes; the new rate applies from then on and the burst
//! caps what is left.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Instant,
};

use crate::config::Budget;

struct Bucket {
    tokens: f64,
    at: Instant,
    /// The rule as last charged: what the sweep refills by.
    per_minute: u32,
    burst: u32,
}

impl Bucket {
    /// Tokens after refilling at the bucket's rate up to its burst.
    fn refilled(&self, now: Instant) -> f64 {
        let rate = f64::from(self.per_minute) / 60.0;
        (self.tokens + now.duration_since(self.at).as_secs_f64() * rate).min(f64::from(self.burst))
    }
}

/// Whose bucket: the rule's key (its glob, numbered when the same glob is
/// listed twice), the caller's issuer and subject (two issuers may both
/// have an `alice`), and the tool.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    rule: String,
    issuer: String,
    subject: String,
    tool: String,
}

/// The buckets, shared by every [`Budgets`] built over it.
#[derive(Clone, Default)]
pub struct Table(Arc<Mutex<HashMap<Key, Bucket>>>);

/// Per-caller call rate limits.
pub struct Budgets {
    /// (key, rule): the key names the rule's buckets in the table.
    rules: Vec<(String, Budget)>,
    table: Table,
}

/// A call over budget: which rule, and when a token is back.
#[derive(Debug, Clone, PartialEq)]
pub struct OverBudget {
    /// The tools the budget covers.
    pub tool_glob: String,
    /// The calls allowed per minute.
    pub per_minute: u32,
    /// When the caller may try again.
    pub retry_after_secs: f64,
}

/// Bounds the table: buckets idle for a full refill carry no state worth
/// keeping, so the table is swept when it grows past this.
const SWEEP_AT: usize = 100_000;

impl Budgets {
    /// Budgets with a table of their own.
    pub fn new(rules: Vec<Budget>) -> Self {
        Self::sharing(rules, &Table::default())
    }

    /// Budgets for `rules` over `table`, whose buckets they keep using.
    pub fn sharing(rules: Vec<Budget>, table: &Table) -> Self {
        let mut seen: HashMap<String, usize> = HashMap::new();
        let rules = rules
            .into_iter()
            .map(|r| {
                let n = seen.entry(r.tool.clone()).or_default();
                *n += 1;
                let key = if *n == 1 {
                    r.tool.clone()
                } else {
                    format!("{}\u{0}{n}", r.tool)
                };
                (key, r)
            })
            .collect();
        Self {
            rules,
            table: table.clone(),
        }
    }

    /// Whether no budgets are configured.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Takes one token from every matching bucket of the caller (`issuer`,
    /// `subject`), or none if any is empty.
    pub fn take(&self, issuer: &str, subject: &str, tool: &str) -> Result<(), OverBudget> {
        let now = Instant::now();
        let mut b = self.table.0.lock().unwrap_or_else(|p| p.into_inner());
        if b.len() > SWEEP_AT {
            b.retain(|_, k| k.refilled(now) < f64::from(k.burst));
        }
        let matching: Vec<(Key, &Budget)> = self
            .rules
            .iter()
            .filter(|(_, r)| glob(&r.tool, tool))
            .map(|(rule, r)| {
                let key = Key {
                    rule: rule.clone(),
                    issuer: issuer.to_string(),
                    subject: subject.to_string(),
                    tool: tool.to_string(),
                };
                (key, r)
            })
            .collect();
        // Check every bucket first so a refusal takes nothing.
        for (key, r) in &matching {
            let k = b.entry(key.clone()).or_insert(Bucket {
                tokens: f64::from(r.burst),
                at: now,
                per_minute: r.per_minute,
                burst: r.burst,
            });
            // The current rule's rate and burst from here on.
            (k.per_minute, k.burst) = (r.per_minute, r.burst);
            k.tokens = k.refilled(now);
            k.at = now;
            if k.tokens < 1.0 {
                let rate = f64::from(r.per_minute) / 60.0;
                return Err(OverBudget {
                    tool_glob: r.tool.clone(),
                    per_minute: r.per_minute,
                    retry_after_secs: ((1.0 - k.tokens) / rate).max(0.0),
                });
            }
        }
        for (key, _) in &matching {
            if let Some(k) = b.get_mut(key) {
                k.tokens -= 1.0;
            }
        }
        Ok(())
    }
}

/// `*` matches any run of characters (kept in `config`, where process
/// rules use it too).
pub use crate::config::glob;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob("db.*", "db.query"));
        assert!(glob("*", "x"));
        assert!(glob("a*c*e", "abcde"));
        assert!(!glob("db.*", "fs.read"));
        assert!(!glob("a*a", "a"));
        assert!(glob("exact", "exact") && !glob("exact", "exact2"));
    }

    fn rule(tool: &str, per_minute: u32, burst: u32) -> Budget {
        Budget {
            tool: tool.into(),
            per_minute,
            burst,
        }
    }

    const ISS: &str = "https://issuer.test";

    #[test]
    fn a_bucket_refuses_past_its_burst_per_subject_and_tool() {
        let b = Budgets::new(vec![rule("db.*", 1, 2)]);
        assert!(b.take(ISS, "alice", "db.query").is_ok());
        assert!(b.take(ISS, "alice", "db.query").is_ok());
        let over = b.take(ISS, "alice", "db.query").unwrap_err();
        assert_eq!(over.per_minute, 1);
        assert!(over.retry_after_secs > 0.0);
        // Other subjects and tools have their own buckets; unmatched tools none.
        assert!(b.take(ISS, "bob", "db.query").is_ok());
        assert!(b.take(ISS, "alice", "db.other").is_ok());
        for _ in 0..10 {
            assert!(b.take(ISS, "alice", "fs.read").is_ok());
        }
    }

    /// Two issuers can both have a user `alice`; they are two callers.
    #[test]
    fn the_same_subject_from_two_issuers_has_two_buckets() {
        let b = Budgets::new(vec![rule("*", 1, 1)]);
        assert!(b.take("https://a.test", "alice", "add").is_ok());
        assert!(b.take("https://a.test", "alice", "add").is_err());
        assert!(
            b.take("https://b.test", "alice", "add").is_ok(),
            "another issuer's alice does not spend this alice's budget"
        );
        assert!(b.take("https://b.test", "alice", "add").is_err());
    }

    /// A reload builds new budgets over the same table: an exhausted
    /// bucket stays exhausted; budgets over a fresh table (what a reload
    /// did before) would have refilled it.
    #[test]
    fn a_reload_does_not_refill_an_exhausted_bucket() {
        let table = Table::default();
        let rules = vec![rule("db.*", 1, 2), rule("fs.*", 1, 1)];
        let before = Budgets::sharing(rules.clone(), &table);
        assert!(before.take(ISS, "alice", "db.query").is_ok());
        assert!(before.take(ISS, "alice", "db.query").is_ok());
        assert!(before.take(ISS, "alice", "db.query").is_err());

        let after = Budgets::sharing(rules.clone(), &table);
        assert!(after.take(ISS, "alice", "db.query").is_err(), "refilled");
        assert!(after.take(ISS, "alice", "fs.read").is_ok());
        assert!(
            Budgets::new(rules).take(ISS, "alice", "db.query").is_ok(),
            "a table of its own starts full"
        );
    }

    /// A rule whose rate or burst changes keeps its buckets (its key is
    /// its glob): a lowered burst caps what is left, it does not refill.
    #[test]
    fn a_changed_rate_keeps_the_bucket_and_a_lower_burst_caps_it() {
        let table = Table::default();
        let wide = Budgets::sharing(vec![rule("db.*", 1, 5)], &table);
        for _ in 0..3 {
            assert!(wide.take(ISS, "alice", "db.query").is_ok());
        }
        // 2 tokens left; the new burst is 1: one call, then refused.
        let narrow = Budgets::sharing(vec![rule("db.*", 2, 1)], &table);
        assert!(narrow.take(ISS, "alice", "db.query").is_ok());
        let over = narrow.take(ISS, "alice", "db.query").unwrap_err();
        assert_eq!(over.per_minute, 2, "the new rate decides the retry");
        assert!(over.retry_after_secs <= 30.0, "{over:?}");
    }

    /// The same glob listed twice is two rules with a bucket each.
    #[test]
    fn a_glob_listed_twice_is_two_rules() {
        let b = Budgets::new(vec![rule("*", 60, 3), rule("*", 1, 1)]);
        assert!(b.take(ISS, "alice", "add").is_ok());
        let over = b.take(ISS, "alice", "add").unwrap_err();
        assert_eq!(over.per_minute, 1);
    }
}
