//! Cedar policy over lists and server requests, end to end through the
//! steered port with real OIDC identities, against the reference
//! TypeScript server (server-everything) whose tools, resources and
//! prompts lists `tests/peers/paged_everything.mjs` pages: each caller's
//! lists hold only what they may use, every page keeps its `nextCursor`
//! (an emptied page too), an item a caller cannot see is refused when
//! asked for by name, and the server's elicitation requests reach the
//! client only when a policy permits them.

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpStream},
    time::{Duration, Instant},
};

use mcp_interceptor_tests::{
    Agent, NetNs, Proc, TempDir,
    everything::repo,
    http::{exchange, in_netns, post},
    oidc::Issuer,
    require_root,
    world::{PORT, bearer, header, messages, post_session, sections, token},
};
use serde_json::{Value, json};

/// Items per page: every list of server-everything spans several pages.
const PAGE: usize = 3;
const LIMIT: Duration = Duration::from_secs(10);
const DOCS: &str = "demo://resource/static/document/";

const LIST_POLICY: &str = r#"
@id("session")
permit (
  principal,
  action in [Mcp::Action::"initialize", Mcp::Action::"ping", Mcp::Action::"tools/list",
             Mcp::Action::"resources/list", Mcp::Action::"prompts/list"],
  resource
);

@id("admins")
permit (
  principal in Mcp::Group::"admins",
  action in [Mcp::Action::"tools/call", Mcp::Action::"resources/read", Mcp::Action::"prompts/get"],
  resource
);

@id("dev-tools")
permit (principal in Mcp::Group::"dev", action == Mcp::Action::"tools/call", resource)
when { resource.name like "get-*" };

@id("dev-docs")
permit (principal in Mcp::Group::"dev", action == Mcp::Action::"resources/read", resource)
when { resource.uri like "demo://resource/static/document/*" && !(resource.uri like "*/instructions.md") };

@id("dev-prompts")
permit (principal in Mcp::Group::"dev", action == Mcp::Action::"prompts/get", resource)
unless { resource == Mcp::Prompt::"resource-prompt" };

@id("contractor-tools")
permit (principal in Mcp::Group::"contractors", action == Mcp::Action::"tools/call", resource == Mcp::Tool::"echo");

@id("contractor-docs")
permit (principal in Mcp::Group::"contractors", action == Mcp::Action::"resources/read", resource)
when { resource.uri like "*/instructions.md" };

@id("contractor-prompts")
permit (principal in Mcp::Group::"contractors", action == Mcp::Action::"prompts/get", resource == Mcp::Prompt::"simple-prompt");
"#;

const ELICIT_POLICY: &str = r#"
@id("session")
permit (principal, action in [Mcp::Action::"initialize", Mcp::Action::"ping", Mcp::Action::"tools/list"], resource);

@id("elicit-tool")
permit (principal, action == Mcp::Action::"tools/call", resource == Mcp::Tool::"trigger-elicitation-request");

@id("dev-elicit")
permit (principal in Mcp::Group::"dev", action == Mcp::Action::"elicitation/create", resource);
"#;

/// The issuer, paged server-everything and the agent in one namespace.
/// Fields drop in order: processes first, the namespace and files last.
struct Setup {
    agent: Agent,
    _server: Proc,
    issuer: Issuer,
    ns: NetNs,
    _dir: TempDir,
}

