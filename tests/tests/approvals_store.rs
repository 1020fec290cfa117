//! Approvals and grants on a shared store: several `Approvals` (the agents
//! of a fleet, each with its own host name) over ONE DynamoDB table served
//! by a real moto (one request at a time, as tests/peers/moto_serial.py
//! says why), and the same contract checked against SQLite so the two
//! stores cannot drift.

use std::{
    sync::{Arc, Barrier, Mutex},
    time::{Duration, Instant},
};

use interceptor::{
    approval::{
        Actor, ApprovalError, Approvals, Call, NewGrant, PageQuery, Status,
        store::{Backend, DynamoDb, Sqlite, dynamo},
    },
    config::Config,
    pipeline::{ApprovalMode, ApprovalRule, CallFacts, Events, LifecycleEvent, LifecycleSink},
    policy::phase::Grants,
};
use mcp_interceptor_tests::{
    Proc, TempDir,
    s3::{KEY_ID, SECRET, boto, free_port, moto_serial},
};
use serde_json::{Value, json};

const I: &str = "https://idp.example";
/// How often the agents of these tests re-read the table (the default).
const POLL: Duration = Duration::from_millis(500);

/// Every event the agents of one test recorded, fleet-wide.
#[derive(Default)]
struct Log(Mutex<Vec<LifecycleEvent>>);

impl LifecycleSink for Log {
    fn lifecycle(&self, e: LifecycleEvent) {
        self.0.lock().unwrap().push(e);
    }
}

impl Log {
    fn count(&self, kind: &str) -> usize {
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter(|e| e.kind == kind)
            .count()
    }
}

fn config() -> Config {
    let mut cfg = Config::default();
    cfg.approvals.grant_groups = vec!["security".into()];
    cfg
}

/// One moto, one table: the fleet's queue.
struct Table {
    _moto: Proc,
    _dir: TempDir,
    target: dynamo::Target,
    log: Arc<Log>,
}

impl Table {
    fn new(tag: &str) -> Self {
        let dir = TempDir::new(tag);
        let port = free_port();
        // Requests in turn: the races below test the store's conditional
        // writes, which moto's threaded server does not make atomic.
        let moto = moto_serial(port, dir.path(), tag);
        let target = target(port, "approvals");
        dynamo::create_table(&target).expect("create the table");
        Self {
            _moto: moto,
            _dir: dir,
            target,
            log: Arc::default(),
        }
    }

    fn store(&self, host: &str) -> DynamoDb {
        DynamoDb::open(&self.target, host, &config()).expect("open the table")
    }

    /// An agent of the fleet, named `host`.
    fn host(&self, host: &str) -> Arc<Approvals> {
        let store = Box::new(self.store(host));
        Approvals::with_store(&config(), store, Some(POLL), self.events(), mask())
            .expect("open approvals")
    }

    fn events(&self) -> Events {
        Events::new(Some(self.log.clone()), None)
    }
}

fn target(port: u16, table: &str) -> dynamo::Target {
    dynamo::Target {
        table: table.into(),
        region: "us-east-1".into(),
        endpoint: format!("http://127.0.0.1:{port}"),
        key: Some((KEY_ID.into(), SECRET.into())),
    }
}

fn mask() -> interceptor::approval::MaskFn {
    Arc::new(|v: &Value| v.clone())
}

fn call(args: Value, quorum: u32, mode: ApprovalMode) -> Call {
    let facts = CallFacts {
        subject: "alice".into(),
        issuer: I.into(),
        groups: vec!["dev".into()],
        server: "db".into(),
        method: "tools/call".into(),
        target: Some("drop_table".into()),
        arguments_sha256: String::new(),
        policy_version: "v1".into(),
    };
    let rule = ApprovalRule {
        groups: vec!["oncall".into()],
        quorum,
        mode,
    };
    Call::new(facts, Some(args), vec!["needs-oncall".into()], rule)
}

fn actor(subject: &str, groups: &[&str]) -> Actor {
    Actor {
        subject: subject.into(),
        issuer: I.into(),
        groups: groups.iter().map(|g| g.to_string()).collect(),
        via: "test".into(),
        human: interceptor::approval::human_key(I, subject),
    }
}

fn grant(tool: &str, ttl_seconds: u64) -> NewGrant {
    NewGrant {
        subject: "alice".into(),
        issuer: Some(I.into()),
        server: "*".into(),
        tool: tool.into(),
        ttl_seconds,
        reason: "INC-7".into(),
    }
}

