//! The approval API (JSON over HTTP), the same on the admin socket and
//! the admin listener:
//!
//! ```text
//! GET  /v1/whoami
//! GET  /v1/approvals[?status=pending|approved|...|all]   (default pending)
//!                   [&limit=N (default 50, at most 500)][&cursor=C][&order=oldest|newest]
//!      → {"approvals": [...], "next_cursor": C | null}   oldest first by default
//! GET  /v1/approvals/{id}
//! GET  /v1/approvals/{id}/values    the real arguments (audited: approval_values_viewed)
//! POST /v1/approvals/{id}/approve   {"reason": "..."}
//! POST /v1/approvals/{id}/deny      {"reason": "..."}
//! GET  /v1/grants[?all=true]
//! POST /v1/grants                   {"subject", "tool", "server"?, "ttl_seconds", "reason"}
//! POST /v1/grants/{id}/revoke       {"reason": "..."}
//! GET  /metrics                    Prometheus text (no token needed)
//! GET  /healthz                    200 while serving and the audit writes
//! ```
//!
//! A bearer token must be for `admin.audiences` (not the MCP audiences).
//! Listings show a caller its own requests and grants, and the requests
//! its groups may approve (all grants to a member of `grant_groups`).
//!
//! `/metrics` and `/healthz` answer without a token (counts, no data), so
//! a scraper or load balancer needs no identity. Errors are
//! `{"error": "..."}` with a 4xx/5xx status, and a log line.

use std::{sync::Arc, time::Duration};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use serde::Deserialize;
use serde_json::{Value, json};

use super::State;
use crate::{
    approval::{Actor, ApprovalError, MAX_PAGE, NewGrant, PageQuery, Status, human_key},
    proxy::body::read_limited,
};

const MAX_BODY: usize = 64 * 1024;

/// The body type of every admin API response.
pub type AdminBody = Full<Bytes>;

fn reply(status: StatusCode, v: &Value) -> Response<AdminBody> {
    let mut r = Response::new(Full::new(Bytes::from(v.to_string())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    r
}

fn error(status: StatusCode, message: impl std::fmt::Display) -> Response<AdminBody> {
    reply(status, &json!({ "error": message.to_string() }))
}

fn status_of(e: &ApprovalError) -> StatusCode {
    match e {
        ApprovalError::NotFound(_) | ApprovalError::NoGrant(_) => StatusCode::NOT_FOUND,
        ApprovalError::NotPending(..) | ApprovalError::AlreadyVoted(_) => StatusCode::CONFLICT,
        ApprovalError::SelfApproval(_)
        | ApprovalError::NotApprover { .. }
        | ApprovalError::SelfGrant(_)
        | ApprovalError::NotGranter(_) => StatusCode::FORBIDDEN,
        ApprovalError::Invalid(_) => StatusCode::BAD_REQUEST,
        ApprovalError::ValuesGone(_) => StatusCode::GONE,
        ApprovalError::Cap(_) => StatusCode::TOO_MANY_REQUESTS,
        ApprovalError::Store(_) | ApprovalError::Unusable(_) => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Reason {
    reason: String,
}

/// One admin request. `local`: the socket's user; else a bearer token is
/// required.
pub async fn handle(
    state: &Arc<State>,
    local: Option<Actor>,
    req: Request<Incoming>,
) -> Response<AdminBody> {
    if req.method() == Method::GET {
        match req.uri().path() {
            "/metrics" => {
                let text = state.metrics.render(&state.sources);
                let mut r = Response::new(Full::new(Bytes::from(text)));
                r.headers_mut().insert(
                    header::CONTENT_TYPE,
                    http::HeaderValue::from_static(super::metrics::CONTENT_TYPE),
                );
                return r;
            }
            "/healthz" => {
                let ok = state.sources.audit.as_ref().is_none_or(|a| a.healthy());
                let status = if ok {
                    StatusCode::OK
                } else {
                    StatusCode::SERVICE_UNAVAILABLE
                };
                let what = if ok {
                    "ok"
                } else {
                    "the audit cannot be written"
                };
                return reply(status, &json!({ "status": what, "audit_writing": ok }));
            }
            _ => {}
        }
    }
    let actor = match local {
        Some(a) => a,
        None => match state
            .identity()
            .bearer_caller(req.headers(), &state.admin_audiences())
            .await
        {
            Ok(c) => Actor {
                subject: c.subject.clone(),
                issuer: c.issuer.clone().unwrap_or_default(),
                groups: c.groups.clone(),
                via: format!("oidc:{}", c.issuer.as_deref().unwrap_or_default()),
                human: human_key(c.issuer.as_deref().unwrap_or_default(), &c.subject),
            },
            Err(e) => {
                tracing::info!(path = %req.uri().path(), error = %e, "admin API: no valid bearer token");
                let mut r = error(
                    StatusCode::UNAUTHORIZED,
                    format!("a bearer token from a configured issuer is required: {e}"),
                );
                r.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    http::HeaderValue::from_static("Bearer"),
                );
                return r;
            }
        },
    };
    let (method, path, query) = (
        req.method().clone(),
        req.uri().path().to_string(),
        req.uri().query().unwrap_or_default().to_string(),
    );
    let body = match read_limited(req.into_body(), MAX_BODY, Duration::from_secs(10)).await {
        Ok(b) => b,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("request body: {e}")),
    };
    let r = route(state, &actor, &method, &path, &query, &body);
    if !r.status().is_success() {
        tracing::info!(%method, %path, actor = %actor.subject, via = %actor.via, status = r.status().as_u16(), "admin API request refused");
    }
    r
}

fn parse<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Result<T, String> {
    serde_json::from_slice(body).map_err(|e| format!("request body: {e}"))
}

fn query_param<'a>(query: &'a str, key: &str) -> Option<&'a str> {
    query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == key)
        .map(|(_, v)| v)
}

