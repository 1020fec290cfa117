//! A request is MCP by what the server will make of it, not by how its path
//! is spelled. Against server-everything (Express, which routes `/MCP`,
//! `/mcp/` and `//mcp` to its `/mcp` endpoint): every spelling of the MCP
//! path, and a JSON-RPC POST on any path, needs an identity, is decided by
//! policy and is audited; paths with more than one reading and methods
//! the transport does not define are refused; other paths are refused
//! unless `pass_through` names them, and what passes through never
//! carries the upstream credential (asserted at the server).

use std::{net::SocketAddr, time::Duration};

use mcp_interceptor_tests::{
    Agent, NetNs, Proc, TempDir, everything,
    http::{RawResponse, exchange, in_netns, initialize, post_in},
    oidc::Issuer,
    peer::{self, auth_log},
    require_root,
    world::{UPSTREAM, World, bearer, header, messages, sections, token},
};
use serde_json::{Value, json};

const POLICY: &str = r#"
@id("all") permit (principal, action, resource);
@id("no-echo") forbid (principal, action == Mcp::Action::"tools/call", resource == Mcp::Tool::"echo");
"#;

/// Spellings Express (or a decoding router) sends to the `/mcp` route,
/// and paths where only a JSON-RPC body says it is MCP.
const MCP_SPELLINGS: &[&str] = &[
    "/mcp",
    "/MCP",
    "/Mcp",
    "/mcp/",
    "//mcp",
    "/mcp?x=1",
    "/%6dcp",
    "/mcp;v=1",
    "/MCP//",
    "/rpc",
    "/api/v1/call",
];
/// Of those, the ones Express routes to its `/mcp` endpoint: the server
/// answers them (the others get its 404 after the agent's judgement).
const EXPRESS_ROUTES: &[&str] = &["/mcp", "/MCP", "/Mcp", "/mcp/", "/mcp?x=1"];
/// Paths servers read differently: refused.
const AMBIGUOUS: &[&str] = &[
    "/a/../mcp",
    "/x/%2e%2e/mcp",
    "/m%2fcp",
    "/%256dcp",
    "/mcp%00",
];

fn addr() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8080))
}

fn echo_call(id: i64) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
           "params": {"name": "echo", "arguments": {"message": "hi"}}})
}

/// server-everything behind the agent, which requires tokens from a real
/// issuer and forbids the echo tool. Drops processes first.
struct Everything {
    agent: Agent,
    _server: Proc,
    issuer: Issuer,
    ns: NetNs,
    _dir: TempDir,
}

impl Everything {
    fn start(tag: &str) -> Self {
        let (ns, dir) = (NetNs::new(tag), TempDir::new(tag));
        let issuer = Issuer::start(&ns, 9400, dir.path());
        let server = everything::server(ns.name(), "streamableHttp", 8080, dir.path());
        let cred = dir.path().join("upstream-credential");
        std::fs::write(&cred, format!("{UPSTREAM}\n")).unwrap();
        let policy = dir.path().join("policy.cedar");
        std::fs::write(&policy, POLICY).unwrap();
        let more = format!("[policy]\nfiles = [\"{}\"]\n", policy.display());
        let agent = Agent::start_full(
            &ns,
            dir.path(),
            "",
            "[[intercept.ports]]\nport = 8080\n",
            "",
            &format!("{}{more}", sections(&issuer, &cred, "")),
            Vec::new(),
        );
        Self {
            agent,
            _server: server,
            issuer,
            ns,
            _dir: dir,
        }
    }

    fn post(&self, path: &str, body: &Value, headers: &[String]) -> RawResponse {
        let refs: Vec<&str> = headers.iter().map(String::as_str).collect();
        post_in(&self.ns, addr(), path, body.to_string().as_bytes(), &refs)
    }

    /// One request with any method, `Connection: close`, read to the end.
    fn raw(&self, method: &str, path: &str, token: &str, body: &str) -> RawResponse {
        let req = format!(
            "{method} {path} HTTP/1.1\r\nHost: mcp.test\r\nAuthorization: Bearer {token}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        in_netns(&self.ns, move || {
            exchange(
                addr(),
                &[req.as_bytes()],
                Duration::ZERO,
                Duration::from_secs(10),
            )
        })
    }
}