/// Polls `f` every 20 ms until it holds; the time it took.
fn within(limit: Duration, what: &str, mut f: impl FnMut() -> bool) -> Duration {
    let t0 = Instant::now();
    while !f() {
        assert!(t0.elapsed() < limit, "{what}: not within {limit:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
    t0.elapsed()
}

/// What both stores must do alike, on two agents `a` and `b` sharing one
/// store (`log` sees both agents' events).
fn contract(a: &Approvals, b: &Approvals, log: &Log) {
    let (bob, carol) = (actor("bob", &["oncall"]), actor("carol", &["oncall"]));
    // Retry mode: asked on a, approved on b, used once.
    let c = call(json!({"table": "orders"}), 1, ApprovalMode::Retry);
    let r = a.request(&c).unwrap();
    assert_eq!(b.pending_for(&c).unwrap().unwrap().id, r.id);
    assert_eq!(
        b.vote(&r.id, &bob, true, "INC-1").unwrap().status,
        Status::Approved
    );
    assert!(matches!(
        a.vote(&r.id, &carol, true, "late"),
        Err(ApprovalError::NotPending(_, "approved"))
    ));
    assert_eq!(a.consume(&c.digest()).unwrap().unwrap().id, r.id);
    assert!(b.consume(&c.digest()).unwrap().is_none());
    assert_eq!(b.get(&r.id).unwrap().status, Status::Used);
    // Quorum 2 across agents; one vote per approver whichever agent.
    let c2 = call(json!({"table": "users"}), 2, ApprovalMode::Retry);
    let r2 = a.request(&c2).unwrap();
    assert_eq!(
        a.vote(&r2.id, &bob, true, "ok").unwrap().status,
        Status::Pending
    );
    assert!(matches!(
        b.vote(&r2.id, &bob, true, "again"),
        Err(ApprovalError::AlreadyVoted(_))
    ));
    let done = b.vote(&r2.id, &carol, true, "ok").unwrap();
    assert_eq!(
        (done.status, done.approvers()),
        (Status::Approved, vec!["bob".into(), "carol".into()])
    );
    // One no, on the other agent, denies.
    let r3 = a
        .request(&call(json!({"t": 3}), 2, ApprovalMode::Retry))
        .unwrap();
    b.vote(&r3.id, &bob, false, "no").unwrap();
    assert_eq!(a.get(&r3.id).unwrap().status, Status::Denied);
    // Listings page in creation order, whichever agent asked.
    let r4 = b
        .request(&call(json!({"t": 4}), 1, ApprovalMode::Retry))
        .unwrap();
    assert_eq!(a.count(Status::Pending).unwrap(), 1);
    let q = PageQuery {
        limit: 2,
        ..PageQuery::default()
    };
    let p1 = a.page_for(&bob, &q).unwrap();
    let ids: Vec<_> = p1.approvals.iter().map(|x| x.id.clone()).collect();
    assert_eq!(ids, vec![r.id.clone(), r2.id.clone()]);
    let q2 = PageQuery {
        cursor: p1.next_cursor,
        ..q.clone()
    };
    let p2 = b.page_for(&bob, &q2).unwrap();
    let ids: Vec<_> = p2.approvals.iter().map(|x| x.id.clone()).collect();
    assert_eq!(
        (ids, p2.next_cursor),
        (vec![r3.id.clone(), r4.id.clone()], None)
    );
    let newest = PageQuery {
        newest_first: true,
        ..q
    };
    assert_eq!(a.page_for(&bob, &newest).unwrap().approvals[0].id, r4.id);
    // Grants: added on a, listed and revoked on b, gone on a.
    let sec = actor("sam", &["security"]);
    let g = a.grant_add(&sec, grant("db.*", 600)).unwrap();
    assert_eq!(b.grants_list(&sec, false).unwrap()[0].id, g.id);
    b.grant_revoke(&sec, &g.id, "done").unwrap();
    assert!(matches!(
        a.grant_revoke(&sec, &g.id, "twice"),
        Err(ApprovalError::NoGrant(_))
    ));
    assert!(a.grants_list(&sec, false).unwrap().is_empty());
    assert_eq!(a.grants_list(&sec, true).unwrap().len(), 1);
    // An expired grant's end is recorded once, by one of the agents.
    a.grant_add(&sec, grant("fs.*", 1)).unwrap();
    std::thread::sleep(Duration::from_millis(1100));
    std::thread::scope(|s| {
        s.spawn(|| a.sweep());
        s.spawn(|| b.sweep());
    });
    assert_eq!(log.count("grant_expired"), 1);
    assert_eq!(log.count("approval_approved"), 2);
}

/// The store itself refuses a second vote of one approver (two agents
/// could both pass the check the queue makes first).
fn one_vote_each(store: &dyn Backend, a: &Approvals) {
    let r = a
        .request(&call(json!({"v": 1}), 2, ApprovalMode::Retry))
        .unwrap();
    let vote = interceptor::approval::Vote {
        approver: "dave".into(),
        human: String::new(),
        approve: true,
        reason: "ok".into(),
        at_us: 1,
    };
    store.add_vote(&r.id, &vote).unwrap();
    assert!(matches!(
        store.add_vote(&r.id, &vote),
        Err(ApprovalError::AlreadyVoted(_))
    ));
    assert_eq!(a.get(&r.id).unwrap().votes, vec![vote]);
}

#[test]
fn sqlite_and_dynamodb_keep_one_contract() {
    let dir = TempDir::new("store-contract");
    let path = dir.path().join("approvals.db");
    let sqlite = |log: &Arc<Log>| {
        let store = Box::new(Sqlite::open(&path).unwrap());
        Approvals::with_store(
            &config(),
            store,
            None,
            Events::new(Some(log.clone()), None),
            mask(),
        )
        .unwrap()
    };
    let log = Arc::new(Log::default());
    let (a, b) = (sqlite(&log), sqlite(&log));
    contract(&a, &b, &log);
    one_vote_each(&Sqlite::open(&path).unwrap(), &a);

    let t = Table::new("store-contract");
    let keys: Vec<[u8; 32]> = ["a", "b", "c"]
        .iter()
        .map(|h| t.store(h).state_key().unwrap())
        .collect();
    assert!(
        keys.windows(2).all(|k| k[0] == k[1]),
        "one requestState key for the fleet"
    );
    let a = t.host("a");
    contract(&a, &t.host("b"), &t.log);
    one_vote_each(&t.store("c"), &a);
}

#[test]
fn a_held_call_resumes_when_another_agent_decides() {
    let t = Table::new("store-hold");
    let (a, b) = (t.host("a"), t.host("b"));
    let held = a
        .request(&call(json!({"h": 1}), 1, ApprovalMode::Hold))
        .unwrap();
    let rx = a.subscribe(&held.id);
    let voted = Instant::now();
    b.vote(&held.id, &actor("bob", &["oncall"]), true, "go")
        .unwrap();
    let took = within(Duration::from_secs(1), "A sees the approval", || {
        *rx.borrow() == Status::Approved
    });
    eprintln!(
        "held call on A woken {:?} after B's vote ({took:?} polling)",
        voted.elapsed()
    );
    // A deny from another agent ends a held call as well.
    let held = a
        .request(&call(json!({"h": 2}), 1, ApprovalMode::Hold))
        .unwrap();
    let rx = a.subscribe(&held.id);
    b.vote(&held.id, &actor("bob", &["oncall"]), false, "no")
        .unwrap();
    // (A final status is sent, then the channel closed: the value stays.)
    within(Duration::from_secs(1), "A sees the denial", || {
        *rx.borrow() == Status::Denied
    });
}

#[test]
fn racing_agents_decide_once() {
    let t = Table::new("store-race");
    let hosts = [t.host("a"), t.host("b"), t.host("c")];
    for round in 0..3 {
        // Quorum 2: two approvers on two agents at once, one approval.
        let r = hosts[0]
            .request(&call(json!({"q": round}), 2, ApprovalMode::Retry))
            .unwrap();
        let go = Barrier::new(2);
        std::thread::scope(|s| {
            for (h, who) in [(&hosts[1], "bob"), (&hosts[2], "carol")] {
                let (go, id) = (&go, &r.id);
                s.spawn(move || {
                    go.wait();
                    h.vote(id, &actor(who, &["oncall"]), true, "ok").unwrap();
                });
            }
        });
        assert_eq!(hosts[0].get(&r.id).unwrap().status, Status::Approved);
        assert_eq!(
            t.log.count("approval_approved"),
            round + 1,
            "one approval event per request"
        );
        // Retry mode: the approved call is taken by exactly one agent.
        let digest = call(json!({"q": round}), 2, ApprovalMode::Retry).digest();
        let go = Barrier::new(3);
        let taken: usize = std::thread::scope(|s| {
            let runs: Vec<_> = hosts
                .iter()
                .map(|h| {
                    let (go, digest) = (&go, &digest);
                    s.spawn(move || {
                        go.wait();
                        h.consume(digest).unwrap().is_some() as usize
                    })
                })
                .collect();
            runs.into_iter().map(|r| r.join().unwrap()).sum()
        });
        assert_eq!(taken, 1, "round {round}: the approved call passed once");
    }
    assert_eq!(t.log.count("approval_used"), 3);
}

#[test]
fn grants_reach_every_agent() {
    let t = Table::new("store-grants");
    let (a, b) = (t.host("a"), t.host("b"));
    let sec = actor("sam", &["security"]);
    let covers = |h: &Approvals| !h.covering(I, "alice", "db", "db.drop").is_empty();
    let g = a.grant_add(&sec, grant("db.*", 600)).unwrap();
    assert!(covers(&a));
    let took = within(Duration::from_secs(2), "B applies A's grant", || covers(&b));
    eprintln!("grant added on A in force on B after {took:?}");
    b.grant_revoke(&sec, &g.id, "done").unwrap();
    let took = within(Duration::from_secs(2), "A drops B's revocation", || {
        !covers(&a)
    });
    eprintln!("revocation on B in force on A after {took:?}");
}

#[test]
fn a_restart_interrupts_only_its_own_holds() {
    let t = Table::new("store-restart");
    let (a, b) = (t.host("a"), t.host("b"));
    let on_a = a
        .request(&call(json!({"a": 1}), 1, ApprovalMode::Hold))
        .unwrap();
    let on_b = b
        .request(&call(json!({"b": 1}), 1, ApprovalMode::Hold))
        .unwrap();
    let retry = a
        .request(&call(json!({"r": 1}), 1, ApprovalMode::Retry))
        .unwrap();
    drop(a);
    let a = t.host("a");
    assert_eq!(a.get(&on_a.id).unwrap().status, Status::Interrupted);
    assert_eq!(a.get(&on_b.id).unwrap().status, Status::Pending);
    assert_eq!(a.get(&retry.id).unwrap().status, Status::Pending);
    // b stops: only its own hold is refused.
    b.interrupt_holds();
    assert_eq!(a.get(&on_b.id).unwrap().status, Status::Interrupted);
    assert_eq!(t.log.count("approval_interrupted"), 2);
}

/// `(Count, ScannedCount)` of a Query of `by_kind` partition `kind`, as
/// DynamoDB bills it (ScannedCount: the items read, filters or not).
fn partition(t: &Table, kind: &str) -> (u64, u64) {
    let port = t
        .target
        .endpoint
        .rsplit(':')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let out = boto(
        port,
        &format!(
            "ddb = boto3.client('dynamodb', endpoint_url='http://127.0.0.1:{port}', \
             region_name='us-east-1', aws_access_key_id='{KEY_ID}', aws_secret_access_key='{SECRET}')\n\
             r = ddb.query(TableName='{}', IndexName='by_kind', \
             KeyConditionExpression='#k = :k', ExpressionAttributeNames={{'#k': 'kind'}}, \
             ExpressionAttributeValues={{':k': {{'S': '{kind}'}}}})\n\
             print(r['Count'], r['ScannedCount'])",
            t.target.table
        ),
    );
    let mut n = out.split_whitespace().map(|x| x.parse().unwrap());
    (n.next().unwrap(), n.next().unwrap())
}

#[test]
fn the_sweep_reads_open_requests_and_live_grants_only() {
    let t = Table::new("store-parts");
    let a = t.host("a");
    let (bob, sec) = (actor("bob", &["oncall"]), actor("sam", &["security"]));
    let ids: Vec<String> = (0..6)
        .map(|i| {
            let c = call(json!({ "n": i }), 1, ApprovalMode::Retry);
            a.request(&c).unwrap().id
        })
        .collect();
    for id in &ids[..5] {
        a.vote(id, &bob, false, "no").unwrap();
    }
    // What the sweep, the per-caller cap and the pending count read every
    // second on every agent: the one open request, not the closed history.
    assert_eq!(partition(&t, "approval#pending"), (1, 1));
    assert_eq!(partition(&t, "approval#denied"), (5, 5));
    assert_eq!(a.count(Status::Pending).unwrap(), 1);
    let q = PageQuery {
        limit: 10,
        ..PageQuery::default()
    };
    let all = a.page_for(&bob, &q).unwrap();
    assert_eq!(
        all.approvals.len(),
        6,
        "the listing still shows every status"
    );
    // A revoked grant leaves what every agent re-reads each poll.
    let kept = a.grant_add(&sec, grant("db.*", 600)).unwrap();
    let gone = a.grant_add(&sec, grant("fs.*", 600)).unwrap();
    a.grant_revoke(&sec, &gone.id, "done").unwrap();
    assert_eq!(partition(&t, "grant#active"), (1, 1));
    assert_eq!(partition(&t, "grant#ended"), (1, 1));
    let live = a.grants_list(&sec, false).unwrap();
    assert_eq!(
        live.iter().map(|g| &g.id).collect::<Vec<_>>(),
        vec![&kept.id]
    );
    assert_eq!(a.grants_list(&sec, true).unwrap().len(), 2);
}

#[test]
fn one_agent_sweeps_for_the_fleet() {
    let t = Table::new("store-lease");
    let (a, b) = (t.store("a"), t.store("b"));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_micros() as i64;
    let (lease, look) = (dynamo::LEASE_US, dynamo::TRY_US);
    assert!(a.sweep_turn(now).unwrap(), "the first agent takes the turn");
    assert!(!b.sweep_turn(now).unwrap(), "a holds it");
    assert!(
        !b.sweep_turn(now + look / 2).unwrap(),
        "b looks again only later"
    );
    // a renews halfway through; b, looking after its first lease would
    // have run out, finds it renewed.
    assert!(a.sweep_turn(now + lease * 6 / 10).unwrap());
    assert!(!b.sweep_turn(now + lease + 1).unwrap(), "renewed by a");
    // a stops: once its lease runs out, b takes the turn, and a sees it.
    let later = now + lease * 6 / 10 + lease + look + 1;
    assert!(b.sweep_turn(later).unwrap(), "b takes over");
    assert!(!a.sweep_turn(later).unwrap(), "a sees b's turn");
}

#[test]
fn the_agent_refuses_a_table_it_cannot_use() {
    let t = Table::new("store-missing");
    let mut missing = t.target.clone();
    missing.table = "no-such-table".into();
    let err = DynamoDb::open(&missing, "a", &config())
        .err()
        .expect("refused");
    let text = err.to_string();
    for want in [
        "\"no-such-table\"",
        "us-east-1",
        &t.target.endpoint,
        "ResourceNotFoundException",
        "create the table",
    ] {
        assert!(text.contains(want), "{want:?} missing from: {text}");
    }
}

/// `doctor`, as the agent would start: the table from `approvals.store`,
/// endpoint and credentials from the AWS environment.
#[test]
fn doctor_checks_the_table_with_the_agents_environment() {
    let t = Table::new("store-doctor");
    let dir = TempDir::new("store-doctor-cfg");
    let doctor = |table: &str| -> Value {
        let cfg = dir.path().join(format!("{table}.toml"));
        let text = format!(
            "[identity]\nallow_anonymous = true\n[[intercept.ports]]\nport = 8080\n\
             [admin]\nsocket = \"{d}/admin.sock\"\n[audit]\ndir = \"{d}/audit\"\n\
             [approvals]\nstore = \"dynamodb://{table}\"\n",
            d = dir.path().display()
        );
        std::fs::write(&cfg, text).unwrap();
        let argv: Vec<String> = [
            format!("AWS_ACCESS_KEY_ID={KEY_ID}"),
            format!("AWS_SECRET_ACCESS_KEY={SECRET}"),
            "AWS_REGION=us-east-1".into(),
            format!("AWS_ENDPOINT_URL_DYNAMODB={}", t.target.endpoint),
            mcp_interceptor_tests::bin("mcp-interceptor")
                .display()
                .to_string(),
            "doctor".into(),
            "-c".into(),
            cfg.display().to_string(),
            "--json".into(),
        ]
        .into();
        let out = mcp_interceptor_tests::run_in(
            None,
            std::path::Path::new("/usr/bin/env"),
            &argv,
            Duration::from_secs(60),
        );
        let report: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "doctor printed no JSON ({e}): {}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
        let found = report["checks"].as_array().unwrap().iter();
        let mut checks = found.filter(|c| c["name"] == "approvals-store");
        checks
            .next()
            .cloned()
            .unwrap_or_else(|| panic!("no approvals-store check: {report:#}"))
    };
    let good = doctor("approvals");
    assert_eq!(good["status"], "ok", "{good:#}");
    assert!(
        good["detail"]
            .as_str()
            .unwrap()
            .contains(&t.target.endpoint)
    );
    let bad = doctor("missing-table");
    assert_eq!(bad["status"], "fail", "{bad:#}");
    let detail = bad["detail"].as_str().unwrap();
    assert!(
        detail.contains("\"missing-table\"") && detail.contains("ResourceNotFoundException"),
        "{detail}"
    );
}
