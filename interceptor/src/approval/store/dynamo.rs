//! Approvals, votes and grants in one DynamoDB table that a fleet of
//! agents shares (`approvals.store = "dynamodb://TABLE"`).
//!
//! Layout (the table itself is made by CloudFormation; [`create_table`]
//! makes the same for tests): keys `pk`/`sk`; an approval at
//! `apr#<id>`/`a`, each vote also at `apr#<id>`/`v#<approver>` (written
//! only if absent, in one transaction with its copy in the approval's
//! `votes` list: one vote per approver, and one consistent read sees the
//! approval with every vote); a grant at `grt#<id>`/`g`; the
//! `requestState` key at `secret#request_state_key`/`s`. Index
//! `by_kind` (`kind`, `order`) lists approvals and grants in creation
//! order; `by_digest` (`digest`, `created_us`) finds a retried call.
//!
//! Reads of one item are consistent; index reads are not, so every
//! decision rests on a conditional write (`status = :from`, a grant not
//! yet revoked or recorded): of two agents racing, one wins, as in SQLite.

mod client;
mod grants;
mod item;
mod lease;
mod table;

use serde_json::{Value, json};

pub use lease::{LEASE_US, TRY_US};
pub use table::create_table;

use self::{
    client::Client,
    item::{Item, get_s, n, s},
};
use super::{Backend, Window};
use crate::{
    approval::{
        Approval, ApprovalError, Vote,
        state::{Approved, Move, Pending, Status},
    },
    config::{Config, DynamoDbStore},
    pipeline::event::now_us,
};

/// Why the DynamoDB store failed.
#[derive(Debug, thiserror::Error)]
pub enum DynamoError {
    /// DynamoDB answered with an error.
    #[error("DynamoDB {op}: {kind}: {message}")]
    Aws {
        /// The operation (e.g. `UpdateItem`).
        op: &'static str,
        /// The error type (e.g. `ConditionalCheckFailedException`).
        kind: String,
        /// DynamoDB's message.
        message: String,
        /// A cancelled transaction's reason codes, one per action.
        cancelled: Vec<String>,
    },
    /// No answer: the request could not be sent or read.
    #[error("DynamoDB {op}: {reason}")]
    Http {
        /// The operation.
        op: &'static str,
        /// What went wrong.
        reason: String,
    },
    /// No answer in time.
    #[error("DynamoDB {0}: no answer within {t:?}", t = client::CALL_TIMEOUT)]
    Timeout(&'static str),
    /// The client could not be set up.
    #[error("DynamoDB client: {0}")]
    Client(String),
    /// The table cannot be used: the agent refuses to start.
    #[error(
        "approvals.store: DynamoDB table {table:?} (region {region}, endpoint {endpoint}) cannot be used: {reason}. Fix: create the table (docs/approvals.md, \"A fleet: one queue on DynamoDB\": keys pk/sk, indexes by_kind and by_digest), check approvals.dynamodb.region/endpoint and that the agent's AWS credentials may use it"
    )]
    Unusable {
        /// The table's name.
        table: String,
        /// The region used.
        region: String,
        /// The endpoint used.
        endpoint: String,
        /// What failed.
        reason: String,
    },
}

impl DynamoError {
    /// A condition of the write did not hold (someone else wrote first).
    fn conditional(&self) -> bool {
        matches!(self, Self::Aws { kind, .. } if kind == "ConditionalCheckFailedException")
    }
}

impl From<DynamoError> for ApprovalError {
    fn from(e: DynamoError) -> Self {
        match e {
            DynamoError::Unusable { .. } => Self::Unusable(Box::new(e)),
            e => Self::Store(e.to_string()),
        }
    }
}

/// Where the table is: its name, region and endpoint.
#[derive(Clone)]
pub struct Target {
    /// The table's name.
    pub table: String,
    /// The region requests are signed for.
    pub region: String,
    /// The endpoint URL requests go to.
    pub endpoint: String,
    /// An explicit key id and secret (tests against moto); `None`: the
    /// AWS credential chain, as the audit upload uses it.
    pub key: Option<(String, String)>,
}

