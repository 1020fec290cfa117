//! Steering faults end to end, in namespaces each test creates: the agent
//! restarted (SIGTERM and kill -9) under a stream of new connections with
//! others held open, and eBPF maps filled past what they hold.
//!
//! What "no bypass" is measured against: the MCP server logs the peer of
//! every request it serves, so a connection that reached it without the
//! agent shows as a peer outside the agent's privileged bypass range; and
//! every answer a client saw must be in the agent's events and audit.

#[path = "steering_faults/client.rs"]
mod client;
#[path = "steering_faults/maps.rs"]
mod maps;
#[path = "steering_faults/restarts.rs"]
mod restarts;

use std::{net::SocketAddr, time::Duration};

use client::{Attempt, Hammer, Seen, open_session};
use maps::PinnedMap;
use mcp_interceptor_tests::{
    Agent, NetNs, TempDir,
    peer::{self, raw},
    require_root,
};
use restarts::{audited, ms, recorded, restart, server, server_peers, window};
use serde_json::{Value, json};

const SIGKILL: i32 = 9;
const SIGTERM: i32 = 15;
const PORT_8080: &str = "[[intercept.ports]]\nport = 8080\n";
/// The agent's default upstream bypass range.
const BYPASS: std::ops::RangeInclusive<u16> = 700..=1023;

fn host(tag: &str) -> (NetNs, TempDir) {
    require_root();
    (NetNs::new(tag), TempDir::new(tag))
}

#[test]
fn restart_under_traffic_never_lets_a_connection_past_the_agent() {
    let (ns, dir) = host("restart");
    let server = server(&ns, dir.path());
    let mut agent = Agent::start(&ns, dir.path(), "", PORT_8080);
    let sid = open_session(&ns);
    let before = agent.counters(8080);

    let hammer = Hammer::start(&ns, &sid, "r", 3, Duration::from_millis(5));
    let mut restarts = Vec::new();
    for (signal, how, hold_open) in [
        (SIGTERM, "SIGTERM, no connection held", false),
        (SIGTERM, "SIGTERM, connections held", true),
        (SIGKILL, "kill -9, connections held", true),
    ] {
        std::thread::sleep(Duration::from_secs(1));
        // A restarted agent binds only sessions it saw open: each restart
        // holds connections in a session the running agent knows.
        let held_sid = open_session(&ns);
        restarts.push(restart(&mut agent, &ns, &held_sid, signal, how, hold_open));
    }
    std::thread::sleep(Duration::from_secs(1));
    let attempts = hammer.finish();
    let after = agent.counters(8080);
    let errors = agent.status()["errors"].clone();
    agent.stop(SIGTERM);

    let others: Vec<&Attempt> = attempts
        .iter()
        .filter(|a| matches!(a.seen, Seen::Other(_)))
        .collect();
    assert!(
        others.is_empty(),
        "every attempt is answered, refused or cut; not {others:#?}"
    );
    let answered: Vec<(&Attempt, u16)> = attempts
        .iter()
        .filter_map(|a| match a.seen {
            Seen::Answered { port } => Some((a, port)),
            _ => None,
        })
        .collect();

    // The server saw only the agent: every peer is the bypass range.
    let peers = server_peers(&server);
    let local = std::net::IpAddr::from(client::ADDR.0);
    let direct: Vec<&SocketAddr> = peers
        .iter()
        .filter(|p| !BYPASS.contains(&p.port()) || p.ip() != local)
        .collect();
    assert!(
        direct.is_empty(),
        "requests that bypassed the agent: {direct:?}"
    );
    assert!(
        peers.len() >= answered.len(),
        "the server log has a line per request ({} < {})",
        peers.len(),
        answered.len()
    );

    // Every answer a client saw went through the agent: an event with that
    // client's port, and an audit row.
    let events = recorded(&agent);
    let audit: std::collections::HashSet<String> = audited(&agent).into_iter().collect();
    for (a, port) in &answered {
        let client = events.get(&a.text);
        assert_eq!(
            client.map(String::as_str),
            Some(format!("127.0.0.1:{port}").as_str()),
            "answered {} has no event from its connection",
            a.text
        );
        assert!(audit.contains(&a.text), "answered {} not audited", a.text);
    }

    // Fail closed held: nothing passed, and every refusal was a drop.
    let refused = attempts.iter().filter(|a| a.seen == Seen::Refused).count() as u64;
    assert_eq!(after.failed_open, before.failed_open, "{after:?}");
    assert!(
        after.dropped - before.dropped >= refused,
        "{refused} refused connects, {after:?}"
    );
    // Old and new link overlap for a moment at each restart; the program
    // must not count the second assign of one connection as a failure.
    assert_eq!(
        errors,
        json!({"assign_refused": 0, "counters_full": 0}),
        "kernel errors"
    );

    println!(
        "{} attempts: {} answered, {refused} refused ({} drops counted), {} cut; server saw {} \
         requests, all from the bypass range",
        attempts.len(),
        answered.len(),
        after.dropped - before.dropped,
        attempts
            .iter()
            .filter(|a| matches!(a.seen, Seen::Cut { .. }))
            .count(),
        peers.len()
    );
    for r in &restarts {
        let w = window(r, &attempts);
        println!(
            "restart by {}: first refusal {:?} ms after the signal, old agent gone after {:.0} ms, \
             new one ready {:.0} ms later, first answer {:.0} ms after that; \
             gap (signal to first answer) {:.0} ms; {} connects refused, {} cut",
            r.how,
            w.first_refusal_ms.map(|m| m.round()),
            w.drain_ms,
            w.start_ms,
            w.ready_to_answer_ms,
            w.gap_ms,
            w.refused,
            w.cut
        );
        // A stopping agent closes connections that are between requests at
        // once; it must not wait for their head timeout (10 s here).
        assert!(
            w.drain_ms < 5000.0,
            "{}: the old agent took {:.0} ms to stop: held connections kept it",
            r.how,
            w.drain_ms
        );
        for a in attempts
            .iter()
            .filter(|a| a.end >= r.signal && a.start <= r.ready)
        {
            if let Seen::Cut { bytes, why } = &a.seen {
                println!(
                    "  cut: {why} after {bytes} bytes (from {:.0} to {:.0} ms after the signal); \
                     in the audit: {}",
                    ms(r.signal, a.start) - ms(a.start, r.signal),
                    ms(r.signal, a.end),
                    audit.contains(&a.text)
                );
                // SIGTERM drains: only a connection the agent never took
                // (its listener's backlog) may be cut, never an answer.
                assert!(
                    *bytes == 0 || r.how.starts_with("kill"),
                    "{}: an answer was cut: {why}",
                    r.how
                );
            }
        }
        for (kind, got, answered) in &r.held {
            println!("  held {kind:?} connection after the restart: {got}");
            assert!(
                !answered,
                "{}: a held {kind:?} connection was answered",
                r.how
            );
        }
        assert!(
            w.refused > 0,
            "{}: the down window was not exercised",
            r.how
        );
    }
}

