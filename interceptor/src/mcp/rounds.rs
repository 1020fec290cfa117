//! Links the round trips of one MCP 2026-07-28 multi round-trip call
//! (MRTR) in the record. A server that needs input answers a call with
//! `resultType: "input_required"`; the client then repeats the call with a
//! new JSON-RPC id, adding `inputResponses` (and echoing `requestState`).
//! Nothing on the wire names the first call, so the agent pairs by what it
//! saw: when an `input_required` answer goes to the client, it remembers
//!
//!   (caller, server address:port, method, target, SHA-256 of the params
//!    without `_meta`, `inputResponses`, `requestState`, SHA-256 of the
//!    `requestState` the server sent, if any) -> the first call's `call_id`
//!
//! and a later request of one of the three MRTR methods that carries
//! `inputResponses` or `requestState` and has the same key gets that id
//! in `follows`. A retry answered `input_required` again is remembered
//! under its own key with the same first call, so every round of one
//! logical call names the first (`call_id = X OR follows = X`). The rows
//! of the input requests an answer carries (`stream::mrtr`) name it too.
//!
//! Limits: only hashes are kept, at most [`MAX_ENTRIES`] for at most
//! [`TTL`] (the oldest go first), in memory: a retry after that, after a
//! restart or through another agent is not linked (its row is complete,
//! only `follows` is null). Without a `requestState`, two identical calls
//! of one caller both waiting for input are told apart only by order: the
//! later `input_required` wins. `follows` is the agent's inference, not
//! the client's word.

use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, Instant},
};

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::{
    jsonrpc::{
        Message, canonical,
        mcp_names::{INPUT_RESPONSES, REQUEST_STATE, call_params},
    },
    pipeline::{ExchangeEvent, call::arguments_sha256},
};

/// How many first calls are remembered at most.
pub const MAX_ENTRIES: usize = 4096;
/// How long a client may take to answer an `input_required` (a person
/// filling in an elicitation form) and still be linked.
pub const TTL: Duration = Duration::from_secs(15 * 60);

/// The methods whose results may ask for input (the spec's MRTR carriers).
const METHODS: &[&str] = &["tools/call", "resources/read", "prompts/get"];
/// The params that make a request a retry.
const RETRY_PARAMS: &[&str] = &[INPUT_RESPONSES, REQUEST_STATE];

/// The remembered first calls, by round key.
#[derive(Default)]
pub struct Rounds {
    inner: Mutex<HashMap<String, (String, Instant)>>,
}

impl Rounds {
    /// After `req` was answered with `answer`, an `input_required` result
    /// the client gets: remembers `req`'s first call for its retry.
    pub fn remember(&self, req: &ExchangeEvent, answer: &Message) {
        let Some(root) = req
            .meta
            .follows
            .clone()
            .or_else(|| req.meta.call_id.clone())
        else {
            return;
        };
        let state = answer.result().and_then(|r| r.get(REQUEST_STATE));
        let Some(key) = key(req, state) else { return };
        let now = Instant::now();
        let mut map = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= MAX_ENTRIES && !map.contains_key(&key) {
            map.retain(|_, (_, at)| now.duration_since(*at) < TTL);
        }
        if map.len() >= MAX_ENTRIES
            && !map.contains_key(&key)
            && let Some(oldest) = map
                .iter()
                .min_by_key(|(_, (_, at))| *at)
                .map(|(k, _)| k.clone())
        {
            map.remove(&oldest);
        }
        map.insert(key, (root, now));
    }

    /// The first call `ev` (a client request) continues, if it is an MRTR
    /// retry of a call remembered here.
    pub fn follows(&self, ev: &ExchangeEvent) -> Option<String> {
        let params = ev.params.as_ref()?;
        if !RETRY_PARAMS.iter().any(|k| params.get(k).is_some()) {
            return None;
        }
        let key = key(ev, params.get(REQUEST_STATE))?;
        let map = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        map.get(&key)
            .filter(|(_, at)| at.elapsed() < TTL)
            .map(|(root, _)| root.clone())
    }
}

/// The round key of a call (see the module doc); `None` for a method that
/// takes no input rounds or a call without params.
fn key(ev: &ExchangeEvent, state: Option<&Value>) -> Option<String> {
    let method = ev.method.as_deref().filter(|m| METHODS.contains(m))?;
    let params = ev.params.as_ref().filter(|p| p.is_object())?;
    let parts = json!([
        ev.caller.as_deref().map(|c| c.principal()),
        ev.orig_dst,
        method,
        ev.target,
        arguments_sha256(&call_params(params.clone())),
        state.map(arguments_sha256),
    ]);
    Some(hex::encode(Sha256::digest(canonical(&parts).as_bytes())))
}

#[cfg(test)]
mod tests;