fn code(r: &RawResponse) -> i64 {
    serde_json::from_slice::<Value>(&r.body)
        .ok()
        .and_then(|v| v["error"]["code"].as_i64())
        .unwrap_or(0)
}

/// The error's `data.reason`: refusals that share a code differ here.
fn reason(r: &RawResponse) -> String {
    serde_json::from_slice::<Value>(&r.body)
        .ok()
        .and_then(|v| v["error"]["data"]["reason"].as_str().map(str::to_owned))
        .unwrap_or_default()
}

#[test]
fn every_spelling_of_an_mcp_request_is_judged_or_refused() {
    require_root();
    let w = Everything::start("bpaths");
    let alice = token(&w.issuer, "alice", &["dev"]);
    for (i, path) in MCP_SPELLINGS.iter().enumerate() {
        let id = i as i64 + 1;
        // No identity: refused before anything reaches the server.
        let r = w.post(path, &echo_call(id), &[]);
        assert_eq!(
            (r.status, code(&r)),
            (401, -32001),
            "{path} without a token: {r:?}"
        );
        // Policy decides: echo is forbidden, whatever the spelling.
        let r = w.post(path, &echo_call(id), &[bearer(&alice)]);
        assert_eq!(
            (r.status, code(&r)),
            (200, -32002),
            "{path}: policy must decide: {r:?}"
        );
        // And what is allowed reaches the server, as MCP.
        let r = w.post(path, &initialize(100 + id), &[bearer(&alice)]);
        if EXPRESS_ROUTES.contains(path) {
            assert_eq!(r.status, 200, "{path} initialize: {r:?}");
            let answer = messages(&r);
            assert!(
                answer.iter().any(|m| m["result"]["serverInfo"].is_object()),
                "{path}: the server answered initialize: {r:?}"
            );
            assert!(header(&r, "mcp-session-id").is_some(), "{path}: {r:?}");
        }
    }
    for path in AMBIGUOUS {
        let r = w.post(path, &echo_call(1), &[bearer(&alice)]);
        assert_eq!((r.status, code(&r)), (400, -32006), "{path}: {r:?}");
        assert_eq!(reason(&r), "ambiguous_request", "{path}: {r:?}");
    }
    let events = w.agent.wait_events("a row for every request", |ev| {
        ev.iter().filter(|e| e["decided_by"] == "policy").count() >= MCP_SPELLINGS.len()
            && ev.iter().filter(|e| e["decided_by"] == "route").count() >= AMBIGUOUS.len()
    });
    for path in MCP_SPELLINGS {
        let raw = path.split('?').next().unwrap();
        let rows: Vec<&Value> = events.iter().filter(|e| e["http_path"] == raw).collect();
        for (what, found) in [
            (
                "identity refusal",
                rows.iter().any(|e| e["decided_by"] == "identity"),
            ),
            (
                "policy denial",
                rows.iter()
                    .any(|e| e["decided_by"] == "policy" && e["target"] == "echo"),
            ),
            (
                "initialize",
                rows.iter().any(|e| e["method"] == "initialize"),
            ),
        ] {
            assert!(found, "{path}: no {what} row in {rows:?}");
        }
    }
    for path in AMBIGUOUS {
        assert!(
            events.iter().any(|e| e["decided_by"] == "route"
                && e["kind"] == "rejected"
                && e["http_path"] == *path),
            "{path}: refusal audited"
        );
    }
}