fn start(tag: &str, policy: &str) -> Setup {
    let (ns, dir) = (NetNs::new(tag), TempDir::new(tag));
    let issuer = Issuer::start(&ns, 9400, dir.path());
    let launcher = repo().join("tests/peers/paged_everything.mjs");
    let args = [
        launcher.display().to_string(),
        "--page-size".into(),
        PAGE.to_string(),
        "streamableHttp".into(),
        "--host".into(),
        "127.0.0.1".into(),
        "--port".into(),
        "8080".into(),
    ];
    let mut server = Proc::spawn(
        "paged-everything",
        Some(ns.name()),
        std::path::Path::new("node"),
        &args,
        dir.path(),
    );
    server.wait_for_output("server-everything ready", Duration::from_secs(30));
    let cred = dir.path().join("upstream-credential");
    std::fs::write(&cred, "Bearer upstream-secret\n").unwrap();
    let file = dir.path().join("policy.cedar");
    std::fs::write(&file, policy).unwrap();
    let tables = format!(
        "{}[policy]\nfiles = [\"{}\"]\n",
        sections(&issuer, &cred, ""),
        file.display()
    );
    let agent = Agent::start_full(&ns, dir.path(), "", PORT, "", &tables, Vec::new());
    Setup {
        agent,
        _server: server,
        issuer,
        ns,
        _dir: dir,
    }
}

/// One caller's session: its token and Mcp-Session-Id.
struct Session<'a> {
    s: &'a Setup,
    token: String,
    sid: String,
}

impl<'a> Session<'a> {
    fn open(s: &'a Setup, sub: &str, groups: &[&str], capabilities: Value) -> Self {
        let token = token(&s.issuer, sub, groups);
        let init = json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
            "protocolVersion": "2025-06-18", "capabilities": capabilities,
            "clientInfo": {"name": "policy-lists", "version": "1"}}});
        let r = post_session(&s.ns, &token, None, &init, LIMIT);
        assert_eq!(r.status, 200, "{sub}: {r:?}");
        let sid = header(&r, "mcp-session-id")
            .unwrap_or_else(|| panic!("{sub}: a session id: {r:?}"))
            .to_string();
        let note = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
        let r = post_session(&s.ns, &token, Some(&sid), &note, LIMIT);
        assert!(r.status < 300, "{sub}: {r:?}");
        Self { s, token, sid }
    }

    /// The answer to one request.
    fn request(&self, id: i64, method: &str, params: Value) -> Value {
        let body = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        let r = post_session(&self.s.ns, &self.token, Some(&self.sid), &body, LIMIT);
        messages(&r)
            .into_iter()
            .find(|m| m["id"] == id)
            .unwrap_or_else(|| panic!("no answer to {method} {id}: {r:?}"))
    }

    /// Every page of a list, as the `field` of each item, following
    /// `nextCursor` to the end (at most 50 pages).
    fn pages(&self, method: &str, key: &str, field: &str) -> Vec<Vec<String>> {
        let mut out = Vec::new();
        let mut cursor: Option<String> = None;
        for n in 0..50 {
            let params = cursor.map_or(json!({}), |c| json!({ "cursor": c }));
            let m = self.request(100 + n, method, params);
            let items = m["result"][key]
                .as_array()
                .unwrap_or_else(|| panic!("{method} page {n}: {m}"));
            out.push(
                items
                    .iter()
                    .map(|i| i[field].as_str().unwrap_or_default().to_string())
                    .collect(),
            );
            match m["result"]["nextCursor"].as_str() {
                Some(c) => cursor = Some(c.to_string()),
                None => return out,
            }
        }
        panic!("{method}: more than 50 pages");
    }
}

fn code(m: &Value) -> i64 {
    m["error"]["code"].as_i64().unwrap_or(0)
}

/// A caller's pages equal the full listing's pages, each filtered by
/// `keep`: same number of pages (no cursor dropped), same order.
fn assert_filtered(
    who: &str,
    got: &[Vec<String>],
    all: &[Vec<String>],
    keep: impl Fn(&str) -> bool,
) {
    let want: Vec<Vec<String>> = all
        .iter()
        .map(|p| p.iter().filter(|i| keep(i)).cloned().collect())
        .collect();
    assert_eq!(got, want, "{who}'s pages (all: {all:?})");
    assert!(
        got.iter().flatten().count() > 0,
        "{who} sees something: {got:?}"
    );
}

