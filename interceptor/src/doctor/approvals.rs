//! The `approvals-store` check: with `approvals.store = "dynamodb://..."`,
//! can this host, with the credentials the agent would use, describe the
//! table, and does it have the keys and indexes the agent queries? The
//! same test the agent makes at start (where a failure stops it).

use super::{Check, fail, ok};
use crate::{
    approval::store::{DynamoDb, dynamo::Target},
    config::{ApprovalStore, Config},
};

/// No check with SQLite (the file is checked with the other paths); else
/// one.
pub fn checks(cfg: &Config) -> Vec<Check> {
    let table = match cfg.approvals.store_kind() {
        Ok(ApprovalStore::Sqlite) => return Vec::new(),
        Ok(ApprovalStore::DynamoDb { table }) => table,
        Err(e) => return vec![fail("approvals-store", e, "fix approvals.store")],
    };
    let t = Target::resolve(&table, &cfg.approvals.dynamodb);
    let host = cfg.audit.host_name();
    let at = format!(
        "table {table} (region {}, endpoint {})",
        t.region, t.endpoint
    );
    match DynamoDb::open(&t, &host, cfg) {
        Ok(_) => vec![ok(
            "approvals-store",
            format!("{at}: active, keys and indexes as expected"),
        )],
        Err(e) => vec![fail(
            "approvals-store",
            e.to_string(),
            "see docs/approvals.md, \"A fleet: one queue on DynamoDB\"",
        )],
    }
}
