//! Who may act on approvals and grants, with real OIDC issuers: the admin
//! API takes only tokens for its own audience (an AI agent's MCP token
//! cannot approve) and shows each caller only what it may act on; nobody
//! grants themselves; and one subject name under two issuers is two
//! principals for grants, approvals and Cedar.

use mcp_interceptor_tests::{
    Agent, NetNs, Proc, TempDir, auditq,
    http::RawResponse,
    oidc::Issuer,
    peer, require_root,
    world::{
        ADMIN, ADMIN_AUD, CLIENT, PORT, UPSTREAM, admin_api as admin, admin_cli as cli,
        approval_id, call_as as call, token_for as token,
    },
};
use serde_json::{Value, json};

const POLICY: &str = r#"
@id("session")
permit (
  principal,
  action in [Mcp::Action::"initialize", Mcp::Action::"ping", Mcp::Action::"tools/list"],
  resource
);

// Only alice of the first issuer: the principal names its issuer.
@id("echo-for-alice-of-a")
permit (principal == Mcp::User::"http://127.0.0.1:9400|alice",
        action == Mcp::Action::"tools/call", resource)
when { resource.name == "echo" };

@id("lookup-needs-oncall")
@approval("oncall")
@approval_mode("retry")
permit (principal, action == Mcp::Action::"tools/call", resource)
when { resource.name == "lookup_customer" };

@id("query-under-grant")
permit (principal, action == Mcp::Action::"tools/call", resource)
when { resource.name == "query" && !context.grants.isEmpty() };
"#;

/// Two issuers (A on 9400, B on 9401), the server, the agent.
struct Two {
    agent: Agent,
    _server: Proc,
    a: Issuer,
    b: Issuer,
    ns: NetNs,
    dir: TempDir,
}

fn two(tag: &str) -> Two {
    let (ns, dir) = (NetNs::new(tag), TempDir::new(tag));
    let a = Issuer::start(&ns, 9400, dir.path());
    let b = Issuer::start(&ns, 9401, dir.path());
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
    let entry = |i: &Issuer| {
        format!(
            "[[identity.oidc]]\nissuer = \"{}\"\naudiences = [\"{CLIENT}\"]\nleeway_seconds = 5\n",
            i.url
        )
    };
    let sections = format!(
        "[identity]\nallow_anonymous = false\n{}{}\
         [identity.upstream_credential]\nvalue_file = \"{}\"\n\
         [policy]\nfiles = [\"{}\"]\n\
         [approvals]\ngrant_groups = [\"security\"]\n\
         [admin]\nsocket = \"{}\"\nlisten = \"{ADMIN}\"\n\
         [[admin.local_users]]\nuser = \"root\"\nsubject = \"bob\"\ngroups = [\"oncall\", \"security\"]\n",
        entry(&a),
        entry(&b),
        cred.display(),
        policy.display(),
        dir.path().join("admin.sock").display()
    );
    let agent = Agent::start_full(&ns, dir.path(), "", PORT, "", &sections, Vec::new());
    Two {
        agent,
        _server: server,
        a,
        b,
        ns,
        dir,
    }
}

fn body(r: &RawResponse) -> String {
    String::from_utf8_lossy(&r.body).into_owned()
}