#[test]
fn lists_are_filtered_per_caller_and_keep_their_cursors() {
    require_root();
    let s = start("pollist", LIST_POLICY);
    let carol = Session::open(&s, "carol", &["admins"], json!({}));
    let alice = Session::open(&s, "alice", &["dev"], json!({}));
    let bob = Session::open(&s, "bob", &["contractors"], json!({}));

    let lists = [
        ("tools/list", "tools", "name"),
        ("resources/list", "resources", "uri"),
        ("prompts/list", "prompts", "name"),
    ];
    let [tools, resources, prompts] = lists.map(|(m, k, f)| carol.pages(m, k, f));
    for (what, all) in [
        ("tools", &tools),
        ("resources", &resources),
        ("prompts", &prompts),
    ] {
        assert!(all.len() >= 2, "the server pages its {what}: {all:?}");
        assert!(all.iter().all(|p| p.len() <= PAGE), "{all:?}");
    }
    // Carol may use everything: her listing is the server's whole one.
    let mut docs: Vec<String> = std::fs::read_dir(
        repo().join("tests/peers/node_modules/@modelcontextprotocol/server-everything/dist/docs"),
    )
    .expect("server-everything's docs")
    .map(|e| format!("{DOCS}{}", e.unwrap().file_name().to_string_lossy()))
    .collect();
    docs.sort();
    let mut seen: Vec<String> = resources.concat();
    seen.sort();
    assert_eq!(seen, docs, "every document resource, once");
    let all_prompts = prompts.concat();
    for p in ["simple-prompt", "args-prompt", "resource-prompt"] {
        assert!(all_prompts.contains(&p.to_string()), "{all_prompts:?}");
    }

    let instructions = |u: &str| u.ends_with("/instructions.md");
    let [a_tools, a_res, a_prompts] = lists.map(|(m, k, f)| alice.pages(m, k, f));
    assert_filtered("alice's tools", &a_tools, &tools, |t| t.starts_with("get-"));
    assert_filtered("alice's resources", &a_res, &resources, |u| {
        u.starts_with(DOCS) && !instructions(u)
    });
    assert_filtered("alice's prompts", &a_prompts, &prompts, |p| {
        p != "resource-prompt"
    });
    let [b_tools, b_res, b_prompts] = lists.map(|(m, k, f)| bob.pages(m, k, f));
    assert_filtered("bob's tools", &b_tools, &tools, |t| t == "echo");
    assert_filtered("bob's resources", &b_res, &resources, instructions);
    assert_filtered("bob's prompts", &b_prompts, &prompts, |p| {
        p == "simple-prompt"
    });
    assert!(
        b_res.iter().any(Vec::is_empty),
        "a page filtered to nothing still leads on: {b_res:?}"
    );

    // What a caller cannot see, it cannot use by name either.
    let architecture = format!("{DOCS}architecture.md");
    let read =
        |who: &Session, id, uri: &str| who.request(id, "resources/read", json!({"uri": uri}));
    let get = |who: &Session, id, name: &str| who.request(id, "prompts/get", json!({"name": name}));
    let hidden = read(&bob, 1, &architecture);
    assert_eq!(code(&hidden), -32002, "{hidden}");
    let hidden = read(&alice, 2, &format!("{DOCS}instructions.md"));
    assert_eq!(code(&hidden), -32002, "{hidden}");
    let hidden = get(&bob, 3, "args-prompt");
    assert_eq!(code(&hidden), -32002, "{hidden}");
    let hidden = get(&alice, 4, "resource-prompt");
    assert_eq!(code(&hidden), -32002, "{hidden}");
    let hidden = bob.request(
        5,
        "tools/call",
        json!({"name": "get-sum", "arguments": {"a": 1, "b": 2}}),
    );
    assert_eq!(code(&hidden), -32002, "{hidden}");
    // ... and what it can see, it can use.
    let doc = read(&alice, 6, &architecture);
    assert!(
        doc["result"]["contents"][0]["text"]
            .as_str()
            .is_some_and(|t| !t.is_empty()),
        "{doc}"
    );
    let doc = read(&bob, 7, &format!("{DOCS}instructions.md"));
    assert!(doc["result"]["contents"].is_array(), "{doc}");
    let prompt = get(&bob, 8, "simple-prompt");
    assert!(prompt["result"]["messages"].is_array(), "{prompt}");

    let events = s.agent.wait_events("the refused read", |ev| {
        ev.iter().any(|e| {
            e["kind"] == "denied"
                && e["method"] == "resources/read"
                && e["caller"]["subject"] == "bob"
        })
    });
    let denied = events
        .iter()
        .find(|e| {
            e["kind"] == "denied"
                && e["method"] == "resources/read"
                && e["caller"]["subject"] == "bob"
        })
        .unwrap();
    assert_eq!(denied["target"], architecture.as_str());
    assert_eq!(denied["decision"]["effect"], "deny");
}

