//! The HTTP face of the identity stage: 401/403/503 answers that follow
//! the MCP authorization spec, and the protected resource metadata
//! (RFC 9728) those answers point to.

use http::{HeaderValue, Request, Response, StatusCode, header, request::Parts};
use serde_json::Value;

use crate::{
    identity::{AuthError, Identity},
    proxy::{
        ConnCtx,
        body::ProxyBody,
        http::{json_response, refusal_response},
    },
};

/// RFC 9728 section 3.1: the well-known prefix; the resource's path follows.
pub const METADATA_PATH: &str = "/.well-known/oauth-protected-resource";

/// `scheme://host[:port]` as the client addressed us: the Host header it
/// sent (it reached this port, so it names us), else the destination.
fn origin_of(parts_headers: &http::HeaderMap, ctx: &ConnCtx) -> String {
    let scheme = if ctx.info.tls.is_some() {
        "https"
    } else {
        "http"
    };
    let host = parts_headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| !h.is_empty() && h.bytes().all(|b| b.is_ascii_graphic()))
        .map(str::to_owned)
        .unwrap_or_else(|| ctx.info.orig_dst.to_string());
    format!("{scheme}://{host}")
}

/// Serves the metadata document of the resource at `suffix` (or of the
/// port's first MCP path when the request names none).
pub fn metadata<B>(
    id: &Identity,
    req: &Request<B>,
    ctx: &ConnCtx,
    suffix: &str,
) -> Response<ProxyBody> {
    let path = if suffix.is_empty() || suffix == "/" {
        ctx.rule
            .mcp_paths
            .first()
            .map(String::as_str)
            .unwrap_or("/")
    } else {
        suffix
    };
    let origin = origin_of(req.headers(), ctx);
    let doc = id.metadata(&id.resource(&origin, path));
    let mut r = json_response(StatusCode::OK, &doc);
    // Browser-based MCP clients fetch this cross-origin.
    r.headers_mut().insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    r
}

/// The answer to a request without a usable identity, and the JSON-RPC
/// error it carries (also the audit row's).
pub fn refusal(
    id: &Identity,
    parts: &Parts,
    ctx: &ConnCtx,
    err: &AuthError,
) -> (Response<ProxyBody>, Value) {
    let refusal = err.refusal();
    let error = refusal.error();
    let mut r = refusal_response(&refusal, None);
    // The request body was never read: say the connection ends here, so a
    // client does not send its next request on it (hyper closes it).
    r.headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    match err {
        AuthError::IssuerUnavailable(..) => {
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
        }
        // mTLS only: no bearer scheme to offer, so no challenge that would
        // send a spec-following client off to log in where it cannot.
        _ if !id.has_oauth() => {}
        _ => {
            let origin = origin_of(&parts.headers, ctx);
            let url = id.metadata_url(&origin, parts.uri.path());
            r.headers_mut()
                .insert(header::WWW_AUTHENTICATE, id.challenge(err, &url));
        }
    }
    (r, error)
}