fn ids(r: &RawResponse) -> Vec<String> {
    let page: Value =
        serde_json::from_slice(&r.body).unwrap_or_else(|e| panic!("{e}: {}", body(r)));
    page["approvals"]
        .as_array()
        .unwrap_or_else(|| panic!("not a page: {page}"))
        .iter()
        .map(|a| a["id"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn the_admin_api_takes_only_its_audience_and_shows_each_caller_what_it_may_act_on() {
    require_root();
    let t = two("admaud");
    let alice = token(&t.a, CLIENT, "alice", &["dev"]);
    let err = call(&t.ns, &alice, "lookup_customer", json!({"id": "7"})).unwrap_err();
    let id = approval_id(&err);

    // carol's MCP token, as an AI agent acting for her would hold it.
    let carol_mcp = token(&t.a, CLIENT, "carol", &["oncall"]);
    let approve = format!("/v1/approvals/{id}/approve");
    let r = admin(
        &t.ns,
        "POST",
        &approve,
        Some(json!({"reason": "ok"})),
        &carol_mcp,
    );
    assert_eq!(
        r.status,
        401,
        "an MCP-audience token approved: {}",
        body(&r)
    );
    let r = admin(&t.ns, "GET", "/v1/approvals", None, &carol_mcp);
    assert_eq!(r.status, 401, "{}", body(&r));

    // Listing: the approver group sees it, the asker sees its own, others
    // see nothing (not even by id).
    let carol = token(&t.a, ADMIN_AUD, "carol", &["oncall"]);
    let mallory = token(&t.a, ADMIN_AUD, "mallory", &["dev"]);
    let alice_admin = token(&t.a, ADMIN_AUD, "alice", &["dev"]);
    let alice_of_b = token(&t.b, ADMIN_AUD, "alice", &["dev"]);
    let list = |tok: &str| ids(&admin(&t.ns, "GET", "/v1/approvals", None, tok));
    assert_eq!(list(&carol), vec![id.clone()]);
    assert_eq!(list(&alice_admin), vec![id.clone()]);
    assert!(
        list(&mallory).is_empty(),
        "a bystander lists others' requests"
    );
    assert!(
        list(&alice_of_b).is_empty(),
        "another issuer's alice is not alice"
    );
    let r = admin(&t.ns, "GET", &format!("/v1/approvals/{id}"), None, &mallory);
    assert_eq!(r.status, 404, "{}", body(&r));

    let r = admin(
        &t.ns,
        "POST",
        &approve,
        Some(json!({"reason": "ok"})),
        &carol,
    );
    assert_eq!(r.status, 200, "{}", body(&r));
    call(&t.ns, &alice, "lookup_customer", json!({"id": "7"})).expect("approved once");
}

#[test]
fn a_granter_cannot_grant_themselves() {
    require_root();
    let t = two("selfgrant");
    // bob (local socket, in security) for bob.
    let (ok, text) = cli(
        t.dir.path(),
        &[
            "grants",
            "add",
            "--subject",
            "bob",
            "--tool",
            "query",
            "--ttl",
            "5m",
            "--reason",
            "INC-1",
        ],
    );
    assert!(!ok && text.contains("themselves"), "{text}");
    // sam (admin API, in security) for sam.
    let sam = token(&t.a, ADMIN_AUD, "sam", &["security"]);
    let grant = |subject: &str| json!({"subject": subject, "tool": "query", "ttl_seconds": 300, "reason": "INC-1"});
    let r = admin(&t.ns, "POST", "/v1/grants", Some(grant("sam")), &sam);
    assert_eq!(r.status, 403, "{}", body(&r));
    assert!(body(&r).contains("themselves"), "{}", body(&r));
    let sam_mcp = token(&t.a, CLIENT, "sam", &["security"]);
    assert!(call(&t.ns, &sam_mcp, "query", json!({"sql": "select 1"})).is_err());
    // Another member may.
    let mut for_sam = grant("sam");
    for_sam["issuer"] = json!(t.a.url);
    let sue = token(&t.a, ADMIN_AUD, "sue", &["security"]);
    let r = admin(&t.ns, "POST", "/v1/grants", Some(for_sam), &sue);
    assert_eq!(r.status, 200, "{}", body(&r));
    assert_eq!(
        call(&t.ns, &sam_mcp, "query", json!({"sql": "select 1"})).unwrap(),
        "ran: select 1"
    );

    let mut agent = t.agent;
    agent.stop(15);
    let v = auditq::sql(
        &agent.audit_dir(),
        "SELECT kind, message FROM mcp_audit WHERE kind = 'grant_refused'",
    );
    let rows = v["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 2, "each refusal is audited: {v}");
    assert!(
        rows.iter()
            .all(|r| r[1].as_str().unwrap().contains("themselves")),
        "{v}"
    );
}

#[test]
fn one_subject_name_under_two_issuers_is_two_principals() {
    require_root();
    let t = two("issuers");
    let alice_a = token(&t.a, CLIENT, "alice", &["dev"]);
    let alice_b = token(&t.b, CLIENT, "alice", &["dev"]);

    // Approvals: alice of A's approved call is not alice of B's.
    let args = json!({"id": "9"});
    let id = approval_id(&call(&t.ns, &alice_a, "lookup_customer", args.clone()).unwrap_err());
    let (ok, text) = cli(
        t.dir.path(),
        &["approvals", "approve", &id, "--reason", "ok"],
    );
    assert!(ok, "{text}");
    let other = call(&t.ns, &alice_b, "lookup_customer", args.clone()).unwrap_err();
    assert_ne!(approval_id(&other), id, "alice of B consumed A's approval");
    call(&t.ns, &alice_a, "lookup_customer", args).expect("A's approval still there");

    // Grants: to alice of A only.
    let (ok, text) = cli(
        t.dir.path(),
        &[
            "grants",
            "add",
            "--subject",
            "alice",
            "--issuer",
            &t.a.url,
            "--tool",
            "query",
            "--ttl",
            "5m",
            "--reason",
            "INC-2",
        ],
    );
    assert!(ok, "{text}");
    let q = json!({"sql": "select 1"});
    assert_eq!(
        call(&t.ns, &alice_a, "query", q.clone()).unwrap(),
        "ran: select 1"
    );
    let e = call(&t.ns, &alice_b, "query", q).unwrap_err();
    assert!(e.contains("-32002"), "alice of B used A's grant: {e}");
    // Two issuers: a grant must name one.
    let (ok, text) = cli(
        t.dir.path(),
        &[
            "grants",
            "add",
            "--subject",
            "alice",
            "--tool",
            "query",
            "--ttl",
            "5m",
            "--reason",
            "INC-2",
        ],
    );
    assert!(!ok && text.contains("issuer"), "{text}");

    // Cedar: the policy names alice of A; alice of B is someone else.
    assert_eq!(
        call(&t.ns, &alice_a, "echo", json!({"text": "hi"})).unwrap(),
        "hi"
    );
    let e = call(&t.ns, &alice_b, "echo", json!({"text": "hi"})).unwrap_err();
    assert!(e.contains("-32002"), "{e}");
}
