//! Grants in the DynamoDB table. A grant ends once: its revocation and the
//! record of its expiry are conditional writes, so of the agents racing
//! to record an end exactly one does (and audits it).

use serde_json::json;

use super::{
    DynamoDb,
    item::{self, n, s},
};
use crate::approval::{ApprovalError, Grant};

impl DynamoDb {
    pub(super) fn put_grant(&self, g: &Grant) -> Result<(), ApprovalError> {
        self.call(
            "PutItem",
            json!({ "Item": item::grant(g), "ConditionExpression": "attribute_not_exists(pk)" }),
        )?;
        Ok(())
    }

    /// Every grant (`all`) or those in force at `now_us`, oldest first.
    /// The whole `grant` side of the index is read: grants are few (people
    /// add them by hand), and ended ones leave with the table's TTL.
    pub(super) fn list_grants(&self, now_us: i64, all: bool) -> Result<Vec<Grant>, ApprovalError> {
        let (filter, values) = if all {
            ("", json!({}))
        } else {
            (
                "attribute_not_exists(revoked_us) AND expires_us > :now",
                json!({ ":now": n(now_us) }),
            )
        };
        let found = self.recent("grant", -1, filter, values)?;
        Ok(found.iter().map(item::read_grant).collect())
    }

    pub(super) fn get_grant(&self, id: &str) -> Result<Option<Grant>, ApprovalError> {
        Ok(self
            .get_item(item::grant_key(id))?
            .map(|i| item::read_grant(&i)))
    }

    /// Revokes grant `id` if it is still in force; false if it was not
    /// (or another agent revoked it first).
    pub(super) fn revoke(
        &self,
        id: &str,
        by: &str,
        reason: &str,
        now_us: i64,
    ) -> Result<bool, ApprovalError> {
        let r = self.call(
            "UpdateItem",
            json!({
                "Key": item::grant_key(id),
                "UpdateExpression": "SET revoked_us = :now, revoked_by = :by, \
                                     revoke_reason = :r, ended_recorded = :one",
                "ConditionExpression": "attribute_exists(pk) AND attribute_not_exists(revoked_us) \
                                        AND expires_us > :now",
                "ExpressionAttributeValues": {
                    ":now": n(now_us), ":by": s(by), ":r": s(reason), ":one": n(1),
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
    pub(super) fn take_expired(&self, now_us: i64) -> Result<Vec<Grant>, ApprovalError> {
        let filter = "ended_recorded = :zero AND expires_us <= :now";
        let values = json!({ ":zero": n(0), ":now": n(now_us) });
        let mut won = Vec::new();
        for i in self.recent("grant", -1, filter, values)? {
            let g = item::read_grant(&i);
            let r = self.call(
                "UpdateItem",
                json!({
                    "Key": item::grant_key(&g.id),
                    "UpdateExpression": "SET ended_recorded = :one",
                    "ConditionExpression": "ended_recorded = :zero",
                    "ExpressionAttributeValues": { ":zero": n(0), ":one": n(1) },
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
