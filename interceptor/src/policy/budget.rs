//! Per-identity call budgets: a token bucket per subject and tool for each
//! `[[policy.budgets]]` entry whose glob matches the tool.

use std::{collections::HashMap, sync::Mutex, time::Instant};

use crate::config::Budget;

struct Bucket {
    tokens: f64,
    at: Instant,
}

pub struct Budgets {
    rules: Vec<Budget>,
    buckets: Mutex<HashMap<(usize, String, String), Bucket>>,
}

/// A call over budget: which rule, and when a token is back.
#[derive(Debug, Clone, PartialEq)]
pub struct OverBudget {
    pub tool_glob: String,
    pub per_minute: u32,
    pub retry_after_secs: f64,
}

/// Bounds the table: buckets idle for a full refill carry no state worth
/// keeping, so the table is swept when it grows past this.
const SWEEP_AT: usize = 100_000;

impl Budgets {
    pub fn new(rules: Vec<Budget>) -> Self {
        Self {
            rules,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Takes one token from every matching bucket, or none if any is empty.
    pub fn take(&self, subject: &str, tool: &str) -> Result<(), OverBudget> {
        let now = Instant::now();
        let mut b = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if b.len() > SWEEP_AT {
            let rules = &self.rules;
            b.retain(|(i, _, _), k| {
                let rate = f64::from(rules[*i].per_minute) / 60.0;
                k.tokens + now.duration_since(k.at).as_secs_f64() * rate
                    < f64::from(rules[*i].burst)
            });
        }
        let matching: Vec<usize> = (0..self.rules.len())
            .filter(|i| glob(&self.rules[*i].tool, tool))
            .collect();
        // Check every bucket first so a refusal takes nothing.
        for &i in &matching {
            let r = &self.rules[i];
            let rate = f64::from(r.per_minute) / 60.0;
            let k = b
                .entry((i, subject.to_string(), tool.to_string()))
                .or_insert(Bucket {
                    tokens: f64::from(r.burst),
                    at: now,
                });
            k.tokens =
                (k.tokens + now.duration_since(k.at).as_secs_f64() * rate).min(f64::from(r.burst));
            k.at = now;
            if k.tokens < 1.0 {
                return Err(OverBudget {
                    tool_glob: r.tool.clone(),
                    per_minute: r.per_minute,
                    retry_after_secs: ((1.0 - k.tokens) / rate).max(0.0),
                });
            }
        }
        for &i in &matching {
            if let Some(k) = b.get_mut(&(i, subject.to_string(), tool.to_string())) {
                k.tokens -= 1.0;
            }
        }
        Ok(())
    }
}

/// `*` matches any run of characters; everything else literally.
pub fn glob(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == text;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !text.starts_with(first) || text.len() < first.len() + last.len() || !text.ends_with(last) {
        return false;
    }
    let mut rest = &text[first.len()..text.len() - last.len()];
    for p in &parts[1..parts.len() - 1] {
        match rest.find(p) {
            Some(i) => rest = &rest[i + p.len()..],
            None => return false,
        }
    }
    true
}

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

    #[test]
    fn a_bucket_refuses_past_its_burst_per_subject_and_tool() {
        let b = Budgets::new(vec![Budget {
            tool: "db.*".into(),
            per_minute: 1,
            burst: 2,
        }]);
        assert!(b.take("alice", "db.query").is_ok());
        assert!(b.take("alice", "db.query").is_ok());
        let over = b.take("alice", "db.query").unwrap_err();
        assert_eq!(over.per_minute, 1);
        assert!(over.retry_after_secs > 0.0);
        // Other subjects and tools have their own buckets; unmatched tools none.
        assert!(b.take("bob", "db.query").is_ok());
        assert!(b.take("alice", "db.other").is_ok());
        for _ in 0..10 {
            assert!(b.take("alice", "fs.read").is_ok());
        }
    }
}
