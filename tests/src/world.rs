//! One namespace with a real OIDC issuer, an MCP server that accepts only
//! the agent's own credential, and the agent requiring tokens from that
//! issuer: the setting of the identity and policy end-to-end tests.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    time::Duration,
};

use serde_json::{Value, json};

use crate::{
    Agent, NetNs, Proc, TempDir, bin,
    http::{RawResponse, post_in},
    oidc::Issuer,
    peer::{self, call_with},
    run_in,
};

pub const PORT: &str = "[[intercept.ports]]\nport = 8080\n";
pub const URL: &str = "http://127.0.0.1:8080/mcp";
pub const CLIENT: &str = "mcp-e2e";
pub const UPSTREAM: &str = "Bearer upstream-secret";
/// Where the approvals tests put the admin listener (`admin.listen`).
pub const ADMIN: &str = "127.0.0.1:9443";
/// The admin API's own token audience (the agent's default).
pub const ADMIN_AUD: &str = "mcp-interceptor-admin";

/// `[identity]` requiring tokens from `issuer` (`oidc_extra`: more keys of
/// its `[[identity.oidc]]` entry) and injecting the upstream credential.
pub fn sections(issuer: &Issuer, cred: &std::path::Path, oidc_extra: &str) -> String {
    format!(
        "[identity]\nallow_anonymous = false\n\
         [[identity.oidc]]\nissuer = \"{}\"\naudiences = [\"{CLIENT}\", \"{URL}\"]\n\
         leeway_seconds = 5\njwks_min_refresh_seconds = 1\n{oidc_extra}\n\
         [identity.upstream_credential]\nvalue_file = \"{}\"\n",
        issuer.url,
        cred.display()
    )
}

/// Unix seconds.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// The issuer, a server that accepts only the agent's credential, and the
/// agent requiring tokens from that issuer, in one namespace. Fields drop
/// in order: processes first, the namespace and files last.
pub struct World {
    pub agent: Agent,
    pub server: Proc,
    pub issuer: Issuer,
    pub cred: PathBuf,
    pub ns: NetNs,
    pub dir: TempDir,
}

impl World {
    pub fn new(tag: &str) -> Self {
        Self::with(tag, "", |_| String::new())
    }

    /// Like [`World::new`]; `more` returns whole tables appended to the
    /// agent's config (e.g. `[policy]`), given the test directory.
    pub fn with(
        tag: &str,
        oidc_extra: &str,
        more: impl FnOnce(&std::path::Path) -> String,
    ) -> Self {
        let (ns, dir) = (NetNs::new(tag), TempDir::new(tag));
        let issuer = Issuer::start(&ns, 9400, dir.path());
        issuer.set_user("alice", json!({"groups": ["dev", "oncall"]}));
        let cred = dir.path().join("upstream-credential");
        std::fs::write(&cred, format!("{UPSTREAM}\n")).unwrap();
        let server = peer::server_with(
            ns.name(),
            "127.0.0.1:8080",
            dir.path(),
            &["--log-auth", "--require-auth", UPSTREAM],
        );
        let agent = Agent::start_full(
            &ns,
            dir.path(),
            "",
            PORT,
            "",
            &format!(
                "{}{}",
                sections(&issuer, &cred, oidc_extra),
                more(dir.path())
            ),
            Vec::new(),
        );
        Self {
            agent,
            server,
            issuer,
            cred,
            ns,
            dir,
        }
    }
}

/// One raw JSON-RPC POST to the MCP endpoint with `headers`.
pub fn post_mcp(ns: &NetNs, body: Value, headers: &[String]) -> RawResponse {
    let refs: Vec<&str> = headers.iter().map(String::as_str).collect();
    let addr = SocketAddr::from(([127, 0, 0, 1], 8080));
    post_in(ns, addr, "/mcp", body.to_string().as_bytes(), &refs)
}

/// A raw client's MCP 2026-07-28 stateless request for the steered port
/// 127.0.0.1:8080 (`/mcp`).
pub struct Stateless<'a> {
    /// The JSON-RPC method (and `Mcp-Method`).
    pub method: &'a str,
    /// `Mcp-Name`, for a method that names a tool, resource, prompt or task.
    pub name: Option<&'a str>,
    /// Its per-request client capabilities (`_meta`).
    pub caps: Value,
    /// More header lines (an `Authorization`).
    pub headers: Vec<String>,
}

impl Stateless<'_> {
    /// Sends `params` with id `id` from inside `ns`. Its `_meta` gets the
    /// protocol version, client info `raw`/`1` and `caps`, unless `params`
    /// already has them in its own `_meta` (kept, as are other keys).
    pub fn send(&self, ns: &NetNs, id: impl Into<Value>, mut params: Value) -> RawResponse {
        let mut meta = json!({
            "io.modelcontextprotocol/protocolVersion": "2026-07-28",
            "io.modelcontextprotocol/clientInfo": {"name": "raw", "version": "1"},
            "io.modelcontextprotocol/clientCapabilities": self.caps});
        if let Some(Value::Object(own)) = params.get("_meta") {
            meta.as_object_mut().unwrap().extend(own.clone());
        }
        params["_meta"] = meta;
        let body = json!({"jsonrpc": "2.0", "id": id.into(),
            "method": self.method, "params": params});
        let mut headers = vec![
            "MCP-Protocol-Version: 2026-07-28".to_string(),
            format!("Mcp-Method: {}", self.method),
        ];
        headers.extend(self.name.map(|n| format!("Mcp-Name: {n}")));
        headers.extend(self.headers.iter().cloned());
        post_mcp(ns, body, &headers)
    }
}

