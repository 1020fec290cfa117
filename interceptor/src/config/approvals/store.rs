//! `[approvals] store`: where approvals and grants live, and
//! `[approvals.dynamodb]`: how a fleet's shared table is reached.

use educe::Educe;
use serde::{Deserialize, Serialize};

use super::super::ValidationError::{self, Invalid};

/// `[approvals.dynamodb]`: the shared table's region and endpoint (else
/// from the AWS environment, as credentials are), and how often an agent
/// looks for what other agents decided.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Educe)]
#[educe(Default)]
#[serde(deny_unknown_fields, default)]
pub struct DynamoDbStore {
    /// How often held calls and grants are re-read from the table (a vote
    /// or a grant made on another agent applies here within this).
    #[educe(Default = 500)]
    pub poll_ms: u64,
    /// The table's region; unset: `AWS_REGION`, `AWS_DEFAULT_REGION`, else
    /// `us-east-1`.
    pub region: Option<String>,
    /// A DynamoDB-compatible endpoint (a VPC endpoint, moto); unset:
    /// `AWS_ENDPOINT_URL_DYNAMODB`, `AWS_ENDPOINT_URL`, else the region's.
    pub endpoint: Option<String>,
}

/// Where approvals and grants live, as `approvals.store` names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApprovalStore {
    /// `sqlite`: the file `approvals.db`, this agent's own.
    Sqlite,
    /// `dynamodb://TABLE`: one table that a fleet of agents shares.
    DynamoDb {
        /// The table's name.
        table: String,
    },
}

impl super::Approvals {
    /// The store `approvals.store` names; the error says what is wrong
    /// with the key.
    pub fn store_kind(&self) -> Result<ApprovalStore, String> {
        if self.store == "sqlite" {
            return Ok(ApprovalStore::Sqlite);
        }
        let Some(table) = self.store.strip_prefix("dynamodb://") else {
            return Err(format!(
                "approvals.store {:?} is neither \"sqlite\" nor \"dynamodb://TABLE-NAME\"",
                self.store
            ));
        };
        // DynamoDB's own rule for table names.
        let ok = (3..=255).contains(&table.len())
            && (table.bytes()).all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
        if !ok {
            return Err(format!(
                "approvals.store {:?}: {table:?} is not a DynamoDB table name (3-255 of a-z A-Z 0-9 _ . -)",
                self.store
            ));
        }
        Ok(ApprovalStore::DynamoDb {
            table: table.into(),
        })
    }
}

pub(super) fn validate(a: &super::Approvals) -> Result<(), ValidationError> {
    a.store_kind().map_err(Invalid)?;
    let d = &a.dynamodb;
    if let Some(ep) = &d.endpoint
        && !(ep.starts_with("http://") || ep.starts_with("https://"))
    {
        return Err(Invalid(format!(
            "approvals.dynamodb.endpoint {ep:?} is not an http:// or https:// URL"
        )));
    }
    if d.region.as_ref().is_some_and(|r| r.trim().is_empty()) {
        return Err(Invalid("approvals.dynamodb.region is empty".into()));
    }
    if !(100..=60_000).contains(&d.poll_ms) {
        return Err(Invalid(format!(
            "approvals.dynamodb.poll_ms {} must be between 100 and 60000",
            d.poll_ms
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::ApprovalStore;
    use crate::config::Config;

    const MIN: &str = "[identity]\nallow_anonymous = true\n[[intercept.ports]]\nport = 8080\n";

    fn parse(extra: &str) -> Result<Config, String> {
        Config::parse(&format!("{MIN}{extra}"), Path::new("t.toml")).map_err(|e| e.to_string())
    }

    #[test]
    fn the_store_is_sqlite_unless_a_table_is_named() {
        let cfg = parse("").unwrap();
        assert_eq!(cfg.approvals.store_kind(), Ok(ApprovalStore::Sqlite));
        assert_eq!(cfg.approvals.dynamodb.poll_ms, 500);
        let cfg = parse(
            "[approvals]\nstore = \"dynamodb://mcpi-approvals\"\n[approvals.dynamodb]\n\
             region = \"eu-west-1\"\nendpoint = \"http://127.0.0.1:5000\"\npoll_ms = 250\n",
        )
        .unwrap();
        assert_eq!(
            cfg.approvals.store_kind(),
            Ok(ApprovalStore::DynamoDb {
                table: "mcpi-approvals".into()
            })
        );
        for (text, want) in [
            ("[approvals]\nstore = \"postgres://x\"\n", "approvals.store"),
            (
                "[approvals]\nstore = \"dynamodb://a b\"\n",
                "not a DynamoDB table name",
            ),
            ("[approvals]\nstore = \"dynamodb://\"\n", "approvals.store"),
            (
                "[approvals.dynamodb]\nendpoint = \"ftp://x\"\n",
                "approvals.dynamodb.endpoint",
            ),
            (
                "[approvals.dynamodb]\npoll_ms = 10\n",
                "approvals.dynamodb.poll_ms",
            ),
            ("[approvals.dynamodb]\ntable = \"t\"\n", "unknown field"),
        ] {
            let err = parse(text).expect_err(text);
            assert!(err.contains(want), "{text}: {err}");
        }
    }
}