#[test]
fn methods_the_transport_does_not_define_and_other_paths_are_refused() {
    require_root();
    let w = Everything::start("bmethods");
    let alice = token(&w.issuer, "alice", &["dev"]);
    let body = echo_call(1).to_string();
    let mut refused = 0;
    for path in ["/mcp", "/MCP/"] {
        for method in ["PUT", "PATCH", "OPTIONS", "HEAD", "TRACE"] {
            let b = if method == "HEAD" || method == "TRACE" {
                ""
            } else {
                &body
            };
            let r = w.raw(method, path, &alice, b);
            assert_eq!(r.status, 405, "{method} {path}: {r:?}");
            assert_eq!(header(&r, "allow"), Some("GET, POST, DELETE"), "{r:?}");
            if method != "HEAD" {
                assert_eq!(code(&r), -32006, "{method} {path}: {r:?}");
            }
            refused += 1;
        }
    }
    // Not MCP and no pass_through: refused, not handed to the server.
    for (method, path, b) in [
        ("GET", "/healthz", ""),
        ("GET", "/", ""),
        ("POST", "/api/upload", "plain text"),
        ("PUT", "/anything", "{}"),
    ] {
        let r = w.raw(method, path, &alice, b);
        assert_eq!(
            (r.status, code(&r)),
            (404, -32006),
            "{method} {path}: {r:?}"
        );
        refused += 1;
    }
    // A body that may be JSON-RPC in a form the agent does not read.
    let r = w.raw("POST", "/api/x", &alice, r#"{"jsonrpc":"2.0","id":1,}"#);
    assert_eq!((r.status, code(&r)), (400, -32006), "{r:?}");
    refused += 1;
    let events = w.agent.wait_events("every refusal audited", |ev| {
        ev.iter().filter(|e| e["decided_by"] == "route").count() >= refused
    });
    assert!(events.iter().any(|e| e["decided_by"] == "route"
        && e["http_method"] == "PUT"
        && e["http_path"] == "/mcp"
        && e["http_status"] == 405));
}

/// The agent in front of `mcp-peer server --log-auth --require-auth`, with
/// `port_keys` added to its port table.
fn credential_world(tag: &str, port_keys: &str) -> World {
    let (ns, dir) = (NetNs::new(tag), TempDir::new(tag));
    let issuer = Issuer::start(&ns, 9400, dir.path());
    issuer.set_user("alice", json!({"groups": ["dev"]}));
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
        &format!("[[intercept.ports]]\nport = 8080\n{port_keys}"),
        "",
        &sections(&issuer, &cred, ""),
        Vec::new(),
    );
    World {
        agent,
        server,
        issuer,
        cred,
        ns,
        dir,
    }
}

fn raw_world(w: &World, method: &str, path: &str, token: &str, body: &str) -> RawResponse {
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: mcp.test\r\nAuthorization: Bearer {token}\r\n\
         Accept: application/json, text/event-stream\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    in_netns(&w.ns, move || {
        exchange(
            addr(),
            &[req.as_bytes()],
            Duration::ZERO,
            Duration::from_secs(10),
        )
    })
}

/// The `auth` lines the server printed for `method path`.
fn seen(w: &World, method: &str, path: &str) -> Vec<String> {
    let prefix = format!("auth {method} {path} ");
    auth_log(&w.server)
        .into_iter()
        .filter(|l| l.starts_with(&prefix))
        .collect()
}

#[test]
fn non_mcp_requests_are_refused_by_default_and_never_get_the_credential() {
    require_root();
    let w = credential_world("bcred", "");
    let alice = token(&w.issuer, "alice", &["dev"]);
    let r = raw_world(&w, "GET", "/healthz", &alice, "");
    assert_eq!((r.status, code(&r)), (404, -32006), "{r:?}");
    assert_eq!(reason(&r), "not_mcp", "{r:?}");
    let r = raw_world(&w, "PUT", "/mcp", &alice, "{}");
    assert_eq!((r.status, code(&r)), (405, -32006), "{r:?}");
    assert_eq!(reason(&r), "method_not_allowed", "{r:?}");
    // A server's admin API behind the MCP port, and a PUT on the MCP path
    // carrying a JSON-RPC call: neither may reach it with the agent's
    // credential (the server would act on it as the agent).
    let call = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"}).to_string();
    for (method, path, body) in [
        ("GET", "/api/admin/users", ""),
        ("GET", "/api/admin/users", call.as_str()),
        ("PUT", "/mcp", call.as_str()),
    ] {
        let r = raw_world(&w, method, path, &alice, body);
        assert!(
            (r.status, code(&r)) == (404, -32006) || (r.status, code(&r)) == (405, -32006),
            "{method} {path} was not refused: {r:?}"
        );
        assert!(
            seen(&w, method, path).is_empty(),
            "{method} {path} reached the server: {:?}",
            auth_log(&w.server)
        );
    }
    // The MCP endpoint itself works (and gets the credential).
    let r = raw_world(&w, "POST", "/mcp", &alice, &initialize(1).to_string());
    assert_eq!(r.status, 200, "{r:?}");
    let lines = auth_log(&w.server);
    assert!(
        lines.iter().all(|l| l.starts_with("auth POST /mcp ")),
        "only the judged request reached the server: {lines:?}"
    );
    assert!(
        lines
            .iter()
            .all(|l| l.contains(&format!("authorization={UPSTREAM} "))),
        "{lines:?}"
    );
}

