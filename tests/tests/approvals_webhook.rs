//! The approvals webhook as the approvers' chat channel sees it, through
//! the steered port with real OIDC identities and a receiver in the
//! namespace that records every POST: caller text (subject, tool name,
//! resource URI, arguments) cannot ping the channel, add a link or break
//! out of its code span in a Slack payload; argument values reach the
//! channel only when the operator opts in, and then masked; and a flood of
//! requests from one caller gives a bounded number of posts, the rest
//! summarized per caller, while another caller's request is still
//! announced.

use std::{
    io::{Read, Write},
    net::TcpListener,
    os::fd::AsFd,
    path::Path,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use mcp_interceptor_tests::{
    http::{RawResponse, initialize},
    require_root, wait_for,
    world::{World, messages, post_session, token},
};
use serde_json::{Value, json};

const POLICY: &str = r#"
@id("session")
permit (
  principal,
  action in [Mcp::Action::"initialize", Mcp::Action::"ping", Mcp::Action::"tools/list"],
  resource
);

@id("tools-need-oncall")
@approval("oncall")
@approval_mode("retry")
permit (principal, action == Mcp::Action::"tools/call", resource);

@id("resources-need-oncall")
@approval("oncall")
@approval_mode("retry")
permit (principal, action == Mcp::Action::"resources/read", resource);
"#;

const HOOK: &str = "127.0.0.1:9511";
const APPROVE: &str = "http://127.0.0.1:9443/v1/approvals";

/// The agent's config: every call needs approval (retry mode: refused at
/// once with the approval's id), announced to the in-namespace receiver.
fn sections(dir: &Path, webhook: &str) -> String {
    let policy = dir.join("webhook.cedar");
    std::fs::write(&policy, POLICY).unwrap();
    format!(
        "[policy]\nfiles = [\"{}\"]\nstrict_names = false\n\
         [approvals]\napprove_url = \"{APPROVE}\"\n\
         # The webhook's own limits are under test, not the pending cap.\n\
         max_pending_per_caller = 1000\n\
         [approvals.webhook]\nurl = \"http://{HOOK}/hook\"\n{webhook}\n\
         [admin]\nsocket = \"{}\"\n",
        policy.display(),
        dir.join("admin.sock").display()
    )
}

/// Every POST body the webhook receives, from a listener in the namespace.
fn webhook_sink(w: &World) -> Arc<Mutex<Vec<Value>>> {
    let got = Arc::new(Mutex::new(Vec::new()));
    let (tx, rx) = std::sync::mpsc::channel();
    let (path, g) = (w.ns.path(), got.clone());
    std::thread::spawn(move || {
        let f = std::fs::File::open(&path).unwrap();
        nix::sched::setns(f.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
        let l = TcpListener::bind(HOOK).unwrap();
        tx.send(()).unwrap();
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            let body = read_body(&mut s);
            let _ =
                s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
            if let Some(b) = body.and_then(|b| serde_json::from_slice(&b).ok()) {
                g.lock().unwrap().push(b);
            }
        }
    });
    rx.recv_timeout(Duration::from_secs(5)).unwrap();
    got
}

/// One request's body (by Content-Length).
fn read_body(s: &mut std::net::TcpStream) -> Option<Vec<u8>> {
    s.set_read_timeout(Some(Duration::from_secs(5))).ok();
    let (mut buf, mut chunk) = (Vec::new(), [0u8; 4096]);
    loop {
        let n = s.read(&mut chunk).ok().filter(|n| *n > 0)?;
        buf.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&buf).to_string();
        let Some(i) = text.find("\r\n\r\n") else {
            continue;
        };
        let len: usize = text[..i]
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case("content-length")
                    .then(|| v.trim().parse().ok())?
            })
            .unwrap_or(0);
        if buf.len() >= i + 4 + len {
            return Some(buf[i + 4..i + 4 + len].to_vec());
        }
    }
}

/// An initialized MCP session of one caller.
struct Session {
    token: String,
    sid: String,
}

impl Session {
    fn open(w: &World, token: &str) -> Self {
        let r = post_session(&w.ns, token, None, &initialize(1), Duration::from_secs(20));
        let sid = r
            .head
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case("mcp-session-id")
                    .then(|| v.trim().to_string())
            })
            .unwrap_or_else(|| panic!("no session id: {} {:?}", r.head, r.body));
        let s = Self {
            token: token.into(),
            sid,
        };
        s.post(
            w,
            json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
        );
        s
    }

    fn post(&self, w: &World, body: Value) -> RawResponse {
        post_session(
            &w.ns,
            &self.token,
            Some(&self.sid),
            &body,
            Duration::from_secs(20),
        )
    }

    /// A request that needs approval; returns the approval's id.
    fn ask(&self, w: &World, id: i64, method: &str, params: Value) -> String {
        self.try_ask(w, id, method, params)
            .unwrap_or_else(|m| panic!("no approval id: {m}"))
    }

    /// The approval's id, or the answer that has none (e.g. a cap on
    /// pending requests refused it).
    fn try_ask(&self, w: &World, id: i64, method: &str, params: Value) -> Result<String, Value> {
        let r = self.post(
            w,
            json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}),
        );
        let msg = messages(&r)
            .into_iter()
            .find(|m| m["id"] == id)
            .unwrap_or_else(|| panic!("no answer to {id}: {}", String::from_utf8_lossy(&r.body)));
        let text = msg["error"]["message"].as_str().unwrap_or_default();
        let i = text.find("apr-").ok_or(msg.clone())?;
        Ok(text[i..i + 20].to_string())
    }
}