/// The messages of the `data:` lines of an SSE body read so far (of its
/// complete chunks, when chunked).
fn stream_messages(head: &str, body: &[u8]) -> Vec<Value> {
    if !head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        return sse_data(body);
    }
    let mut text = Vec::new();
    let mut b = body;
    while let Some(i) = b.windows(2).position(|w| w == b"\r\n") {
        let size = usize::from_str_radix(String::from_utf8_lossy(&b[..i]).trim(), 16).unwrap_or(0);
        if size == 0 || b.len() < i + 4 + size {
            break;
        }
        text.extend_from_slice(&b[i + 2..i + 2 + size]);
        b = &b[i + 4 + size..];
    }
    sse_data(&text)
}

fn sse_data(text: &[u8]) -> Vec<Value> {
    String::from_utf8_lossy(text)
        .lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .filter_map(|d| serde_json::from_str(d.trim()).ok())
        .collect()
}

/// Calls `tool` and reads its answer stream as it comes; an
/// `elicitation/create` request on it is answered with `reply` (once).
/// Returns every message the client saw on the stream.
fn call_answering_elicitation(s: &Session, id: i64, tool: &str, reply: Value) -> Vec<Value> {
    let auth = bearer(&s.token);
    let sid = format!("Mcp-Session-Id: {}", s.sid);
    let call = json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
                      "params": {"name": tool, "arguments": {}}});
    let tool = tool.to_string();
    in_netns(&s.s.ns, move || {
        let addr: SocketAddr = "127.0.0.1:8080".parse().unwrap();
        let headers = [
            auth.as_str(),
            sid.as_str(),
            "MCP-Protocol-Version: 2025-06-18",
        ];
        let mut stream = TcpStream::connect_timeout(&addr, LIMIT).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        stream
            .write_all(&post("/mcp", call.to_string().as_bytes(), &headers))
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        let (mut buf, mut answered) = (Vec::new(), false);
        let mut chunk = [0u8; 8192];
        while Instant::now() < deadline {
            let eof = match stream.read(&mut chunk) {
                Ok(0) => true,
                Ok(n) => {
                    buf.extend_from_slice(&chunk[..n]);
                    false
                }
                Err(_) => false,
            };
            let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                assert!(!eof, "closed without an answer: {buf:?}");
                continue;
            };
            let head = String::from_utf8_lossy(&buf[..end]);
            assert!(head.starts_with("HTTP/1.1 200"), "{head}");
            let seen = stream_messages(&head, &buf[end + 4..]);
            if let Some(ask) = seen
                .iter()
                .find(|m| m["method"] == "elicitation/create")
                .filter(|_| !answered)
            {
                let answer = json!({"jsonrpc": "2.0", "id": ask["id"], "result": reply});
                let r = exchange(
                    addr,
                    &[&post("/mcp", answer.to_string().as_bytes(), &headers)],
                    Duration::ZERO,
                    LIMIT,
                );
                assert!(r.status < 300, "the client's answer: {r:?}");
                answered = true;
            }
            if eof
                || seen
                    .iter()
                    .any(|m| m["id"] == id && m.get("method").is_none())
            {
                return seen;
            }
        }
        panic!("no answer to {tool} within 20 s");
    })
}