#[test]
fn pass_through_is_configured_and_carries_no_credential() {
    require_root();
    let w = credential_world("bpass", "pass_through = [\"/healthz\", \"/api/*\"]\n");
    let alice = token(&w.issuer, "alice", &["dev"]);
    // Passed through: the server sees neither the caller's token nor the
    // agent's credential (mcp-peer --require-auth answers 401 without it).
    for (method, path, body) in [
        ("GET", "/HEALTHZ/", ""),
        ("POST", "/api/upload", "not json-rpc"),
    ] {
        let r = raw_world(&w, method, path, &alice, body);
        assert_eq!(r.status, 401, "{method} {path} reached the server: {r:?}");
        let lines = seen(&w, method, path);
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert!(
            lines[0].contains("authorization=- "),
            "no credential on a pass-through path: {lines:?}"
        );
    }
    let events = w.agent.wait_events("a row per pass-through", |ev| {
        ev.iter().filter(|e| e["kind"] == "http").count() >= 2
    });
    assert!(
        events.iter().any(|e| e["kind"] == "http"
            && e["http_path"] == "/HEALTHZ/"
            && e["http_status"] == 401
            && e["caller"]["subject"] == "alice"),
        "{events:?}"
    );
    // Not listed: still refused.
    let r = raw_world(&w, "GET", "/metrics", &alice, "");
    assert_eq!((r.status, code(&r)), (404, -32006), "{r:?}");
    // A JSON-RPC body on a pass-through path is MCP: judged, audited, and
    // then (only then) sent with the agent's credential.
    let call = json!({"jsonrpc": "2.0", "id": 7, "method": "tools/list"});
    let r = raw_world(&w, "POST", "/api/rpc", &alice, &call.to_string());
    assert_eq!(r.status, 404, "the server has no MCP endpoint there: {r:?}");
    let lines = seen(&w, "POST", "/api/rpc");
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0].contains(&format!("authorization={UPSTREAM} ")),
        "{lines:?}"
    );
    w.agent.wait_events("the judged request's row", |ev| {
        ev.iter()
            .any(|e| e["http_path"] == "/api/rpc" && e["method"] == "tools/list")
    });
    assert!(w.agent.log().contains("JSON-RPC body off the MCP paths"));
}