/// A token of the issuer's key for `sub` in `groups`, for this world's
/// audience, valid for ten minutes.
pub fn token(issuer: &Issuer, sub: &str, groups: &[&str]) -> String {
    token_for(issuer, CLIENT, sub, groups)
}

/// A token of `issuer` for audience `aud` (e.g. [`ADMIN_AUD`]), valid for
/// ten minutes.
pub fn token_for(issuer: &Issuer, aud: &str, sub: &str, groups: &[&str]) -> String {
    issuer.mint(
        json!({"iss": issuer.url, "aud": aud, "sub": sub, "groups": groups,
               "iat": now(), "exp": now() + 600}),
        Value::Null,
        "key",
    )
}

/// One `Connection: close` POST to the MCP endpoint with a bearer token
/// and, in a session, its id; read to the end (bounded by `limit`).
pub fn post_session(
    ns: &NetNs,
    token: &str,
    sid: Option<&str>,
    body: &Value,
    limit: std::time::Duration,
) -> RawResponse {
    let body = body.to_string();
    let mut req = format!(
        "POST /mcp HTTP/1.1\r\nHost: mcp.test\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nAccept: application/json, text/event-stream\r\n\
         MCP-Protocol-Version: 2025-06-18\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    if let Some(s) = sid {
        req.push_str(&format!("Mcp-Session-Id: {s}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(&body);
    let addr = SocketAddr::from(([127, 0, 0, 1], 8080));
    crate::http::in_netns(ns, move || {
        crate::http::exchange(addr, &[req.as_bytes()], std::time::Duration::ZERO, limit)
    })
}

/// The JSON-RPC messages of an answer, JSON body or SSE events.
pub fn messages(r: &RawResponse) -> Vec<Value> {
    let text = String::from_utf8_lossy(&r.body);
    if let Ok(v) = serde_json::from_str::<Value>(&text) {
        return match v {
            Value::Array(a) => a,
            v => vec![v],
        };
    }
    text.lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .filter_map(|d| serde_json::from_str(d.trim()).ok())
        .collect()
}

/// An ID token for `sub` from the authorization-code flow.
pub fn id_token(issuer: &Issuer, sub: &str, scope: &str) -> String {
    issuer.login(sub, CLIENT, scope, None)["id_token"]
        .as_str()
        .expect("the token response has an id_token")
        .to_string()
}

/// The echo tool through the agent with `token`; returns its text.
pub fn echo(ns: &NetNs, token: &str, text: &str) -> String {
    call_with(
        ns.name(),
        URL,
        "echo",
        json!({ "text": text }),
        &["--bearer", token],
    )
    .text()
}

pub fn bearer(token: &str) -> String {
    format!("Authorization: Bearer {token}")
}

pub fn header<'a>(r: &'a RawResponse, name: &str) -> Option<&'a str> {
    r.head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// `mcp-interceptor <args> --socket <dir>/admin.sock`, as root (the
/// approvals tests map root to an approver): (succeeded, stdout+stderr).
pub fn admin_cli(dir: &Path, args: &[&str]) -> (bool, String) {
    let mut argv: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    argv.extend([
        "--socket".into(),
        dir.join("admin.sock").display().to_string(),
    ]);
    let out = run_in(
        None,
        &bin("mcp-interceptor"),
        &argv,
        Duration::from_secs(30),
    );
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// A tool call to [`URL`] as `token`'s caller: Ok(text) or Err(error output).
pub fn call_as(ns: &NetNs, token: &str, tool: &str, args: Value) -> Result<String, String> {
    let c = call_with(ns.name(), URL, tool, args, &["--bearer", token]);
    if c.ok() {
        Ok(c.text())
    } else {
        Err(c.stderr())
    }
}

/// The approval id (`apr-` and 16 hex digits) in a refusal's message.
pub fn approval_id(err: &str) -> String {
    let i = err
        .find("apr-")
        .unwrap_or_else(|| panic!("no approval id in {err}"));
    err[i..i + 20].to_string()
}

/// One request to the admin listener at [`ADMIN`] with a bearer token,
/// from inside `ns`.
pub fn admin_api(
    ns: &NetNs,
    method: &str,
    path: &str,
    body: Option<Value>,
    token: &str,
) -> RawResponse {
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: admin\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let addr: SocketAddr = ADMIN.parse().expect("admin address");
    crate::http::in_netns(ns, move || {
        crate::http::exchange(
            addr,
            &[req.as_bytes()],
            Duration::ZERO,
            Duration::from_secs(10),
        )
    })
}
