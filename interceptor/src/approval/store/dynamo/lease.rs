//! One sweeper for the fleet. Every agent of a shared table would
//! otherwise sweep it every second, and each sweep reads the open
//! requests: a fleet of N agents reading them N times a second, for work
//! one agent does as well (every move a sweep makes is conditional). The
//! turn is a lease item (`pk = lease#sweep`): its holder sweeps and renews
//! it halfway through; the others read it every [`TRY_US`] (an eventually
//! consistent `GetItem`) and take it over, with a conditional write, once
//! it has run out. An agent that stops lets it run out; another takes
//! over within [`LEASE_US`] + [`TRY_US`]. Clocks that disagree can make
//! two agents sweep at once, which costs reads, never a second move.

use std::sync::atomic::{AtomicI64, Ordering};

use serde_json::json;

use super::{
    DynamoDb,
    item::{get_n, get_s, n, s},
};
use crate::approval::ApprovalError;

/// How long a turn lasts once taken or renewed.
pub const LEASE_US: i64 = 10_000_000;
/// How often an agent without the turn looks whether it ran out.
pub const TRY_US: i64 = 5_000_000;

/// This agent's view of the turn.
#[derive(Default)]
pub struct Lease {
    /// Until when this agent holds the turn (0: it does not).
    until: AtomicI64,
    /// When this agent next looks at the lease item.
    next_look: AtomicI64,
}

fn key() -> serde_json::Value {
    json!({ "pk": s("lease#sweep"), "sk": s("l") })
}

impl DynamoDb {
    /// Whether this agent sweeps now (see the module docs).
    pub(super) fn sweep_turn_at(&self, now: i64) -> Result<bool, ApprovalError> {
        let until = self.lease.until.load(Ordering::Relaxed);
        if until > now + LEASE_US / 2 {
            return Ok(true);
        }
        if until > now {
            // Halfway through: renew while still holding it.
            return self.take(now, "holder = :me");
        }
        if now < self.lease.next_look.load(Ordering::Relaxed) {
            return Ok(false);
        }
        self.lease.next_look.store(now + TRY_US, Ordering::Relaxed);
        let v = self.call("GetItem", json!({ "Key": key() }))?;
        let item = v.get("Item").cloned().map(super::item::as_item);
        let held = item.as_ref().is_some_and(|i| {
            get_n(i, "until_us").is_some_and(|u| u > now)
                && get_s(i, "holder").as_deref() != Some(self.host.as_str())
        });
        if held {
            return Ok(false);
        }
        self.take(
            now,
            "attribute_not_exists(pk) OR until_us < :now OR holder = :me",
        )
    }

    /// Writes the lease for this agent if `condition` holds.
    fn take(&self, now: i64, condition: &str) -> Result<bool, ApprovalError> {
        let mut item = super::item::as_item(key());
        item.insert("holder".into(), s(&self.host));
        item.insert("until_us".into(), n(now + LEASE_US));
        // DynamoDB refuses values the condition does not use.
        let mut values = json!({ ":me": s(&self.host) });
        if condition.contains(":now") {
            values[":now"] = n(now);
        }
        let r = self.call(
            "PutItem",
            json!({
                "Item": item,
                "ConditionExpression": condition,
                "ExpressionAttributeValues": values,
            }),
        );
        match r {
            Ok(_) => {
                self.lease.until.store(now + LEASE_US, Ordering::Relaxed);
                Ok(true)
            }
            Err(e) if e.conditional() => {
                self.lease.until.store(0, Ordering::Relaxed);
                self.lease.next_look.store(now + TRY_US, Ordering::Relaxed);
                Ok(false)
            }
            Err(e) => Err(e.into()),
        }
    }
}
