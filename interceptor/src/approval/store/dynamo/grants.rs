//! Grants in the DynamoDB table. A grant ends once: its revocation and the
//! record of its expiry are conditional writes, so of the agents racing
//! to record an end exactly one does (and audits it).

use serde_json::json;

use super::{
    DynamoDb,
    item::{self, GRANT_ACTIVE, GRANT_ENDED, n, s},
};
use crate::approval::{ApprovalError, Grant, store::Grants};

impl Grants for DynamoDb {
    fn insert_grant(&self, g: &Grant) -> Result<(), ApprovalError> {
        self.call(
            "PutItem",
            json!({ "Item": item::grant(g), "ConditionExpression": "attribute_not_exists(pk)" }),
        )?;
        Ok(())
    }

    /// Every grant (`all`) or those in force at `now_us`, oldest first.
    /// In force is read from the partition of grants that have not ended
    /// (what every agent re-reads each poll): ended grants, which stay
    /// until the table's TTL removes them, are read only for `all`.
    fn grants(&self, now_us: i64, all: bool) -> Result<Vec<Grant>, ApprovalError> {
        let in_force = "attribute_not_exists(revoked_us) AND expires_us > :now";
        if !all {
            let found = self.recent(GRANT_ACTIVE, -1, in_force, json!({ ":now": n(now_us) }))?;
            return Ok(found.iter().map(item::read_grant).collect());
        }
        let mut found = self.recent(GRANT_ACTIVE, -1, "", json!({}))?;
        found.extend(self.recent(GRANT_ENDED, -1, "", json!({}))?);
        found.sort_by_cached_key(|i| item::get_s(i, "order"));
        Ok(found.iter().map(item::read_grant).collect())
    }

    fn grant(&self, id: &str) -> Result<Option<Grant>, ApprovalError> {
        Ok(self
            .get_item(item::grant_key(id))?
            .map(|i| item::read_grant(&i)))
    }

    /// Revokes grant `id` if it is still in force; false if it was not
    /// (or another agent revoked it first).
    fn revoke_grant(&self, id: &str, by: &str, why: &str, now: i64) -> Result<bool, ApprovalError> {
        let r = self.call(
            "UpdateItem",
            json!({
                "Key": item::grant_key(id),
                "UpdateExpression": "SET revoked_us = :now, revoked_by = :by, \
                                     revoke_reason = :r, ended_recorded = :one, #k = :ended",
                "ExpressionAttributeNames": { "#k": "kind" },
                "ConditionExpression": "attribute_exists(pk) AND attribute_not_exists(revoked_us) \
                                        AND expires_us > :now",
                "ExpressionAttributeValues": {
                    ":now": n(now), ":by": s(by), ":r": s(why), ":one": n(1),
                    ":ended": s(GRANT_ENDED),
                },
            }),
        );
        match r {
            Ok(_) => Ok(true),
            Err(e) if e.conditional() => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Grants past their TTL whose end no agent has recorded yet; each is
    /// marked recorded by a conditional write, and returned only if this
    /// agent's write won.
    fn take_expired_grants(&self, now_us: i64) -> Result<Vec<Grant>, ApprovalError> {
        let filter = "ended_recorded = :zero AND expires_us <= :now";
        let values = json!({ ":zero": n(0), ":now": n(now_us) });
        let mut won = Vec::new();
        for i in self.recent(GRANT_ACTIVE, -1, filter, values)? {
            let g = item::read_grant(&i);
            let r = self.call(
                "UpdateItem",
                json!({
                    "Key": item::grant_key(&g.id),
                    "UpdateExpression": "SET ended_recorded = :one, #k = :ended",
                    "ConditionExpression": "ended_recorded = :zero",
                    "ExpressionAttributeNames": { "#k": "kind" },
                    "ExpressionAttributeValues": {
                        ":zero": n(0), ":one": n(1), ":ended": s(GRANT_ENDED),
                    },
                }),
            );
            match r {
                Ok(_) => won.push(g),
                Err(e) if e.conditional() => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(won)
    }
}