#[test]
fn fail_open_restart_passes_connections_only_while_the_agent_is_down() {
    let (ns, dir) = host("restartopen");
    let server = server(&ns, dir.path());
    let mut agent = Agent::start(&ns, dir.path(), "fail = \"open\"", PORT_8080);
    let sid = open_session(&ns);
    let before = agent.counters(8080);

    let hammer = Hammer::start(&ns, &sid, "o", 3, Duration::from_millis(5));
    std::thread::sleep(Duration::from_secs(1));
    let r = restart(&mut agent, &ns, &sid, SIGKILL, "kill -9", true);
    std::thread::sleep(Duration::from_secs(1));
    let attempts = hammer.finish();
    let after = agent.counters(8080);

    let refused_or_other: Vec<&Attempt> = attempts
        .iter()
        .filter(|a| matches!(a.seen, Seen::Refused | Seen::Other(_)))
        .collect();
    assert!(
        refused_or_other.is_empty(),
        "fail open refuses nothing: {refused_or_other:#?}"
    );
    // Answers the agent never saw: the connections it let through while
    // down. Each is one request from the client's own port at the server.
    let events = recorded(&agent);
    let unproxied: Vec<(&Attempt, u16)> = attempts
        .iter()
        .filter_map(|a| match a.seen {
            Seen::Answered { port } if !events.contains_key(&a.text) => Some((a, port)),
            _ => None,
        })
        .collect();
    assert!(!unproxied.is_empty(), "the down window was not exercised");
    for (a, _) in &unproxied {
        assert!(
            a.start >= r.signal && a.start <= r.ready,
            "{} passed unproxied outside the restart window",
            a.text
        );
    }
    let mut direct: Vec<u16> = server_peers(&server)
        .iter()
        .filter(|p| !BYPASS.contains(&p.port()))
        .map(SocketAddr::port)
        .collect();
    let mut ports: Vec<u16> = unproxied.iter().map(|(_, p)| *p).collect();
    direct.sort_unstable();
    ports.sort_unstable();
    assert_eq!(
        direct, ports,
        "the server saw exactly the unproxied clients"
    );
    let cut = attempts
        .iter()
        .filter(|a| matches!(a.seen, Seen::Cut { .. }))
        .count() as u64;
    let passed = after.failed_open - before.failed_open;
    assert!(
        passed >= ports.len() as u64 && passed <= ports.len() as u64 + cut,
        "failed_open counts each of the {} ({cut} cut): {after:?}",
        ports.len()
    );
    assert_eq!(after.dropped, before.dropped, "fail open drops nothing");
    let first = unproxied.iter().map(|(a, _)| a.start).min().unwrap();
    let last = unproxied.iter().map(|(a, _)| a.end).max().unwrap();
    println!(
        "fail open, restart by kill -9: {} connections reached the server unproxied, \
         from {:.0} to {:.0} ms after the signal (old agent gone after {:.0} ms, new one \
         ready {:.0} ms later); counted failed_open {passed}",
        ports.len(),
        ms(r.signal, first),
        ms(r.signal, last),
        ms(r.signal, r.exited),
        ms(r.exited, r.ready)
    );
}

