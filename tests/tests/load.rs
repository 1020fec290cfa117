//! Many connections at once through the steered port, bounded in count
//! and time: 10,000 clients hold a connection each, mid-request (the agent
//! counts them all), while a fresh client is still answered promptly;
//! then half of them complete their MCP `tools/call`, each getting its own
//! answer, and the rest hang up mid-body. The agent's memory per held
//! connection stays under a ceiling and does not creep up from one wave
//! of 10,000 to the next. And `http.max_connections` bites: one
//! connection over the limit gets a 503 and is counted.
//!
//! The clients are one tokio runtime on a thread inside the test's
//! namespace, speaking raw HTTP/1.1 (so the bytes in flight are known); the
//! server is the real rmcp `mcp-peer` (stateless JSON answers, so 10,000
//! calls do not mean 10,000 server sessions).

use std::{
    io::{Read, Write},
    net::SocketAddr,
    os::fd::AsFd,
    time::{Duration, Instant},
};

use mcp_interceptor_tests::{Agent, NetNs, Proc, TempDir, bin, require_root, wait_for};
use serde_json::Value;
use tokio::{
    io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader},
    net::TcpStream,
    sync::Semaphore,
    task::JoinSet,
};

/// Held at once. Each costs the test one descriptor and the agent about
/// three (client, its duplicate for late 408s, the upstream in flight).
const CONNS: usize = 10_000;
/// Connects in progress at once: under the proxy socket's backlog (1024),
/// so no SYN is dropped and retried a second later.
const OPENING: usize = 512;
/// Held calls completed in each wave; the rest hang up mid-body (the path
/// a leak would hide in). All 10,000 take the dev build 25-40 s on two
/// busy cores (the agent and the server each manage about 300 calls/s
/// unoptimized), past this test's budget; 3,000 taken at random from
/// every stage of the opening show that held connections are served, not
/// just accepted. Both waves do the same, so their memory compares.
const SAMPLE: usize = 3_000;
/// Bound on each phase.
const PHASE: Duration = Duration::from_secs(90);
/// Average agent memory per held connection, KiB: at most what one
/// connection's read buffer may grow to (`proxy::http::READ_BUFFER`).
/// hyper starts a connection with 8 KiB for reading and 8 KiB for
/// writing; the task, the request head and the half body come on top
/// (36-38 KiB all told, dev and release builds alike). A buffer grown to
/// its cap on every connection, or a body buffer sized by
/// `max_request_body`, would be far above.
const MAX_KIB_PER_CONN: f64 = 64.0;

fn target() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8080))
}

/// The descriptors 10,000 connections need in the test, and in the agent,
/// which inherits the limits and raises its soft limit to the hard one
/// (one descriptor per idle client, two with a request in flight upstream,
/// whose connections are at most the 324 bypass ports).
fn raise_nofile() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let need = CONNS as u64 + 2048;
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).expect("getrlimit");
    if soft >= need {
        return;
    }
    // Above the hard limit only with CAP_SYS_RESOURCE, which a container's
    // root may lack.
    let (s, h) = if hard >= need {
        (hard, hard)
    } else {
        (need, need)
    };
    setrlimit(Resource::RLIMIT_NOFILE, s, h).unwrap_or_else(|e| {
        panic!("RLIMIT_NOFILE is {soft}/{hard}; this test needs {need} descriptors: {e}")
    });
}

/// VmRSS and VmHWM of `pid`, KiB.
fn memory(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("agent status");
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or_else(|| panic!("{name} in /proc/{pid}/status"))
    };
    (field("VmRSS:"), field("VmHWM:"))
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// One `/metrics` sample from the agent's admin socket.
fn metric(agent: &Agent, name: &str) -> f64 {
    let mut s = std::os::unix::net::UnixStream::connect(agent.admin_socket()).expect("admin");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("{name} not in /metrics:\n{out}"))
}