fn tool_text(answer: &Value) -> String {
    answer["result"]["content"]
        .as_array()
        .map(|c| {
            c.iter()
                .filter_map(|p| p["text"].as_str())
                .collect::<Vec<_>>()
                .join("\n")
        })
        .unwrap_or_default()
}

#[test]
fn elicitation_is_denied_unless_a_policy_permits_it() {
    require_root();
    let mut s = start("polelicit", ELICIT_POLICY);
    let elicits = json!({"elicitation": {}});

    // No permit: the agent answers the server for the client, which never
    // sees the request.
    let bob = Session::open(&s, "bob", &["contractors"], elicits.clone());
    let reply = json!({"action": "accept", "content": {"name": "Mallory"}});
    let seen = call_answering_elicitation(&bob, 1, "trigger-elicitation-request", reply);
    assert!(
        seen.iter().all(|m| m["method"] != "elicitation/create"),
        "{seen:?}"
    );
    let answer = seen.iter().find(|m| m["id"] == 1).unwrap();
    let text = tool_text(answer);
    assert_eq!(answer["result"]["isError"], true, "{answer}");
    assert!(
        text.contains("denied by the client's security policy")
            && text.contains("no policy permits elicitation/create for bob"),
        "{text}"
    );

    // Permitted: the client is asked, and its answer reaches the server.
    let alice = Session::open(&s, "alice", &["dev"], elicits);
    let reply = json!({"action": "accept", "content": {"name": "Ada"}});
    let seen = call_answering_elicitation(&alice, 2, "trigger-elicitation-request", reply);
    assert!(
        seen.iter().any(|m| m["method"] == "elicitation/create"),
        "{seen:?}"
    );
    let answer = seen.iter().find(|m| m["id"] == 2).unwrap();
    let text = tool_text(answer);
    assert!(
        text.contains("User provided the requested information") && text.contains("Name: Ada"),
        "{answer}"
    );

    let asked = |ev: &[Value], sub: &str| {
        ev.iter()
            .find(|e| e["method"] == "elicitation/create" && e["caller"]["subject"] == sub)
            .cloned()
    };
    let events = s.agent.wait_events("both elicitation requests", |ev| {
        asked(ev, "bob").is_some() && asked(ev, "alice").is_some_and(|e| e["result"].is_object())
    });
    let denied = asked(&events, "bob").unwrap();
    assert_eq!(denied["kind"], "denied", "{denied}");
    assert_eq!(denied["direction"], "server_to_client");
    assert_eq!(denied["decision"]["effect"], "deny");
    let allowed = asked(&events, "alice").unwrap();
    assert_eq!(allowed["kind"], "exchange", "{allowed}");
    assert_eq!(allowed["direction"], "server_to_client");
    assert_eq!(allowed["result"]["content"]["name"], "Ada", "{allowed}");
    // The allowed request names the policy that let it through, as a
    // denied one names why it was refused.
    assert_eq!(allowed["decision"]["effect"], "allow", "{allowed}");
    assert_eq!(allowed["decision"]["policies"], json!(["dev-elicit"]));

    // So does its Parquet row.
    s.agent.stop(15);
    let v = mcp_interceptor_tests::auditq::sql(
        &s.agent.audit_dir(),
        "SELECT subject, kind, decision, rule_ids FROM mcp_audit \
         WHERE method = 'elicitation/create' ORDER BY subject",
    );
    assert_eq!(
        v["rows"],
        json!([
            ["alice", "exchange", "allow", ["dev-elicit"]],
            ["bob", "denied", "deny", []]
        ]),
        "{v}"
    );
}