/// 8080 on every address, and 8081 on `n` addresses of 127.1.0.0/16.
fn with_addresses(n: usize) -> String {
    let addrs: Vec<String> = (0..n)
        .map(|i| format!("\"127.1.{}.{}\"", i / 256, i % 256))
        .collect();
    format!(
        "{PORT_8080}[[intercept.ports]]\nport = 8081\naddresses = [{}]\n",
        addrs.join(", ")
    )
}

/// `mcp-interceptor status` (through a file: a full table's status is
/// larger than a pipe holds).
fn status(agent: &Agent) -> Value {
    let out = agent.cli_large("status");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("status prints JSON")
}

fn steered(agent: &Agent, port: u16) -> u64 {
    status(agent)["counters"]
        .as_array()
        .and_then(|a| a.iter().find(|c| c["port"] == port))
        .and_then(|c| c["steered"].as_u64())
        .unwrap_or(0)
}

/// `(entries, capacity)` of `map` as `status` reports them.
fn usage(agent: &Agent, map: &str) -> (u64, u64) {
    let s = status(agent);
    let u = s["maps"]
        .as_array()
        .and_then(|m| m.iter().find(|u| u["map"] == map))
        .unwrap_or_else(|| panic!("status reports {map}: {s}"))
        .clone();
    (
        u["entries"].as_u64().unwrap(),
        u["capacity"].as_u64().unwrap(),
    )
}