/// Every string of a JSON value.
fn strings(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::String(s) => out.push(s.clone()),
        Value::Array(a) => a.iter().for_each(|x| strings(x, out)),
        Value::Object(o) => o.values().for_each(|x| strings(x, out)),
        _ => {}
    }
}

/// A Slack mrkdwn string in which caller text is inert: `<...>` only as the
/// agent's own approve link, `&` only as an entity, backticks paired, and
/// outside code spans nothing of the caller's.
fn assert_inert(s: &str, approve_link: &str) {
    let rest = s.replace(approve_link, "");
    assert!(!rest.contains('<') && !rest.contains('>'), "{s}");
    for (i, _) in rest.match_indices('&') {
        let tail = &rest[i..];
        assert!(
            ["&amp;", "&lt;", "&gt;"]
                .iter()
                .any(|e| tail.starts_with(e)),
            "a bare & in {s}"
        );
    }
    assert_eq!(rest.matches('`').count() % 2, 0, "unpaired backtick: {s}");
    let outside: String = rest
        .split('`')
        .enumerate()
        .filter(|(i, _)| i % 2 == 0)
        .map(|(_, p)| p)
        .collect();
    for caller in ["channel", "evil", "Approve>", "mallory", "*bold*"] {
        assert!(!outside.contains(caller), "{caller} outside code: {s}");
    }
}

#[test]
fn slack_payload_escapes_caller_text_and_links_only_the_approve_url() {
    require_root();
    let w = World::with("hookslack", "", |dir| {
        sections(dir, "format = \"slack\"\ninclude_arguments = true")
    });
    let hook = webhook_sink(&w);
    let evil = "<!channel> <https://evil.example/x|Approve> & ```y``` *bold* <@U1>";
    let sub = format!("mallory{evil}");
    let t = token(&w.issuer, &sub, &["dev"]);
    let s = Session::open(&w, &t);
    let tool = "mallory<!channel>`&<https://evil.example|Approve>";
    let by_tool = s.ask(
        &w,
        2,
        "tools/call",
        json!({"name": tool, "arguments": {"note": evil, "email": "alice@example.com"}}),
    );
    let uri = "note://mallory/<!channel>&`x`<https://evil.example|Approve>";
    let by_uri = s.ask(&w, 3, "resources/read", json!({ "uri": uri }));

    let heard = wait_for("two announcements", Duration::from_secs(10), || {
        let h = hook.lock().unwrap().clone();
        (h.len() >= 2).then_some(h)
    });
    let shows = [
        (&by_tool, "mallory&lt;!channel&gt;"),
        (&by_uri, "note://mallory/&lt;!channel&gt;"),
    ];
    for (id, escaped) in shows {
        let p = heard
            .iter()
            .find(|p| p.to_string().contains(id.as_str()))
            .unwrap_or_else(|| panic!("{id} not announced: {heard:?}"));
        let link = format!("<{APPROVE}/{id}|Approve or deny>");
        let mut all = Vec::new();
        strings(p, &mut all);
        let shown = all.join("\n");
        for text in &all {
            assert_inert(text, &link);
        }
        assert!(shown.contains(&link), "{shown}");
        // The values are shown, escaped, not dropped.
        assert!(shown.contains(escaped), "{shown}");
        assert!(shown.contains("`mallory&lt;!channel&gt; &lt;"), "{shown}");
    }
    let tool_post = heard
        .iter()
        .find(|p| p.to_string().contains(by_tool.as_str()))
        .unwrap()
        .to_string();
    // Opted in: the arguments are there, masked.
    assert!(tool_post.contains("&lt;@U1&gt;"), "{tool_post}");
    assert!(
        tool_post.contains("[EMAIL]") && !tool_post.contains("alice@example.com"),
        "{tool_post}"
    );
}

