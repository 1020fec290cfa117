//! What approvers see and who they are: the real arguments of the call
//! they judge (masked everywhere else, held in memory only, each look an
//! audit row); a flood of requests from one caller stopped at its cap
//! while the listing pages oldest first; and one human with a local
//! user and an OIDC identity counted once, never approving their own
//! call under the other name.

use std::{path::Path, time::Duration};

use mcp_interceptor_tests::{
    Agent, NetNs, Proc, TempDir, auditq,
    http::RawResponse,
    oidc::Issuer,
    peer, require_root,
    world::{
        ADMIN, ADMIN_AUD, CLIENT, PORT, UPSTREAM, admin_api as admin, admin_cli as cli,
        approval_id, call_as as call, messages, post_session, token_for as token,
    },
};
use serde_json::{Value, json};

/// Pending requests one caller may have (`approvals.max_pending_per_caller`).
const CAP: usize = 5;
const EMAIL: &str = "attacker@evil.example";
/// A valid (mod-97) IBAN: the masking profile redacts it.
const IBAN: &str = "DE89370400440532013000";

const POLICY: &str = r#"
@id("session")
permit (
  principal,
  action in [Mcp::Action::"initialize", Mcp::Action::"ping", Mcp::Action::"tools/list"],
  resource
);

@id("lookup-needs-oncall")
@approval("oncall")
@approval_mode("retry")
permit (principal, action == Mcp::Action::"tools/call", resource)
when { resource.name == "lookup_customer" };

@id("echo-needs-two")
@approval("oncall")
@approval_quorum("2")
@approval_mode("retry")
permit (principal, action == Mcp::Action::"tools/call", resource)
when { resource.name == "echo" };
"#;

struct World {
    agent: Agent,
    _server: Proc,
    issuer: Issuer,
    ns: NetNs,
    dir: TempDir,
}

/// One issuer, the server, the agent; root is the local user "bob" in
/// oncall, linked to "robert" of the issuer (the same human).
fn world(tag: &str) -> World {
    let (ns, dir) = (NetNs::new(tag), TempDir::new(tag));
    let issuer = Issuer::start(&ns, 9400, dir.path());
    let cred = dir.path().join("upstream-credential");
    std::fs::write(&cred, format!("{UPSTREAM}\n")).unwrap();
    let server = peer::server_with(
        ns.name(),
        "127.0.0.1:8080",
        dir.path(),
        &["--require-auth", UPSTREAM],
    );
    let policy = dir.path().join("p.cedar");
    std::fs::write(&policy, POLICY).unwrap();
    let sections = format!(
        "[identity]\nallow_anonymous = false\n\
         [[identity.oidc]]\nissuer = \"{url}\"\naudiences = [\"{CLIENT}\"]\nleeway_seconds = 5\n\
         [identity.upstream_credential]\nvalue_file = \"{}\"\n\
         [policy]\nfiles = [\"{}\"]\n\
         [approvals]\nmax_pending_per_caller = {CAP}\n\
         [admin]\nsocket = \"{}\"\nlisten = \"{ADMIN}\"\n\
         [[admin.local_users]]\nuser = \"root\"\nsubject = \"bob\"\ngroups = [\"oncall\"]\n\
         oidc_issuer = \"{url}\"\noidc_subject = \"robert\"\n",
        cred.display(),
        policy.display(),
        dir.path().join("admin.sock").display(),
        url = issuer.url,
    );
    let agent = Agent::start_full(&ns, dir.path(), "", PORT, "", &sections, Vec::new());
    World {
        agent,
        _server: server,
        issuer,
        ns,
        dir,
    }
}

fn body(r: &RawResponse) -> String {
    String::from_utf8_lossy(&r.body).into_owned()
}

fn json_of(r: &RawResponse) -> Value {
    serde_json::from_slice(&r.body).unwrap_or_else(|e| panic!("{e}: {}", body(r)))
}

