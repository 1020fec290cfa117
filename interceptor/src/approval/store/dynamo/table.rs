//! The table's shape: made here for tests (CloudFormation makes it in
//! production, from the same description in `docs/approvals.md`), and
//! checked at start, so a table missing an index is refused at once
//! rather than failing the first listing.

use serde_json::{Value, json};

use super::{DynamoError, Target, client::Client};

/// The indexes the store queries, with their partition and sort keys.
const INDEXES: &[(&str, &str, &str)] = &[
    ("by_kind", "kind", "order"),
    ("by_digest", "digest", "created_us"),
];

/// Creates the table `t` names (on-demand billing, both indexes with
/// every attribute projected, TTL on `ttl`) and waits until it is active.
pub fn create_table(t: &Target) -> Result<(), DynamoError> {
    let c = Client::start(t)?;
    let index = |(name, pk, sk): &(&str, &str, &str)| {
        json!({
            "IndexName": name,
            "KeySchema": [
                { "AttributeName": pk, "KeyType": "HASH" },
                { "AttributeName": sk, "KeyType": "RANGE" },
            ],
            "Projection": { "ProjectionType": "ALL" },
        })
    };
    let attr = |name: &str, ty: &str| json!({ "AttributeName": name, "AttributeType": ty });
    c.call(
        "CreateTable",
        json!({
            "TableName": t.table,
            "BillingMode": "PAY_PER_REQUEST",
            "KeySchema": [
                { "AttributeName": "pk", "KeyType": "HASH" },
                { "AttributeName": "sk", "KeyType": "RANGE" },
            ],
            "AttributeDefinitions": [
                attr("pk", "S"), attr("sk", "S"), attr("kind", "S"), attr("order", "S"),
                attr("digest", "S"), attr("created_us", "N"),
            ],
            "GlobalSecondaryIndexes": INDEXES.iter().map(index).collect::<Vec<_>>(),
        }),
    )?;
    for _ in 0..100 {
        let d = c.call("DescribeTable", json!({ "TableName": t.table }))?;
        if d["Table"]["TableStatus"] == "ACTIVE" {
            c.call(
                "UpdateTimeToLive",
                json!({
                    "TableName": t.table,
                    "TimeToLiveSpecification": { "Enabled": true, "AttributeName": "ttl" },
                }),
            )?;
            return Ok(());
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    Err(DynamoError::Client(format!(
        "table {} did not become active",
        t.table
    )))
}

/// Refuses a table (a DescribeTable answer) without the keys or indexes
/// the store uses.
pub(super) fn check_indexes(d: &Value) -> Result<(), String> {
    let keys = |schema: &Value| -> Vec<String> {
        (schema.as_array().into_iter().flatten())
            .filter_map(|k| k["AttributeName"].as_str().map(str::to_string))
            .collect()
    };
    let t = &d["Table"];
    if keys(&t["KeySchema"]) != ["pk", "sk"] {
        return Err("its key is not pk (partition) and sk (sort)".into());
    }
    let gsis = t["GlobalSecondaryIndexes"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    for (name, pk, sk) in INDEXES {
        let found = gsis.iter().find(|g| g["IndexName"] == *name);
        match found {
            Some(g) if keys(&g["KeySchema"]) == [*pk, *sk] => {}
            Some(_) => return Err(format!("index {name} is not keyed on {pk} and {sk}")),
            None => return Err(format!("it has no index {name} ({pk}, {sk})")),
        }
    }
    Ok(())
}