#[test]
fn default_payload_carries_no_argument_values() {
    require_root();
    let w = World::with("hookargs", "", |dir| sections(dir, ""));
    let hook = webhook_sink(&w);
    let s = Session::open(&w, &token(&w.issuer, "alice", &["dev"]));
    let args = json!({"note": "quarterly-numbers-7731", "email": "alice@example.com"});
    let id = s.ask(
        &w,
        2,
        "tools/call",
        json!({"name": "add", "arguments": args}),
    );
    let heard = wait_for("the announcement", Duration::from_secs(10), || {
        hook.lock().unwrap().first().cloned()
    });
    assert_eq!(heard["type"], "approval_requested");
    let a = &heard["approval"];
    assert_eq!(a["id"], id.as_str());
    assert_eq!(a["subject"], "alice");
    assert_eq!(a["target"], "add");
    assert_eq!(a["policies"], json!(["tools-need-oncall"]));
    assert_eq!(heard["approve"], format!("{APPROVE}/{id}"));
    let text = heard.to_string();
    for leak in [
        "quarterly-numbers-7731",
        "alice@example.com",
        "EMAIL",
        "arguments",
        "digest",
    ] {
        assert!(!text.contains(leak), "{leak} in {text}");
    }
}

const INTERVAL: u64 = 4;
const MAX_POSTS: usize = 5;
const PER_CALLER: usize = 2;

/// Alice's flood: `n` distinct calls from four threads; the approval ids.
fn flood(w: &World, s: &Session, n: i64) -> Vec<String> {
    let ids = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for t in 0..4 {
            let ids = &ids;
            scope.spawn(move || {
                for i in (0..n).filter(|i| i % 4 == t) {
                    let params = json!({"name": "add", "arguments": {"a": i, "b": 0}});
                    if let Ok(id) = s.try_ask(w, 100 + i, "tools/call", params) {
                        ids.lock().unwrap().push(id);
                    }
                }
            });
        }
    });
    ids.into_inner().unwrap()
}

/// Requests of `subject` in the posts: announced one by one (their ids),
/// and counted in summaries.
fn accounted(posts: &[Value], subject: &str) -> (Vec<String>, u64) {
    let one_by_one = posts
        .iter()
        .filter(|p| p["type"] == "approval_requested" && p["approval"]["subject"] == subject)
        .map(|p| p["approval"]["id"].as_str().unwrap().to_string())
        .collect();
    let summarized = posts
        .iter()
        .filter(|p| p["type"] == "approvals_summarized")
        .flat_map(|p| p["by_caller"].as_array().cloned().unwrap_or_default())
        .filter(|c| c["subject"] == subject)
        .map(|c| c["count"].as_u64().unwrap())
        .sum();
    (one_by_one, summarized)
}

#[test]
fn a_flood_of_requests_gives_bounded_posts_and_others_are_still_announced() {
    require_root();
    let w = World::with("hookflood", "", |dir| {
        sections(
            dir,
            &format!(
                "interval_seconds = {INTERVAL}\nmax_posts = {MAX_POSTS}\n\
                 max_posts_per_caller = {PER_CALLER}"
            ),
        )
    });
    let hook = webhook_sink(&w);
    let alice = Session::open(&w, &token(&w.issuer, "alice", &["dev"]));
    let bob = Session::open(&w, &token(&w.issuer, "bob", &["dev"]));
    let start = Instant::now();
    let flooded = flood(&w, &alice, 300);
    assert!(
        flooded.len() >= 50,
        "the flood made {} requests",
        flooded.len()
    );
    let bobs = bob.ask(
        &w,
        2,
        "tools/call",
        json!({"name": "add", "arguments": {"a": 1, "b": 1}}),
    );

    // Every request is announced one by one or counted in a summary.
    let posts = wait_for(
        "every request accounted for",
        Duration::from_secs(30),
        || {
            let h = hook.lock().unwrap().clone();
            let (alone, summed) = accounted(&h, "alice");
            let (b_alone, b_summed) = accounted(&h, "bob");
            (alone.len() as u64 + summed == flooded.len() as u64
                && b_alone.len() as u64 + b_summed == 1)
                .then_some(h)
        },
    );
    // Nothing more comes after a further window.
    std::thread::sleep(Duration::from_secs(INTERVAL + 1));
    let elapsed = start.elapsed().as_secs();
    let later = hook.lock().unwrap().clone();
    assert_eq!(later.len(), posts.len(), "{later:?}");

    // Bounded: at most MAX_POSTS per window, summaries included.
    let windows = (elapsed / INTERVAL + 2) as usize;
    assert!(
        posts.len() <= MAX_POSTS * windows,
        "{} posts in {elapsed} s for {} requests",
        posts.len(),
        flooded.len() + 1
    );
    let (alone, summed) = accounted(&posts, "alice");
    assert!(alone.len() <= PER_CALLER * windows, "{alone:?}");
    assert!(summed >= (flooded.len() - PER_CALLER * windows) as u64);
    assert!(alone.iter().all(|id| flooded.contains(id)), "{alone:?}");
    // Bob's request is not crowded out by alice's flood: announced itself.
    let (b_alone, _) = accounted(&posts, "bob");
    assert_eq!(b_alone, vec![bobs.clone()], "{posts:?}");
    let summary = posts
        .iter()
        .find(|p| p["type"] == "approvals_summarized")
        .unwrap();
    assert_eq!(summary["by_caller"][0]["subject"], "alice", "{summary}");
    assert_eq!(summary["list"], APPROVE);
}