/// A `tools/call echo` of a text unique to (wave, connection), split in
/// two: the head with half the body, and the rest.
fn call(wave: u32, i: usize) -> (Vec<u8>, Vec<u8>, String) {
    let text = format!("w{wave}-c{i}");
    let body = serde_json::json!({"jsonrpc": "2.0", "id": i, "method": "tools/call",
        "params": {"name": "echo", "arguments": {"text": text}}})
    .to_string();
    let mut first = format!(
        "POST /mcp HTTP/1.1\r\nHost: mcp.test\r\nContent-Type: application/json\r\n\
         Accept: application/json, text/event-stream\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    let half = body.len() / 2;
    first.extend_from_slice(&body.as_bytes()[..half]);
    (first, body.as_bytes()[half..].to_vec(), text)
}

/// Reads one response (Content-Length or chunked): its head and body.
async fn response(s: &mut TcpStream) -> Result<(String, Vec<u8>), String> {
    let mut r = BufReader::with_capacity(2048, s);
    let mut head = String::new();
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).await.map_err(|e| e.to_string())? == 0 {
            return Err(format!("closed after {head:?}"));
        }
        if line == "\r\n" {
            break;
        }
        head.push_str(&line);
    }
    let lower = head.to_ascii_lowercase();
    let mut body = Vec::new();
    if let Some(n) = lower
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse::<usize>().ok())
    {
        body.resize(n, 0);
        r.read_exact(&mut body).await.map_err(|e| e.to_string())?;
    } else if lower.contains("transfer-encoding: chunked") {
        loop {
            let mut size = String::new();
            r.read_line(&mut size).await.map_err(|e| e.to_string())?;
            let n = usize::from_str_radix(size.trim(), 16).map_err(|e| format!("{size:?}: {e}"))?;
            let mut chunk = vec![0; n + 2];
            r.read_exact(&mut chunk).await.map_err(|e| e.to_string())?;
            if n == 0 {
                break;
            }
            body.extend_from_slice(&chunk[..n]);
        }
    } else {
        return Err(format!("no framing: {head}"));
    }
    Ok((head, body))
}

/// Reads one response and checks that it is the answer to the call that
/// sent `want`.
async fn answer(s: &mut TcpStream, want: &str) -> Result<(), String> {
    let (head, body) = response(s).await?;
    if !head.starts_with("HTTP/1.1 200") {
        return Err(format!("not 200: {head}"));
    }
    let v: Value = serde_json::from_slice(&body).map_err(|e| format!("{e}: {body:?}"))?;
    match v["result"]["content"][0]["text"].as_str() {
        Some(t) if t == want => Ok(()),
        _ => Err(format!("wanted {want:?}, got {v}")),
    }
}

/// A connection between phases: each phase runs on its own runtime, and
/// a tokio socket belongs to the runtime that made it.
type Held = (std::net::TcpStream, Vec<u8>, String);

/// Opens `n` connections, each with a half-sent call; returns them with
/// what each must complete and expect.
async fn open_held(wave: u32, n: usize) -> Vec<Held> {
    let gate = std::sync::Arc::new(Semaphore::new(OPENING));
    let mut set = JoinSet::new();
    for i in 0..n {
        let gate = gate.clone();
        set.spawn(async move {
            let _p = gate.acquire_owned().await.expect("gate");
            let (first, rest, text) = call(wave, i);
            let mut s = TcpStream::connect(target())
                .await
                .unwrap_or_else(|e| panic!("connection {i}: {e}"));
            s.write_all(&first).await.expect("half a request");
            (s.into_std().expect("std socket"), rest, text)
        });
    }
    let mut held = Vec::with_capacity(n);
    while let Some(r) = set.join_next().await {
        held.push(r.expect("opener"));
    }
    held
}

/// Completes every held call and checks every answer; returns the
/// connections, still open (keep-alive).
async fn complete(held: Vec<Held>) -> Vec<std::net::TcpStream> {
    let mut set = JoinSet::new();
    for (s, rest, text) in held {
        set.spawn(async move {
            let mut s = TcpStream::from_std(s).map_err(|e| e.to_string())?;
            s.write_all(&rest).await.map_err(|e| e.to_string())?;
            answer(&mut s, &text).await?;
            s.into_std().map_err(|e| e.to_string())
        });
    }
    let (mut open, mut failed) = (Vec::new(), Vec::new());
    while let Some(r) = set.join_next().await {
        match r.expect("completer") {
            Ok(s) => open.push(s),
            Err(e) => failed.push(e),
        }
    }
    assert!(
        failed.is_empty(),
        "{} of the held calls failed, first: {:?}",
        failed.len(),
        &failed[..failed.len().min(3)]
    );
    open
}