impl Target {
    /// `[approvals.dynamodb]`, else the AWS environment (`AWS_REGION`,
    /// `AWS_DEFAULT_REGION`; `AWS_ENDPOINT_URL_DYNAMODB`,
    /// `AWS_ENDPOINT_URL`), else `us-east-1` and its regional endpoint.
    pub fn resolve(table: &str, d: &DynamoDbStore) -> Self {
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
        let region = (d.region.clone())
            .or_else(|| env("AWS_REGION"))
            .or_else(|| env("AWS_DEFAULT_REGION"))
            .unwrap_or_else(|| "us-east-1".into());
        let endpoint = (d.endpoint.clone())
            .or_else(|| env("AWS_ENDPOINT_URL_DYNAMODB"))
            .or_else(|| env("AWS_ENDPOINT_URL"))
            .unwrap_or_else(|| format!("https://dynamodb.{region}.amazonaws.com"));
        Self {
            table: table.into(),
            region,
            endpoint,
            key: None,
        }
    }
}

/// The DynamoDB store, as one agent (`host`) of the fleet uses it.
pub struct DynamoDb {
    client: Client,
    table: String,
    host: String,
    /// Index reads for pending and approved requests look back this far:
    /// the longest a request can wait and then stay usable, and a day.
    window_us: i64,
    /// How long after its deadline an approval may still be used.
    keep_us: i64,
    /// Whose turn it is to sweep ([`lease`]).
    lease: lease::Lease,
}

fn secs(s: u64) -> i64 {
    i64::try_from(s.saturating_mul(1_000_000)).unwrap_or(i64::MAX)
}

impl DynamoDb {
    /// Connects to the table for `host` and checks that it is there and
    /// usable (DescribeTable); else [`DynamoError::Unusable`].
    pub fn open(t: &Target, host: &str, cfg: &Config) -> Result<Self, DynamoError> {
        let a = &cfg.approvals;
        let wait = secs(a.hold_timeout_seconds.max(a.pending_seconds));
        let this = Self {
            client: Client::start(t)?,
            table: t.table.clone(),
            host: host.into(),
            window_us: wait + secs(a.valid_seconds) + secs(24 * 3600),
            keep_us: secs(a.valid_seconds),
            lease: lease::Lease::default(),
        };
        let unusable = |reason: String| DynamoError::Unusable {
            table: t.table.clone(),
            region: t.region.clone(),
            endpoint: t.endpoint.clone(),
            reason,
        };
        let d = (this
            .client
            .call("DescribeTable", json!({ "TableName": t.table })))
        .map_err(|e| unusable(e.to_string()))?;
        let status = d["Table"]["TableStatus"].as_str().unwrap_or("");
        if !matches!(status, "ACTIVE" | "UPDATING") {
            return Err(unusable(format!("the table is {status:?}, not ACTIVE")));
        }
        table::check_indexes(&d).map_err(unusable)?;
        Ok(this)
    }

    fn call(&self, op: &'static str, mut body: Value) -> Result<Value, DynamoError> {
        body["TableName"] = json!(self.table);
        self.client.call(op, body)
    }

    /// One item by key, read consistently.
    fn get_item(&self, key: Value) -> Result<Option<Item>, ApprovalError> {
        let v = self.call("GetItem", json!({ "Key": key, "ConsistentRead": true }))?;
        Ok(v.get("Item").cloned().map(item::as_item))
    }

    /// Every item `q` (a Query request) finds, page after page, up to
    /// `max`.
    fn query(&self, mut q: Value, max: usize) -> Result<Vec<Item>, ApprovalError> {
        let mut out = Vec::new();
        loop {
            let v = self.call("Query", q.clone())?;
            if let Some(items) = v["Items"].as_array() {
                out.extend(items.iter().cloned().map(item::as_item));
            }
            match v.get("LastEvaluatedKey") {
                Some(k) if out.len() < max => q["ExclusiveStartKey"] = k.clone(),
                _ => break,
            }
        }
        out.truncate(max);
        Ok(out)
    }

    /// The items of `by_kind` partition `kind` (e.g. the pending requests,
    /// [`item::approval_kind`]) created after `since_us`, with `filter` (a
    /// FilterExpression over `#m` mode, `#h` host and the `values` given),
    /// oldest first. Only that partition is read (and paid for).
    fn recent(
        &self,
        kind: &str,
        since_us: i64,
        filter: &str,
        mut values: Value,
    ) -> Result<Vec<Item>, ApprovalError> {
        values[":k"] = s(kind);
        values[":o"] = s(&item::order(since_us, ""));
        let mut q = json!({
            "IndexName": "by_kind",
            "KeyConditionExpression": "#k = :k AND #o > :o",
            "ExpressionAttributeNames": {
                "#k": "kind", "#o": "order", "#s": "status", "#m": "mode", "#h": "host",
            },
            "ExpressionAttributeValues": values,
        });
        if !filter.is_empty() {
            q["FilterExpression"] = json!(filter);
        }
        // Unused names are an error to DynamoDB: keep those the query uses.
        let used = format!("#k #o {filter}");
        if let Some(names) = q["ExpressionAttributeNames"].as_object_mut() {
            names.retain(|k, _| used.contains(k.as_str()));
        }
        self.query(q, usize::MAX)
    }