fn approve(ns: &NetNs, id: &str, token: &str) -> RawResponse {
    admin(
        ns,
        "POST",
        &format!("/v1/approvals/{id}/approve"),
        Some(json!({"reason": "checked"})),
        token,
    )
}

/// Every file of the approvals database (with its WAL), as bytes.
fn approvals_db_bytes(dir: &Path) -> Vec<u8> {
    let mut all = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if e.file_name().to_string_lossy().starts_with("approvals.db") {
                all.extend(std::fs::read(&p).unwrap());
            }
        }
    }
    assert!(!all.is_empty(), "no approvals database under {dir:?}");
    all
}

fn contains(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}

#[test]
fn approvers_see_the_real_arguments_through_an_audited_view_only() {
    require_root();
    let mut w = world("aprview");
    let alice = token(&w.issuer, CLIENT, "alice", &["dev"]);
    let args = json!({"id": "7", "notify": EMAIL, "account": IBAN});
    let id = approval_id(&call(&w.ns, &alice, "lookup_customer", args.clone()).unwrap_err());

    // The listing shows masked values: the attacker's account cannot be
    // told from the right one there.
    let carol = token(&w.issuer, ADMIN_AUD, "carol", &["oncall"]);
    let page = json_of(&admin(&w.ns, "GET", "/v1/approvals", None, &carol));
    let listed = &page["approvals"][0];
    assert_eq!(listed["id"], id.as_str(), "{page}");
    assert_eq!(listed["arguments"]["id"], "7");
    assert_ne!(listed["arguments"]["account"], IBAN, "{listed}");
    assert_ne!(listed["arguments"]["notify"], EMAIL, "{listed}");

    // The values view shows the real ones to an approver...
    let values = format!("/v1/approvals/{id}/values");
    let r = admin(&w.ns, "GET", &values, None, &carol);
    assert_eq!(r.status, 200, "{}", body(&r));
    assert_eq!(json_of(&r)["arguments"], args);
    // ...and to the CLI of the local approver...
    let (ok, text) = cli(w.dir.path(), &["approvals", "show", &id, "--values"]);
    assert!(ok && text.contains(IBAN) && text.contains(EMAIL), "{text}");
    // ...never to a bystander, nor with a token for the MCP servers.
    let mallory = token(&w.issuer, ADMIN_AUD, "mallory", &["dev"]);
    assert_eq!(admin(&w.ns, "GET", &values, None, &mallory).status, 404);
    let carol_mcp = token(&w.issuer, CLIENT, "carol", &["oncall"]);
    assert_eq!(admin(&w.ns, "GET", &values, None, &carol_mcp).status, 401);

    // The real values are never on disk.
    assert!(!contains(&approvals_db_bytes(w.dir.path()), IBAN));

    // After a restart the values are gone: approving would be blind and
    // is refused; the caller asking again brings them back.
    w.agent.stop(15);
    w.agent.restart();
    let r = approve(&w.ns, &id, &carol);
    assert_eq!(r.status, 410, "approved blind: {}", body(&r));
    assert!(body(&r).contains("blind"), "{}", body(&r));
    assert_eq!(admin(&w.ns, "GET", &values, None, &carol).status, 410);
    let again = call(&w.ns, &alice, "lookup_customer", args.clone()).unwrap_err();
    assert_eq!(approval_id(&again), id, "the retry names the same request");
    let r = admin(&w.ns, "GET", &values, None, &carol);
    assert_eq!(json_of(&r)["arguments"], args, "{}", body(&r));
    assert_eq!(approve(&w.ns, &id, &carol).status, 200);

    // Each look is an audit row: who looked at which approval, never the
    // values themselves.
    w.agent.stop(15);
    // The auditor's query (deploy/athena/queries/approvals.sql) lists them.
    let rows = auditq::records(
        &w.agent.audit_dir(),
        "approvals",
        &[
            ("from", "2000-01-01 00:00:00"),
            ("to", "2100-01-01 00:00:00"),
        ],
    );
    let views: Vec<_> = rows
        .iter()
        .filter(|r| r["kind"] == "approval_values_viewed")
        .collect();
    let viewers: Vec<&Value> = views.iter().map(|r| &r["approvers"]).collect();
    assert_eq!(
        viewers,
        [&json!(["carol"]), &json!(["bob"]), &json!(["carol"])],
        "{views:?}"
    );
    assert!(
        views.iter().all(|r| r["approval_id"] == id.as_str()),
        "{views:?}"
    );
    let leaked = auditq::sql(
        &w.agent.audit_dir(),
        &format!(
            "SELECT kind FROM mcp_audit WHERE coalesce(arguments, '') LIKE '%{IBAN}%' \
             OR coalesce(message, '') LIKE '%{IBAN}%' OR coalesce(arguments, '') LIKE '%{EMAIL}%'"
        ),
    );
    assert!(
        leaked["rows"].as_array().unwrap().is_empty(),
        "real values in the audit: {leaked}"
    );
}