/// `doctor`'s report and whether it passed.
fn doctor(agent: &Agent) -> (bool, String) {
    let out = agent.cli_large("doctor");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

fn echo_ok(ns: &NetNs, text: &str) {
    let c = peer::call(
        ns.name(),
        "http://127.0.0.1:8080/mcp",
        "echo",
        json!({ "text": text }),
    );
    assert_eq!(c.text(), text);
}

#[test]
fn a_config_needing_more_rules_than_the_map_holds_is_refused_whole() {
    let (ns, dir) = host("toobig");
    let _server = peer::server(ns.name(), "0.0.0.0:8080", dir.path());
    let mut agent = Agent::start(&ns, dir.path(), "", PORT_8080);
    let (_, capacity) = usage(&agent, "MCPI_PORTS");
    assert_eq!(capacity, 1024, "the steering table's size");
    let capacity = capacity as usize;

    // Exactly full fits: 8080 plus capacity - 1 addresses of 8081.
    agent.reload(&ns, "", &with_addresses(capacity - 1));
    assert_eq!(usage(&agent, "MCPI_PORTS"), (1024, 1024));
    let (passed, report) = doctor(&agent);
    assert!(passed, "a config that fits passes:\n{report}");
    assert!(
        report.contains("warn MCPI_PORTS") && report.contains("full (1024/1024 entries in use)"),
        "{report}"
    );
    let fitting = status(&agent)["rules"].clone();

    // One more is refused whole, with the map, its size and the fix named.
    let refusal = agent.reload_refused(&ns, "", &with_addresses(capacity));
    for needle in [
        "MCPI_PORTS",
        "needs 1025 entries",
        "holds 1024",
        "fewer addresses",
    ] {
        assert!(refusal.contains(needle), "{needle:?} in {refusal}");
    }
    assert_eq!(status(&agent)["rules"], fitting, "nothing of it applied");
    let before = steered(&agent, 8080);
    echo_ok(&ns, "still steered");
    assert!(steered(&agent, 8080) > before);
    let (passed, report) = doctor(&agent);
    assert!(!passed, "{report}");
    assert!(
        report.contains("FAIL MCPI_PORTS")
            && report.contains("the config needs 1025 entries, the map holds 1024")
            && report.contains("fix: each [[intercept.ports]] rule takes one entry per address"),
        "doctor names the map, the numbers and the fix:\n{report}"
    );

    // A fresh start with it is refused too; the pinned program keeps the
    // rules it had and fails closed.
    agent.stop(SIGTERM);
    let out = agent.start_refused(&ns, "", &with_addresses(capacity));
    assert!(
        out.contains("MCPI_PORTS")
            && out.contains("needs 1025 entries")
            && out.contains("holds 1024"),
        "{out}"
    );
    assert_eq!(status(&agent)["rules"], fitting);
    let refused = raw(ns.name(), "127.0.0.1:8080", None, false);
    assert_eq!(refused.status.code(), Some(2), "fail closed: {refused:?}");
    let (passed, report) = doctor(&agent);
    assert!(!passed && report.contains("FAIL MCPI_PORTS"), "{report}");
}

/// `/metrics` from the agent's admin socket.
fn metrics(agent: &Agent) -> String {
    use std::{io::Read, io::Write, os::unix::net::UnixStream};
    let mut s = UnixStream::connect(agent.admin_socket()).expect("admin socket");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

#[test]
fn full_maps_are_named_by_doctor_and_the_kernel_counts_what_it_could_not_do() {
    let (ns, dir) = host("mapfull");
    let _server = peer::server(ns.name(), "127.0.0.1:8080", dir.path());
    let mut agent = Agent::start(&ns, dir.path(), "", PORT_8080);
    echo_ok(&ns, "before");
    let pins = agent.pins.0.clone();

    // The steering table filled by hand to the kernel's limit.
    let ports = PinnedMap::open(&pins.join("MCPI_PORTS"));
    let (used, capacity) = usage(&agent, "MCPI_PORTS");
    for i in used..capacity {
        let key = maps::rule_key([10, 9, (i / 256) as u8, (i % 256) as u8], 9);
        ports.insert(&key, &[0; 4]).expect("room left");
    }
    let full = ports.insert(&maps::rule_key([10, 8, 0, 1], 9), &[0; 4]);
    assert_eq!(
        full.map_err(|e| e.raw_os_error()),
        Err(Some(nix::libc::E2BIG)),
        "the kernel says full"
    );
    assert_eq!(usage(&agent, "MCPI_PORTS"), (capacity, capacity));
    let (passed, report) = doctor(&agent);
    assert!(!passed, "{report}");
    assert!(
        report.contains("FAIL MCPI_PORTS")
            && report.contains("full (1024/1024 entries in use), 1023 more than the config's 1")
            && report.contains("fix: reload the agent"),
        "{report}"
    );

    // The counters filled by hand, without 8080's entry: the program cannot
    // create it, and counts that instead of losing it silently.
    let counters = PinnedMap::open(&pins.join("MCPI_COUNTERS"));
    counters
        .delete(&8080u32.to_ne_bytes())
        .expect("8080's counters");
    let zero = maps::zero_counters();
    let (_, capacity) = usage(&agent, "MCPI_COUNTERS");
    for port in 1..=capacity as u32 {
        counters
            .insert(&port.to_ne_bytes(), &zero)
            .expect("room left");
    }
    echo_ok(&ns, "uncounted");
    let errors = status(&agent)["errors"].clone();
    let uncounted = errors["counters_full"].as_u64().unwrap_or(0);
    assert!(uncounted >= 1, "{errors}");
    assert_eq!(errors["assign_refused"], 0, "{errors}");
    let (passed, report) = doctor(&agent);
    assert!(!passed, "{report}");
    assert!(
        report.contains("FAIL MCPI_COUNTERS") && report.contains("full (1024/1024 entries in use)"),
        "{report}"
    );
    let said = format!("{uncounted} connection outcome(s) went uncounted: MCPI_COUNTERS was full");
    assert!(
        report
            .lines()
            .any(|l| l.starts_with("warn kernel errors") && l.ends_with(&said)),
        "{report}"
    );
    let m = metrics(&agent);
    assert!(
        m.contains(&format!(
            "mcp_interceptor_steer_errors_total{{kind=\"counters_full\"}} {uncounted}"
        )) && m.contains("mcp_interceptor_steer_map_entries{map=\"MCPI_COUNTERS\"} 1024")
            && m.contains("mcp_interceptor_steer_map_capacity{map=\"MCPI_PORTS\"} 1024"),
        "{m}"
    );

    // A reload puts both maps back to what the config says.
    agent.reload(&ns, "", PORT_8080);
    assert_eq!(usage(&agent, "MCPI_PORTS").0, 1);
    assert_eq!(usage(&agent, "MCPI_COUNTERS").0, 1);
    echo_ok(&ns, "after");
    assert!(steered(&agent, 8080) >= 1, "8080 counted again");
    let (passed, report) = doctor(&agent);
    assert!(passed, "{report}");
    assert_eq!(
        status(&agent)["errors"]["counters_full"],
        uncounted,
        "no new misses"
    );
}