    /// The ids of requests in `status` whose `deadline` attribute is past.
    fn due(
        &self,
        status: Status,
        deadline: &str,
        now_us: i64,
    ) -> Result<Vec<String>, ApprovalError> {
        let since = now_us.saturating_sub(self.window_us);
        let filter = format!("{deadline} <= :now");
        let kind = item::approval_kind(status);
        let found = self.recent(&kind, since, &filter, json!({ ":now": n(now_us) }))?;
        Ok(found.iter().filter_map(|i| get_s(i, "id")).collect())
    }
}

impl Backend for DynamoDb {
    fn sweep_turn(&self, now_us: i64) -> Result<bool, ApprovalError> {
        self.sweep_turn_at(now_us)
    }

    fn state_key(&self) -> Result<[u8; 32], ApprovalError> {
        let key = json!({ "pk": s("secret#request_state_key"), "sk": s("s") });
        let mut fresh = key.clone();
        fresh["value"] = s(&hex::encode(crate::approval::sealed::random_key()));
        // Of two agents starting on a new table, the first write wins.
        let put = self.call(
            "PutItem",
            json!({ "Item": fresh, "ConditionExpression": "attribute_not_exists(pk)" }),
        );
        match put {
            Err(e) if !e.conditional() => return Err(e.into()),
            _ => {}
        }
        let stored = self.get_item(key)?.and_then(|i| get_s(&i, "value"));
        stored
            .and_then(|v| hex::decode(v).ok())
            .and_then(|v| v.try_into().ok())
            .ok_or_else(|| ApprovalError::Store("the requestState key is not 32 bytes".into()))
    }

    fn insert(&self, a: &Approval) -> Result<(), ApprovalError> {
        let it = item::approval(a, &self.host, self.keep_us);
        self.call(
            "PutItem",
            json!({ "Item": it, "ConditionExpression": "attribute_not_exists(pk)" }),
        )?;
        Ok(())
    }

    fn get(&self, id: &str) -> Result<Option<Approval>, ApprovalError> {
        Ok(self
            .get_item(item::approval_key(id))?
            .map(|i| item::read_approval(&i)))
    }

    fn page(&self, w: &Window<'_>) -> Result<Vec<Approval>, ApprovalError> {
        let (status, after, newest_first, limit) = (w.status, w.after, w.newest_first, w.limit);
        // One partition per status: all statuses is their pages merged.
        let one = status.map(|s| [s]);
        let statuses: &[Status] = one.as_ref().map_or(Status::ALL, |o| o.as_slice());
        let mut items = Vec::new();
        for st in statuses {
            let q = json!({
                "IndexName": "by_kind",
                "KeyConditionExpression": if newest_first { "#k = :k AND #o < :o" } else { "#k = :k AND #o > :o" },
                "ExpressionAttributeNames": { "#k": "kind", "#o": "order" },
                "ExpressionAttributeValues": {
                    ":k": s(&item::approval_kind(*st)), ":o": s(&item::order(after.0, after.1)),
                },
                "ScanIndexForward": !newest_first,
            });
            items.extend(self.query(q, limit as usize)?);
        }
        items.sort_by_cached_key(|i| get_s(i, "order"));
        if newest_first {
            items.reverse();
        }
        items.truncate(limit as usize);
        Ok(items.iter().map(item::read_approval).collect())
    }

    fn count(&self, status: Status) -> Result<u64, ApprovalError> {
        // A pending request is younger than the window (older ones are past
        // their deadline, and the sweep that runs before a count ends them).
        let since = match status {
            Status::Pending => now_us().saturating_sub(self.window_us),
            _ => -1,
        };
        let found = self.recent(&item::approval_kind(status), since, "", json!({}))?;
        Ok(found.len() as u64)
    }

