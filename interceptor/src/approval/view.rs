//! What approvers see: listings in pages (oldest first, so a flood cannot
//! push an older request out of sight), and the real arguments of a call
//! they judge, which the agent holds in memory only while the request is
//! pending (never on disk: the database and audit keep them masked).
//! Every look at real values is an audit row naming who looked.

use std::collections::{HashMap, VecDeque};

use serde::Serialize;
use serde_json::Value;

use super::{
    Actor, Approval, ApprovalError, Approvals, Call, Status, store::Window, vote::may_see,
};
use crate::pipeline::call::arguments_sha256;

/// Real arguments held at once, at most (oldest dropped first)...
const MAX_HELD: usize = 4096;
/// ...and their canonical size in total.
const MAX_HELD_BYTES: usize = 64 << 20;
/// The longest page a listing returns.
pub const MAX_PAGE: u32 = 500;
/// Rows read per step while filtering what a caller may see.
const SCAN: u32 = 200;

/// The real (unmasked) arguments of pending requests, by approval id:
/// bounded in count and bytes; lost on restart by design.
#[derive(Default)]
pub(super) struct Held {
    by_id: HashMap<String, String>,
    order: VecDeque<String>,
    bytes: usize,
}

impl Held {
    fn put(&mut self, id: &str, canonical: String) {
        self.remove(id);
        self.bytes += canonical.len();
        self.by_id.insert(id.to_string(), canonical);
        self.order.push_back(id.to_string());
        while self.by_id.len() > MAX_HELD || self.bytes > MAX_HELD_BYTES {
            let Some(old) = self.order.pop_front() else {
                break;
            };
            if let Some(v) = self.by_id.remove(&old) {
                self.bytes -= v.len();
            }
        }
    }

    pub(super) fn remove(&mut self, id: &str) {
        if let Some(v) = self.by_id.remove(id) {
            self.bytes -= v.len();
            self.order.retain(|o| o != id);
        }
    }
}

/// One page of a listing; `next_cursor` continues it (`None`: the end).
#[derive(Debug, Serialize)]
pub struct Page {
    /// The approvals on this page.
    pub approvals: Vec<Approval>,
    /// The cursor for the next page, if there is one.
    pub next_cursor: Option<String>,
}

/// A listing request, as `GET /v1/approvals` takes it.
#[derive(Debug, Clone, Default)]
pub struct PageQuery {
    /// `None`: every status.
    pub status: Option<Status>,
    /// The previous page's `next_cursor`.
    pub cursor: Option<String>,
    /// The most approvals to return.
    pub limit: u32,
    /// Whether to list newest first.
    pub newest_first: bool,
}

fn cursor_of(a: &Approval) -> String {
    format!("{}.{}", a.created_us, a.id)
}

fn parse_cursor(c: &str) -> Result<(i64, String), ApprovalError> {
    c.split_once('.')
        .and_then(|(t, id)| Some((t.parse().ok()?, id.to_string())))
        .ok_or_else(|| ApprovalError::Invalid(format!("cursor {c:?} is not one this agent gave")))
}

impl Approvals {
    /// One page of what `who` may see (its own requests, and those its
    /// groups may approve).
    pub fn page_for(&self, who: &Actor, q: &PageQuery) -> Result<Page, ApprovalError> {
        if q.limit == 0 || q.limit > MAX_PAGE {
            return Err(ApprovalError::Invalid(format!(
                "limit must be between 1 and {MAX_PAGE}"
            )));
        }
        self.sweep();
        let mut at = match &q.cursor {
            Some(c) => parse_cursor(c)?,
            None if q.newest_first => (i64::MAX, String::new()),
            None => (i64::MIN, String::new()),
        };
        let want = q.limit as usize;
        let mut out: Vec<Approval> = Vec::new();
        // One more than the page, to know whether another page follows.
        while out.len() <= want {
            let rows = self.db().page(&Window {
                status: q.status,
                after: (at.0, &at.1),
                newest_first: q.newest_first,
                limit: SCAN,
            })?;
            let end = rows.len() < SCAN as usize;
            if let Some(last) = rows.last() {
                at = (last.created_us, last.id.clone());
            }
            out.extend(rows.into_iter().filter(|a| may_see(who, a)));
            if end {
                break;
            }
        }
        let next_cursor = (out.len() > want).then(|| cursor_of(&out[want - 1]));
        out.truncate(want);
        Ok(Page {
            approvals: out,
            next_cursor,
        })
    }

    /// Everything `who` may see with `status` (every page).
    pub fn list_for(
        &self,
        who: &Actor,
        status: Option<Status>,
    ) -> Result<Vec<Approval>, ApprovalError> {
        let mut q = PageQuery {
            status,
            limit: MAX_PAGE,
            ..PageQuery::default()
        };
        let mut all = Vec::new();
        loop {
            let p = self.page_for(who, &q)?;
            all.extend(p.approvals);
            match p.next_cursor {
                Some(c) => q.cursor = Some(c),
                None => return Ok(all),
            }
        }
    }

    /// Keeps the real arguments of a pending request (a retry-mode caller
    /// asking again refreshes them, e.g. after a restart).
    pub(super) fn hold_values(&self, id: &str, call: &Call) {
        if let Some(v) = &call.arguments {
            let mut h = self.held.lock().unwrap_or_else(|p| p.into_inner());
            h.put(id, crate::jsonrpc::canonical(v));
        }
    }

    pub(super) fn drop_values(&self, id: &str) {
        self.held
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id);
    }

    /// The real arguments of `a`: held ones, or the stored ones when
    /// masking changed nothing (their digest is the call's).
    fn real_values(&self, a: &Approval) -> Option<Value> {
        if a.call.arguments_sha256.is_empty() {
            return Some(Value::Null);
        }
        let held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(v) = held.by_id.get(&a.id) {
            return serde_json::from_str(v).ok();
        }
        a.arguments
            .as_ref()
            .filter(|v| arguments_sha256(v) == a.call.arguments_sha256)
            .cloned()
    }

    /// Refuses a yes on a call whose real arguments nobody can see now.
    pub(super) fn values_known(&self, a: &Approval) -> Result<(), ApprovalError> {
        match self.real_values(a) {
            Some(_) => Ok(()),
            None => Err(ApprovalError::ValuesGone(a.id.clone())),
        }
    }

    /// The real arguments of `id` for the caller or an approver of it
    /// (anyone else: not found), recorded as `approval_values_viewed`
    /// (who and when; never the values).
    pub fn values_for(&self, who: &Actor, id: &str) -> Result<Value, ApprovalError> {
        let a = self.get_for(who, id)?;
        let args = self
            .real_values(&a)
            .ok_or_else(|| ApprovalError::ValuesGone(a.id.clone()))?;
        // The row says who looked, never what they saw (not even masked).
        let unseen = Approval {
            arguments: None,
            ..a.clone()
        };
        let mut r = super::step(
            "approval_values_viewed",
            &unseen,
            None,
            format!(
                "{} ({}) viewed the real arguments of {}",
                who.subject,
                who.via,
                a.what()
            ),
        );
        r.approvers = vec![who.subject.clone()];
        self.events.emit(r);
        tracing::info!(approval = %a.id, viewer = %who.subject, via = %who.via, "approval values viewed");
        Ok(serde_json::json!({
            "id": a.id,
            "status": a.status.as_str(),
            "arguments": args,
            "arguments_sha256": a.call.arguments_sha256,
        }))
    }
}