#[test]
fn a_flood_stops_at_the_per_caller_cap_and_the_listing_pages_oldest_first() {
    require_root();
    let w = world("aprflood");
    let dave = token(&w.issuer, CLIENT, "dave", &["dev"]);
    let alice = token(&w.issuer, CLIENT, "alice", &["dev"]);
    let legit =
        approval_id(&call(&w.ns, &dave, "lookup_customer", json!({"id": "1"})).unwrap_err());

    // alice floods: concurrent requests, each with other arguments.
    let errors: Vec<String> = std::thread::scope(|s| {
        let calls: Vec<_> = (0..CAP + 3)
            .map(|i| {
                let (ns, alice) = (&w.ns, &alice);
                s.spawn(move || {
                    call(ns, alice, "lookup_customer", json!({"id": format!("f{i}")})).unwrap_err()
                })
            })
            .collect();
        calls.into_iter().map(|c| c.join().unwrap()).collect()
    });
    let capped = errors.iter().filter(|e| e.contains("-32004")).count();
    assert_eq!(capped, 3, "{errors:#?}");
    // The refusal as the client reads it: code, reason, the cap named.
    let r = post_session(
        &w.ns,
        &alice,
        None,
        &json!({"jsonrpc": "2.0", "id": 9, "method": "tools/call",
                "params": {"name": "lookup_customer", "arguments": {"id": "f99"}}}),
        Duration::from_secs(10),
    );
    let m = messages(&r).into_iter().find(|m| m["id"] == 9).unwrap();
    assert_eq!(r.status, 200, "{m}");
    assert_eq!(m["error"]["code"], -32004, "{m}");
    assert_eq!(m["error"]["data"]["reason"], "approval_cap", "{m}");
    assert!(
        m["error"]["message"]
            .as_str()
            .unwrap()
            .contains(&format!("max_pending_per_caller = {CAP}")),
        "{m}"
    );

    // Oldest first: dave's request leads page 1 however many follow it.
    let carol = token(&w.issuer, ADMIN_AUD, "carol", &["oncall"]);
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    for page_no in 0.. {
        assert!(page_no < 10, "paging never ends");
        let path = match &cursor {
            Some(c) => format!("/v1/approvals?limit=2&cursor={c}"),
            None => "/v1/approvals?limit=2".to_string(),
        };
        let p = json_of(&admin(&w.ns, "GET", &path, None, &carol));
        let items = p["approvals"].as_array().unwrap();
        assert!(items.len() <= 2, "{p}");
        if page_no == 0 {
            assert_eq!(items[0]["id"], legit.as_str(), "{p}");
        }
        seen.extend(items.iter().cloned());
        match p["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    let ids: Vec<&str> = seen.iter().map(|a| a["id"].as_str().unwrap()).collect();
    let mut unique = ids.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(unique.len(), CAP + 1, "every pending request once: {ids:?}");
    let created: Vec<i64> = seen
        .iter()
        .map(|a| a["created_us"].as_i64().unwrap())
        .collect();
    assert!(
        created.windows(2).all(|p| p[0] <= p[1]),
        "oldest first: {created:?}"
    );
    let from_alice = seen.iter().filter(|a| a["subject"] == "alice").count();
    assert_eq!(from_alice, CAP);

    // The CLI pages the same way.
    let (ok, first) = cli(w.dir.path(), &["approvals", "list", "--limit", "4"]);
    assert!(ok && first.contains(&legit), "{first}");
    let next = first
        .lines()
        .find_map(|l| l.strip_prefix("more: --cursor "))
        .unwrap_or_else(|| panic!("no next page: {first}"));
    let (ok, rest) = cli(
        w.dir.path(),
        &["approvals", "list", "--limit", "4", "--cursor", next],
    );
    assert!(ok && !rest.contains("more:"), "{rest}");
    assert_eq!(rest.matches("apr-").count(), CAP + 1 - 4, "{rest}");

    // Decided requests free the caller's slots.
    let first_of_alice = seen.iter().find(|a| a["subject"] == "alice").unwrap();
    let r = admin(
        &w.ns,
        "POST",
        &format!(
            "/v1/approvals/{}/deny",
            first_of_alice["id"].as_str().unwrap()
        ),
        Some(json!({"reason": "flood"})),
        &carol,
    );
    assert_eq!(r.status, 200, "{}", body(&r));
    let e = call(&w.ns, &alice, "lookup_customer", json!({"id": "after"})).unwrap_err();
    assert!(e.contains("-32003"), "a slot was freed: {e}");
}

#[test]
fn one_human_under_a_local_and_an_oidc_name_votes_once_and_never_on_their_own_call() {
    require_root();
    let mut w = world("aprhuman");
    let alice = token(&w.issuer, CLIENT, "alice", &["dev"]);
    let text = json!({"text": "hi"});
    let id = approval_id(&call(&w.ns, &alice, "echo", text.clone()).unwrap_err());

    // bob (root, local) is robert (OIDC): the second name is no second vote.
    let (ok, out) = cli(
        w.dir.path(),
        &["approvals", "approve", &id, "--reason", "ok"],
    );
    assert!(ok, "{out}");
    let robert = token(&w.issuer, ADMIN_AUD, "robert", &["oncall"]);
    let r = approve(&w.ns, &id, &robert);
    assert_eq!(
        r.status,
        409,
        "one human filled a quorum of two: {}",
        body(&r)
    );
    let e = call(&w.ns, &alice, "echo", text.clone()).unwrap_err();
    assert!(e.contains("-32003"), "still pending: {e}");
    let carol = token(&w.issuer, ADMIN_AUD, "carol", &["oncall"]);
    assert_eq!(approve(&w.ns, &id, &carol).status, 200);
    assert_eq!(call(&w.ns, &alice, "echo", text).unwrap(), "hi");

    // robert's own call: not approvable as bob either.
    let robert_mcp = token(&w.issuer, CLIENT, "robert", &["oncall"]);
    let own =
        approval_id(&call(&w.ns, &robert_mcp, "lookup_customer", json!({"id": "3"})).unwrap_err());
    let (ok, out) = cli(
        w.dir.path(),
        &["approvals", "approve", &own, "--reason", "mine"],
    );
    assert!(
        !ok && out.contains("cannot approve"),
        "approved own call: {out}"
    );

    w.agent.stop(15);
    let v = auditq::sql(
        &w.agent.audit_dir(),
        "SELECT approval_id, approvers, message FROM mcp_audit \
         WHERE kind = 'approval_refused' ORDER BY event_time",
    );
    let rows = v["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 2, "{v}");
    assert_eq!(rows[0][0], id.as_str());
    assert_eq!(rows[0][1], json!(["robert"]));
    assert_eq!(rows[1][0], own.as_str());
    assert_eq!(rows[1][1], json!(["bob"]));
}