    fn pending_of(&self, issuer: &str, subject: &str, now_us: i64) -> Result<u32, ApprovalError> {
        let since = now_us.saturating_sub(self.window_us);
        let filter = "issuer = :i AND subject = :u AND expires_us > :now";
        let values = json!({ ":i": s(issuer), ":u": s(subject), ":now": n(now_us) });
        let found = self.recent(&item::approval_kind(Status::Pending), since, filter, values)?;
        Ok(u32::try_from(found.len()).unwrap_or(u32::MAX))
    }

    fn by_digest(&self, digest: &str, status: Status) -> Result<Option<Approval>, ApprovalError> {
        let q = json!({
            "IndexName": "by_digest",
            "KeyConditionExpression": "digest = :d",
            "ExpressionAttributeValues": { ":d": s(digest) },
            "ScanIndexForward": false,
        });
        // The index may lag: each candidate is read again consistently,
        // and the caller's move is conditional anyway.
        for c in self.query(q, 16)? {
            let Some(id) = get_s(&c, "id") else { continue };
            if let Some(a) = self.get(&id)?.filter(|a| a.status == status) {
                return Ok(Some(a));
            }
        }
        Ok(None)
    }

    fn add_vote(&self, id: &str, v: &Vote) -> Result<(), ApprovalError> {
        let mut guard = item::as_item(item::vote_key(id, &v.approver));
        guard.insert("at_us".into(), n(v.at_us));
        let t = &self.table;
        let r = self.client.call(
            "TransactWriteItems",
            json!({ "TransactItems": [
                { "Put": { "TableName": t, "Item": guard, "ConditionExpression": "attribute_not_exists(pk)" } },
                { "Update": {
                    "TableName": t,
                    "Key": item::approval_key(id),
                    "ConditionExpression": "attribute_exists(pk)",
                    "UpdateExpression": "SET votes = list_append(if_not_exists(votes, :e), :v)",
                    "ExpressionAttributeValues": { ":e": { "L": [] }, ":v": item::vote(v) },
                } },
            ] }),
        );
        match r {
            Ok(_) => Ok(()),
            Err(DynamoError::Aws {
                kind, cancelled, ..
            }) if kind == "TransactionCanceledException"
                && cancelled.first().map(String::as_str) == Some("ConditionalCheckFailed") =>
            {
                Err(ApprovalError::AlreadyVoted(v.approver.clone()))
            }
            Err(e) => Err(e.into()),
        }
    }

    fn transition(&self, id: &str, m: &Move, reason: &str) -> Result<bool, ApprovalError> {
        // The item moves to its new status's `by_kind` partition.
        let mut set = "#s = :to, #k = :kind, decided_us = if_not_exists(decided_us, :now), \
             reason = :r"
            .to_string();
        let mut values = json!({
            ":from": s(m.from().as_str()), ":to": s(m.to().as_str()),
            ":kind": s(&item::approval_kind(m.to())), ":now": n(now_us()), ":r": s(reason),
        });
        if let Some(v) = m.valid_until_us() {
            set.push_str(", valid_until_us = :v");
            values[":v"] = n(v);
        }
        let r = self.call(
            "UpdateItem",
            json!({
                "Key": item::approval_key(id),
                "UpdateExpression": format!("SET {set}"),
                "ConditionExpression": "#s = :from",
                "ExpressionAttributeNames": { "#s": "status", "#k": "kind" },
                "ExpressionAttributeValues": values,
            }),
        );
        match r {
            Ok(_) => Ok(true),
            Err(e) if e.conditional() => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    fn due_pending(&self, now_us: i64) -> Result<Vec<Pending>, ApprovalError> {
        let ids = self.due(Status::Pending, "expires_us", now_us)?;
        Ok(ids.into_iter().map(Pending::stored).collect())
    }

    fn due_approved(&self, now_us: i64) -> Result<Vec<Approved>, ApprovalError> {
        let ids = self.due(Status::Approved, "valid_until_us", now_us)?;
        Ok(ids.into_iter().map(Approved::stored).collect())
    }

    fn pending_holds(&self) -> Result<Vec<Pending>, ApprovalError> {
        let since = now_us().saturating_sub(self.window_us);
        let filter = "#m = :m AND #h = :h";
        let values = json!({ ":m": s("hold"), ":h": s(&self.host) });
        let found = self.recent(&item::approval_kind(Status::Pending), since, filter, values)?;
        Ok(found
            .iter()
            .filter_map(|i| get_s(i, "id"))
            .map(Pending::stored)
            .collect())
    }
}