fn route(
    state: &State,
    actor: &Actor,
    method: &Method,
    path: &str,
    query: &str,
    body: &[u8],
) -> Response<AdminBody> {
    let a = &state.approvals;
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    let done = |r: Result<Value, ApprovalError>| match r {
        Ok(v) => reply(StatusCode::OK, &v),
        Err(e) => error(status_of(&e), e),
    };
    match (method, parts.as_slice()) {
        (&Method::GET, ["v1", "whoami"]) => reply(
            StatusCode::OK,
            &json!({ "subject": actor.subject, "issuer": actor.issuer, "groups": actor.groups, "via": actor.via }),
        ),
        (&Method::GET, ["v1", "approvals"]) => {
            let q = match page_query(query) {
                Ok(q) => q,
                Err(e) => return error(StatusCode::BAD_REQUEST, e),
            };
            done(a.page_for(actor, &q).map(val))
        }
        (&Method::GET, ["v1", "approvals", id]) => done(a.get_for(actor, id).map(val)),
        (&Method::GET, ["v1", "approvals", id, "values"]) => done(a.values_for(actor, id)),
        (&Method::POST, ["v1", "approvals", id, verb @ ("approve" | "deny")]) => {
            let r: Reason = match parse(body) {
                Ok(r) => r,
                Err(e) => return error(StatusCode::BAD_REQUEST, e),
            };
            done(a.vote(id, actor, *verb == "approve", &r.reason).map(val))
        }
        (&Method::GET, ["v1", "grants"]) => {
            let all = query_param(query, "all") == Some("true");
            done(a.grants_list(actor, all).map(val))
        }
        (&Method::POST, ["v1", "grants"]) => {
            let g: NewGrant = match parse(body) {
                Ok(g) => g,
                Err(e) => return error(StatusCode::BAD_REQUEST, e),
            };
            done(a.grant_add(actor, g).map(val))
        }
        (&Method::POST, ["v1", "grants", id, "revoke"]) => {
            let r: Reason = match parse(body) {
                Ok(r) => r,
                Err(e) => return error(StatusCode::BAD_REQUEST, e),
            };
            done(a.grant_revoke(actor, id, &r.reason).map(val))
        }
        _ => error(
            StatusCode::NOT_FOUND,
            format!("no admin endpoint {method} {path}"),
        ),
    }
}

/// `status`, `limit`, `cursor`, `order` of a listing (unknown values are
/// an error, not a default).
fn page_query(query: &str) -> Result<PageQuery, String> {
    let status = match query_param(query, "status").unwrap_or("pending") {
        "all" => None,
        "pending" => Some(Status::Pending),
        "approved" => Some(Status::Approved),
        "denied" => Some(Status::Denied),
        "expired" => Some(Status::Expired),
        "used" => Some(Status::Used),
        "abandoned" => Some(Status::Abandoned),
        "interrupted" => Some(Status::Interrupted),
        other => return Err(format!("unknown status {other:?}")),
    };
    let limit = match query_param(query, "limit") {
        None => 50,
        Some(l) => l
            .parse()
            .ok()
            .filter(|n| (1..=MAX_PAGE).contains(n))
            .ok_or_else(|| format!("limit {l:?}: a number from 1 to {MAX_PAGE}"))?,
    };
    let newest_first = match query_param(query, "order").unwrap_or("oldest") {
        "oldest" => false,
        "newest" => true,
        other => return Err(format!("order {other:?}: oldest or newest")),
    };
    Ok(PageQuery {
        status,
        cursor: query_param(query, "cursor").map(str::to_owned),
        limit,
        newest_first,
    })
}

fn val<T: serde::Serialize>(x: T) -> Value {
    serde_json::to_value(x).unwrap_or_default()
}