/// A fresh connection's call while the others are held: answered, and
/// how long it took.
async fn fresh(i: usize) -> Duration {
    let t = Instant::now();
    let (first, rest, text) = call(99, i);
    let mut s = TcpStream::connect(target()).await.expect("fresh connect");
    s.write_all(&first).await.unwrap();
    s.write_all(&rest).await.unwrap();
    answer(&mut s, &text)
        .await
        .expect("the fresh client's answer");
    t.elapsed()
}

/// Runs `f` on a runtime on a thread inside `ns`, bounded by [`PHASE`].
fn in_ns<T: Send + 'static>(
    ns: &NetNs,
    what: &'static str,
    f: impl std::future::Future<Output = T> + Send + 'static,
) -> T {
    let path = ns.path();
    std::thread::spawn(move || {
        let file = std::fs::File::open(&path).expect("open netns");
        nix::sched::setns(file.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
            .block_on(async move {
                tokio::time::timeout(PHASE, f)
                    .await
                    .unwrap_or_else(|_| panic!("{what}: not done within {PHASE:?}"))
            })
    })
    .join()
    .unwrap_or_else(|_| panic!("{what} failed (see above)"))
}

fn server(ns: &NetNs, dir: &TempDir) -> Proc {
    let args = ["server", "--listen", "127.0.0.1:8080", "--json-response"].map(String::from);
    let mut p = Proc::spawn(
        "server",
        Some(ns.name()),
        &bin("mcp-peer"),
        &args,
        dir.path(),
    );
    p.wait_for_output("listening", Duration::from_secs(15));
    p
}

fn connections_active(agent: &Agent) -> f64 {
    metric(agent, "mcp_interceptor_connections_active")
}

/// One wave: CONNS held mid-request (counted by the agent), a fresh client
/// answered meanwhile, [`SAMPLE`] calls completed and the rest abandoned
/// mid-request, all closed. Returns RSS (KiB) with all held.
fn wave(ns: &NetNs, agent: &Agent, pid: u32, n: u32) -> u64 {
    let t = Instant::now();
    // Each phase has its own runtime; the sockets go from one to the next
    // as values, so the test thread can look at the agent in between.
    let held = in_ns(ns, "opening", open_held(n, CONNS));
    let opened = t.elapsed();
    // The agent itself says it holds them all at once.
    wait_for(
        "the agent to count every held connection",
        Duration::from_secs(20),
        || (connections_active(agent) >= CONNS as f64).then_some(()),
    );
    let (rss_held, hwm) = memory(pid);
    let took = in_ns(ns, "fresh client", fresh(n as usize));
    eprintln!(
        "wave {n}: {CONNS} connections held mid-request after {opened:.1?}; \
         agent VmRSS {:.1} MiB (VmHWM {:.1} MiB); a fresh client answered in {took:.0?}",
        mib(rss_held),
        mib(hwm)
    );
    assert!(
        took < Duration::from_secs(3),
        "a fresh client waited {took:?} behind {CONNS} held connections"
    );
    // Evenly spread over the order the connections opened in.
    let (held, abandoned): (Vec<_>, Vec<_>) = held
        .into_iter()
        .enumerate()
        .partition(|(i, _)| i * SAMPLE / CONNS != (i + 1) * SAMPLE / CONNS);
    let held: Vec<Held> = held.into_iter().map(|(_, h)| h).collect();
    let t = Instant::now();
    let open = in_ns(ns, "completing", complete(held));
    assert_eq!(open.len(), SAMPLE);
    eprintln!(
        "wave {n}: {SAMPLE} held calls answered in {:.1?} ({} abandoned mid-request); \
         agent VmRSS {:.1} MiB",
        t.elapsed(),
        abandoned.len(),
        mib(memory(pid).0)
    );
    drop((open, abandoned));
    wait_for(
        "the agent to see every connection closed",
        Duration::from_secs(20),
        || (connections_active(agent) == 0.0).then_some(()),
    );
    rss_held
}

/// RSS (KiB) once the agent is idle again: the lowest of a few samples
/// over 3 s, a call before each. The allocator hands freed pages back
/// lazily, as it allocates, so right after a wave RSS says more about its
/// timing than about what is still in use.
fn settled(ns: &NetNs, pid: u32) -> u64 {
    (0..6)
        .map(|i| {
            in_ns(ns, "settling", fresh(100 + i));
            std::thread::sleep(Duration::from_millis(500));
            memory(pid).0
        })
        .min()
        .unwrap_or(u64::MAX)
}

#[test]
fn ten_thousand_held_connections_are_served_in_bounded_memory() {
    require_root();
    raise_nofile();
    let (ns, dir) = (NetNs::new("load"), TempDir::new("load"));
    let _server = server(&ns, &dir);
    // Room for every held connection and the fresh client, and within the
    // descriptors a container's hard limit may allow (the default, 20,000,
    // needs about 22,000).
    let tables = format!(
        "[[intercept.ports]]\nport = 8080\n[http]\nmax_connections = {}\n",
        CONNS + 100
    );
    // Warnings only, but for the start-up lines the harness and the test
    // read: 20,000 connection lines would cost the debug build seconds.
    let env = vec![(
        "RUST_LOG".into(),
        "warn,mcp_interceptor=info,interceptor::agent=info".into(),
    )];
    let mut agent = Agent::start_with_env(&ns, dir.path(), "", &tables, "", env);
    let pid = agent.proc().pid();
    let log = agent.log();
    assert!(
        log.contains("open-file limit") && !log.contains("needs more descriptors"),
        "{log}"
    );
    // Warm: the upstream pool, the audit's first file, the allocator.
    for i in 0..20 {
        in_ns(&ns, "warm-up", fresh(i));
    }
    let (base, _) = memory(pid);

    let held1 = wave(&ns, &agent, pid, 1);
    let hwm1 = memory(pid).1;
    let after1 = settled(&ns, pid);
    let held2 = wave(&ns, &agent, pid, 2);
    let hwm2 = memory(pid).1;
    let after2 = settled(&ns, pid);
    let per_conn = held1.saturating_sub(base) as f64 / CONNS as f64;
    eprintln!(
        "agent VmRSS: {:.1} MiB idle, {:.1} / {:.1} MiB with {CONNS} held (waves 1 / 2), \
         {:.1} / {:.1} MiB after each wave closed, VmHWM {:.1} / {:.1} MiB; \
         {per_conn:.1} KiB per held connection",
        mib(base),
        mib(held1),
        mib(held2),
        mib(after1),
        mib(after2),
        mib(hwm1),
        mib(hwm2)
    );
    assert!(
        per_conn < MAX_KIB_PER_CONN,
        "{per_conn:.1} KiB per held connection (ceiling {MAX_KIB_PER_CONN})"
    );
    // The second wave reuses what the first freed; what a leak kept
    // cannot be reused, so the second peak would stand higher. 32 MiB is
    // 3.3 KiB for each of the second wave's connections; seven waves in a
    // row stayed within 20 MiB of each other held, and the peak did not
    // move after the second. Idle RSS after a wave swings with the
    // allocator's fragmentation (freed pages it cannot give back): seen
    // 140 -> 209, 290 -> 220 and 185 -> 211 MiB on 2 cores, so it gets
    // 128 MiB; a steady leak is caught by the two checks before it.
    for (what, first, second, room) in [
        ("with all held", held1, held2, 32),
        ("at its peak (VmHWM)", hwm1, hwm2, 32),
        ("after closing", after1, after2, 128),
    ] {
        assert!(
            second <= first + room * 1024,
            "agent RSS {what} grew from {:.1} to {:.1} MiB in a second wave of {CONNS}",
            mib(first),
            mib(second)
        );
    }
    assert_eq!(
        metric(&agent, "mcp_interceptor_connections_refused_total"),
        0.0,
        "the limit ({CONNS} + 100) was never reached"
    );
    assert!(agent.proc().try_wait().is_none(), "the agent is still up");
    assert!(!agent.log().contains("panicked"), "{}", agent.log());
}

#[test]
fn a_connection_over_max_connections_gets_503_and_is_counted() {
    require_root();
    let (ns, dir) = (NetNs::new("maxconn"), TempDir::new("maxconn"));
    let _server = server(&ns, &dir);
    const MAX: usize = 5;
    let agent = Agent::start(
        &ns,
        dir.path(),
        "",
        &format!("[[intercept.ports]]\nport = 8080\n[http]\nmax_connections = {MAX}\n"),
    );
    // MAX connections, each served one call and kept open.
    let mut held = in_ns(&ns, "holding", async {
        complete(open_held(1, MAX).await).await
    });
    assert_eq!(held.len(), MAX);
    assert_eq!(connections_active(&agent), MAX as f64);

    // One more: 503, -32004, closed; counted and logged.
    let over = in_ns(&ns, "over the limit", async {
        let mut s = TcpStream::connect(target()).await.expect("connect");
        let mut out = Vec::new();
        s.read_to_end(&mut out).await.expect("read until closed");
        String::from_utf8_lossy(&out).into_owned()
    });
    assert!(over.starts_with("HTTP/1.1 503"), "{over:?}");
    assert!(over.contains("-32004") && over.contains("http.max_connections = 5"));
    assert_eq!(
        metric(&agent, "mcp_interceptor_connections_refused_total"),
        1.0
    );
    assert_eq!(connections_active(&agent), MAX as f64, "nothing counted");
    let log = agent.log();
    assert!(
        log.contains("connection refused: at http.max_connections"),
        "{log}"
    );

    // A held connection closes: its place is free again.
    drop(held.pop());
    wait_for("a place to free", Duration::from_secs(10), || {
        (connections_active(&agent) < MAX as f64).then_some(())
    });
    in_ns(&ns, "a client after one left", fresh(1));
    drop(held);
    assert!(!agent.log().contains("panicked"));
}

/// More refused POSTs outside a session than the agent's session table
/// holds (65,536): each has a table entry while it is handled, and none may
/// outlive its answer. Left behind, they filled the table, and from then
/// on every new session pushed out the oldest real one, owner binding
/// included (the -32001 refusal of another identity's session), each with
/// a warning.
#[test]
fn refused_requests_leave_no_session_entry_behind() {
    require_root();
    const REFUSED: usize = 66_000;
    const LANES: usize = 16;
    let (ns, dir) = (NetNs::new("refused"), TempDir::new("refused"));
    let _server = server(&ns, &dir);
    let env = vec![("RUST_LOG".into(), "warn,interceptor::agent=info".into())];
    let agent = Agent::start_with_env(
        &ns,
        dir.path(),
        "",
        "[[intercept.ports]]\nport = 8080\n",
        "enabled = false\n",
        env,
    );
    let t = Instant::now();
    let codes = in_ns(&ns, "refused requests", async {
        let mut set = JoinSet::new();
        for _ in 0..LANES {
            set.spawn(async {
                let bad =
                    b"POST /mcp HTTP/1.1\r\nHost: mcp.test\r\nContent-Type: application/json\r\n\
                    Accept: application/json, text/event-stream\r\nContent-Length: 1\r\n\r\n{";
                let mut s = TcpStream::connect(target()).await.expect("connect");
                let mut codes = Vec::new();
                for _ in 0..REFUSED / LANES {
                    s.write_all(bad).await.expect("send");
                    let (head, body) = response(&mut s).await.expect("an answer");
                    let v: Value = serde_json::from_slice(&body).unwrap_or_default();
                    codes.push((head[9..12].to_string(), v["error"]["code"].as_i64()));
                }
                codes
            });
        }
        let mut all = Vec::new();
        while let Some(c) = set.join_next().await {
            all.extend(c.expect("lane"));
        }
        all
    });
    assert_eq!(codes.len(), REFUSED / LANES * LANES);
    assert!(
        codes
            .iter()
            .all(|c| *c == ("400".to_string(), Some(-32700))),
        "each gets 400 with -32700: {:?}",
        codes
            .iter()
            .find(|c| **c != ("400".to_string(), Some(-32700)))
    );
    eprintln!("{} refused POSTs in {:.1?}", codes.len(), t.elapsed());
    in_ns(&ns, "a call after them", fresh(0));
    let log = agent.log();
    assert!(
        !log.contains("session table full"),
        "refused requests filled the session table: {} evictions",
        log.matches("session table full").count()
    );
}