/// Generated spellings, tried against Express directly (a second
/// server-everything on an unsteered port) and through the agent with
/// everything non-MCP passed through. Each is a GET naming a session no
/// server opened: judged as MCP, the agent refuses it itself, so one that
/// reaches Express went past the MCP stage. None that Express routes to
/// its MCP endpoint may.
#[test]
fn what_express_routes_to_mcp_the_agent_never_passes_through() {
    require_root();
    let (ns, dir) = (NetNs::new("bdiff"), TempDir::new("bdiff"));
    let _steered = everything::server(ns.name(), "streamableHttp", 8080, dir.path());
    let _direct = everything::server(ns.name(), "streamableHttp", 8081, dir.path());
    let port = "[[intercept.ports]]\nport = 8080\npass_through = [\"/*\"]\n";
    let _agent = Agent::start_full(
        &ns,
        dir.path(),
        "",
        port,
        "",
        mcp_interceptor_tests::agent::ANONYMOUS,
        Vec::new(),
    );
    // Spellings of `/mcp`: each letter in a case or escape, a prefix and
    // a suffix, now and then a piece between the letters.
    const LETTERS: [&[&str]; 3] = [
        &["m", "M", "%6d", "%6D", "%4d"],
        &["c", "C", "%63", "%43"],
        &["p", "P", "%70", "%50"],
    ];
    const PREFIX: &[&str] = &[
        "/", "//", "///", "/./", "/a/../", "/%2e/", "/;x/", "\\", "/%2f",
    ];
    const SUFFIX: &[&str] = &[
        "", "/", "//", ";x", "/.", "/..", "%20", "?x=1", "/x", "%2f", ".", "~", "%00", "#f",
    ];
    const BETWEEN: &[&str] = &["/", "%2f", ";", ".", "%2e", "-"];
    // `MCPI_PROP_SECS` turns the 400 generated spellings into a campaign
    // of that many seconds; `MCPI_PROP_SEED` replays one.
    let secs = std::env::var("MCPI_PROP_SECS")
        .ok()
        .and_then(|s| s.parse::<u64>().ok());
    let mut seed: u64 = std::env::var("MCPI_PROP_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x9e37_79b9_7f4a_7c15)
        .max(1);
    eprintln!("MCPI_PROP_SEED={seed}");
    let mut next = move |n: usize| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed % n as u64) as usize
    };
    // Spellings Express is known to route (case, trailing slash, query,
    // fragment), and some it is not, then generated ones.
    let fixed = [
        "/mcp", "/MCP", "/mcp/", "/Mcp/", "/mcp#f", "/mcp?x=1", "//mcp", "/%6dcp", "/mcp;x",
    ];
    let mut generate = move || {
        let mut p = PREFIX[next(PREFIX.len())].to_string();
        for (k, letter) in LETTERS.iter().enumerate() {
            if k > 0 && next(8) == 0 {
                p.push_str(BETWEEN[next(BETWEEN.len())]);
            }
            p.push_str(letter[next(letter.len())]);
        }
        p.push_str(SUFFIX[next(SUFFIX.len())]);
        p
    };
    let started = std::time::Instant::now();
    let more = |tried: usize| match secs {
        Some(s) => started.elapsed() < Duration::from_secs(s),
        None => tried < fixed.len() + 400,
    };
    let get = |port: u16, path: &str| {
        let req = format!(
            "GET {path} HTTP/1.1\r\nHost: mcp.test\r\nAccept: text/event-stream\r\n\
             Mcp-Session-Id: no-such-session\r\nConnection: close\r\n\r\n"
        );
        let a = SocketAddr::from(([127, 0, 0, 1], port));
        in_netns(&ns, move || {
            exchange(
                a,
                &[req.as_bytes()],
                Duration::ZERO,
                Duration::from_secs(10),
            )
        })
    };
    let express = |r: &RawResponse| header(r, "x-powered-by") == Some("Express");
    let cannot = |r: &RawResponse| String::from_utf8_lossy(&r.body).contains("Cannot GET");
    let (mut routed, mut judged, mut tried) = (0, 0, 0);
    while more(tried) {
        let p = &fixed
            .get(tried)
            .map_or_else(&mut generate, |f| f.to_string());
        tried += 1;
        let direct = get(8081, p);
        let mcp_route = express(&direct) && !cannot(&direct);
        if !mcp_route {
            continue;
        }
        routed += 1;
        let through = get(8080, p);
        assert!(
            !express(&through),
            "{p}: Express routes it to MCP ({direct:?}), and it reached Express unjudged ({through:?})"
        );
        judged += 1;
    }
    assert!(
        routed >= 3 && routed == judged,
        "{routed} routed, {judged} judged"
    );
    eprintln!("{tried} paths; {routed} routed to MCP by Express, all judged or refused");
}
