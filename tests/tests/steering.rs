//! Kernel steering end to end: a real rmcp server and client, the real
//! agent, the real sk_lookup program, in namespaces each test creates.

use std::time::Duration;

use mcp_interceptor_tests::{
    Agent, NetNs, TempDir, Veth,
    peer::{self, call, raw},
    require_root,
};
use serde_json::json;

const SIGKILL: i32 = 9;
const SIGTERM: i32 = 15;

const PORT_8080: &str = "[[intercept.ports]]\nport = 8080\n";

/// A namespace with an MCP server on every address of port 8080.
fn host(tag: &str) -> (NetNs, TempDir) {
    require_root();
    (NetNs::new(tag), TempDir::new(tag))
}

fn echo(ns: &str, url: &str, text: &str) -> peer::Call {
    call(ns, url, "echo", json!({ "text": text }))
}

#[test]
fn same_host_client_is_steered_over_ipv4_and_ipv6() {
    let (ns, dir) = host("local");
    let _server = peer::server(ns.name(), "[::]:8080", dir.path());
    let agent = Agent::start(&ns, dir.path(), "", PORT_8080);

    let v4 = echo(ns.name(), "http://127.0.0.1:8080/mcp", "hello v4");
    assert_eq!(v4.text(), "hello v4");
    assert!(
        v4.json()["tools"]
            .as_array()
            .is_some_and(|t| t.contains(&json!("echo")))
    );
    let v6 = echo(ns.name(), "http://[::1]:8080/mcp", "hello v6");
    assert_eq!(v6.text(), "hello v6");

    let c = agent.counters(8080);
    assert!(c.steered >= 2, "both clients steered: {c:?}");
    // Upstream connections (pooled, so at most one per steered one) were
    // let through by the program instead of being steered back (no loop),
    // and every steered connection is one the agent served and logged.
    assert!(c.bypassed >= 1 && c.bypassed <= c.steered, "{c:?}");
    assert_eq!((c.dropped, c.failed_open), (0, 0));
    mcp_interceptor_tests::wait_for(
        "one log line per steered connection",
        Duration::from_secs(5),
        || (agent.log().matches("connection closed").count() as u64 == c.steered).then_some(()),
    );

    let log = agent.log();
    assert!(log.contains("orig_dst=127.0.0.1:8080"), "{log}");
    assert!(log.contains("orig_dst=[::1]:8080"), "{log}");
    assert!(log.contains("connection closed"), "{log}");

    let doctor = agent.doctor();
    let report = String::from_utf8_lossy(&doctor.stdout);
    assert!(
        doctor.status.success(),
        "doctor should pass while the agent runs:\n{report}"
    );
    assert!(
        report.contains("all") && report.contains("checks passed"),
        "{report}"
    );
}

#[test]
fn remote_client_over_veth_is_steered_over_ipv4_and_ipv6() {
    let (server_ns, dir) = host("srv");
    let client_ns = NetNs::new("cli");
    let veth = Veth::connect(&server_ns, &client_ns, 1);
    let _server = peer::server(server_ns.name(), "[::]:8080", dir.path());
    let agent = Agent::start(&server_ns, dir.path(), "", PORT_8080);

    let url4 = format!("http://{}:8080/mcp", veth.a_v4);
    assert_eq!(
        echo(client_ns.name(), &url4, "remote v4").text(),
        "remote v4"
    );
    let url6 = format!("http://[{}]:8080/mcp", veth.a_v6);
    assert_eq!(
        echo(client_ns.name(), &url6, "remote v6").text(),
        "remote v6"
    );
    let log = agent.log();
    assert!(log.contains(&format!("client={}:", veth.b_v4)), "{log}");
    assert!(log.contains(&format!("client=[{}]:", veth.b_v6)), "{log}");

    // A remote peer may pick a source port inside the bypass range (it is
    // root on its own host), but not our address: it is still steered.
    let before = agent.counters(8080);
    let target = format!("{}:8080", veth.a_v4);
    let out = raw(
        client_ns.name(),
        &target,
        Some(&format!("{}:800", veth.b_v4)),
        false,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let after = agent.counters(8080);
    assert_eq!(after.steered, before.steered + 1, "{before:?} -> {after:?}");
    assert!(
        after.bypassed <= before.bypassed + 1,
        "only the proxy's (pooled) upstream bypasses"
    );
    assert!(agent.log().contains(&format!("client={}:800", veth.b_v4)));
}

#[test]
fn fail_closed_after_clean_stop_and_after_kill9() {
    let (ns, dir) = host("closed");
    let _server = peer::server(ns.name(), "127.0.0.1:8080", dir.path());
    let mut agent = Agent::start(&ns, dir.path(), "fail = \"closed\"", PORT_8080);
    let url = "http://127.0.0.1:8080/mcp";
    assert_eq!(echo(ns.name(), url, "up").text(), "up");

    for (signal, how) in [(SIGTERM, "clean stop"), (SIGKILL, "kill -9")] {
        agent.stop(signal);
        let before = agent.counters(8080);
        let refused = echo(ns.name(), url, "must not pass");
        assert!(
            !refused.ok(),
            "{how}: the client reached the server: {:?}",
            refused.output
        );
        assert!(
            agent.counters(8080).dropped > before.dropped,
            "{how}: drop counted"
        );
        // The server itself is alive: only the bypass (root, privileged
        // source port, local address) still reaches it.
        let direct = raw(ns.name(), "127.0.0.1:8080", Some("127.0.0.1:801"), false);
        assert!(direct.status.success(), "{how}: server down? {direct:?}");

        let doctor = agent.doctor();
        let report = String::from_utf8_lossy(&doctor.stdout);
        assert!(
            !doctor.status.success(),
            "{how}: doctor must fail:\n{report}"
        );
        assert!(
            report.contains("FAIL agent"),
            "{how}: names the agent:\n{report}"
        );
        assert!(report.contains("FAIL proxy socket"), "{how}:\n{report}");
        assert!(report.contains("refused (fail closed)"), "{how}:\n{report}");

        // A restart reuses the pinned maps and takes over again.
        agent.restart();
        assert_eq!(
            echo(ns.name(), url, "back").text(),
            "back",
            "{how}: restart"
        );
    }
}

#[test]
fn fail_open_passes_to_the_server_when_the_agent_is_gone() {
    let (ns, dir) = host("open");
    let _server = peer::server(ns.name(), "127.0.0.1:8080", dir.path());
    let mut agent = Agent::start(&ns, dir.path(), "fail = \"open\"", PORT_8080);
    let url = "http://127.0.0.1:8080/mcp";
    for (signal, how) in [(SIGTERM, "clean stop"), (SIGKILL, "kill -9")] {
        assert_eq!(echo(ns.name(), url, "steered").text(), "steered");
        let steered = agent.counters(8080).steered;
        assert!(steered > 0);
        agent.stop(signal);
        let before = agent.counters(8080);
        assert_eq!(echo(ns.name(), url, "direct").text(), "direct", "{how}");
        let after = agent.counters(8080);
        assert!(after.failed_open > before.failed_open, "{how}: {after:?}");
        assert_eq!(after.steered, steered, "{how}: nothing steered while down");
        assert_eq!(after.dropped, 0);
        let report = String::from_utf8_lossy(&agent.doctor().stdout).into_owned();
        assert!(
            report.contains("unprotected (fail open)"),
            "{how}:\n{report}"
        );
        agent.restart();
    }
}

#[test]
fn unprivileged_process_cannot_use_the_bypass() {
    let (ns, dir) = host("unpriv");
    let _server = peer::server(ns.name(), "127.0.0.1:8080", dir.path());
    let mut agent = Agent::start(&ns, dir.path(), "", PORT_8080);
    let target = "127.0.0.1:8080";

    // nobody cannot bind a source port in the bypass range at all.
    let denied = raw(ns.name(), target, Some("127.0.0.1:800"), true);
    assert_eq!(denied.status.code(), Some(3), "bind must fail: {denied:?}");
    assert!(String::from_utf8_lossy(&denied.stderr).contains("bind failed"));

    // nobody's ordinary connection is steered, not bypassed.
    let before = agent.counters(8080);
    let plain = raw(ns.name(), target, None, true);
    assert!(plain.status.success(), "{plain:?}");
    let after = agent.counters(8080);
    assert_eq!(after.steered, before.steered + 1);
    assert_eq!(
        after.bypassed,
        before.bypassed + 1,
        "only the proxy's upstream"
    );

    // The same source port from root is the bypass: the agent never sees it.
    let root = raw(ns.name(), target, Some("127.0.0.1:800"), false);
    assert!(root.status.success(), "{root:?}");
    let after_root = agent.counters(8080);
    assert_eq!(
        after_root.steered, after.steered,
        "root bypass is not steered"
    );
    assert_eq!(after_root.bypassed, after.bypassed + 1);

    // With the agent gone (fail closed) nobody has no way through.
    agent.stop(SIGKILL);
    let blocked = raw(ns.name(), target, None, true);
    assert_eq!(
        blocked.status.code(),
        Some(2),
        "connect must be refused: {blocked:?}"
    );
}

#[test]
fn ports_and_addresses_change_at_run_time_without_reloading_the_program() {
    let (ns, dir) = host("reload");
    let _s1 = peer::server(ns.name(), "0.0.0.0:8080", dir.path());
    let _s2 = peer::server(ns.name(), "0.0.0.0:8081", dir.path());
    let mut agent = Agent::start(&ns, dir.path(), "", PORT_8080);
    let program = agent.status()["program_id"].clone();
    assert!(
        program.as_u64().is_some_and(|id| id > 0),
        "status names the program: {program}"
    );

    assert_eq!(
        echo(ns.name(), "http://127.0.0.1:8081/mcp", "x").text(),
        "x"
    );
    assert_eq!(agent.counters(8081).steered, 0, "8081 not intercepted yet");

    // Add 8081, but only for destination 127.0.0.2.
    let tables =
        format!("{PORT_8080}[[intercept.ports]]\nport = 8081\naddresses = [\"127.0.0.2\"]\n");
    agent.reload(&ns, "", &tables);
    assert_eq!(
        echo(ns.name(), "http://127.0.0.2:8081/mcp", "y").text(),
        "y"
    );
    let steered = agent.counters(8081).steered;
    assert!(steered > 0, "127.0.0.2:8081 steered");
    assert_eq!(
        echo(ns.name(), "http://127.0.0.1:8081/mcp", "z").text(),
        "z"
    );
    assert_eq!(
        agent.counters(8081).steered,
        steered,
        "127.0.0.1:8081 is not in the rule"
    );

    // Drop 8080 from the table: its traffic goes straight to the server.
    agent.reload(&ns, "", "[[intercept.ports]]\nport = 8081\n");
    let before = agent.counters(8080);
    assert_eq!(
        echo(ns.name(), "http://127.0.0.1:8080/mcp", "w").text(),
        "w"
    );
    assert_eq!(agent.counters(8080), before, "8080 no longer intercepted");
    assert_eq!(
        agent.status()["program_id"],
        program,
        "same program throughout"
    );
}

#[test]
fn listen_mode_proxies_without_ebpf() {
    let (ns, dir) = host("listen");
    let _server = peer::server(ns.name(), "127.0.0.1:9080", dir.path());
    let agent = Agent::start(
        &ns,
        dir.path(),
        "mode = \"listen\"",
        "[[intercept.ports]]\nport = 8080\nupstream = \"127.0.0.1:9080\"\nlisten = [\"127.0.0.1:8080\"]\n",
    );
    assert_eq!(
        echo(ns.name(), "http://127.0.0.1:8080/mcp", "listen").text(),
        "listen"
    );
    let log = agent.log();
    assert!(
        log.contains("upstream=127.0.0.1:9080") && log.contains("connection closed"),
        "{log}"
    );
    assert!(!agent.pins.0.exists(), "listen mode pins nothing");
}

#[test]
fn namespaces_and_pins_are_removed_when_a_test_fails() {
    require_root();
    let (tx, rx) = std::sync::mpsc::channel();
    let failed = std::thread::spawn(move || {
        let (ns, dir) = host("panic");
        let _server = peer::server(ns.name(), "127.0.0.1:8080", dir.path());
        let agent = Agent::start(&ns, dir.path(), "", PORT_8080);
        tx.send((
            ns.name().to_string(),
            agent.pins.0.clone(),
            dir.path().to_path_buf(),
        ))
        .unwrap();
        assert!(agent.pins.0.join("link").exists());
        panic!("deliberate failure inside a scenario");
    })
    .join();
    assert!(failed.is_err(), "the scenario must have panicked");
    let (ns, pins, dir) = rx
        .recv_timeout(Duration::from_secs(1))
        .expect("scenario started");
    assert!(!NetNs::exists(&ns), "netns {ns} left behind");
    assert!(!pins.exists(), "pins {} left behind", pins.display());
    assert!(!dir.exists(), "scratch dir {} left behind", dir.display());
}

#[test]
fn the_demo_runs_to_the_end() {
    require_root();
    let out = mcp_interceptor_tests::proc::run_in(
        None,
        &mcp_interceptor_tests::bin("mcp-demo"),
        &[],
        Duration::from_secs(180),
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "demo failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("checks passed") && !stdout.contains("FAIL "),
        "doctor is clean: {stdout}"
    );
    assert!(
        stdout.contains("client without a token -> refused") && stdout.contains("401"),
        "{stdout}"
    );
    assert!(
        stdout.contains("read_file /srv/crm/../../etc/passwd -> ")
            && stdout.contains("-32002")
            && stdout.contains("determining policies: crm-files-only"),
        "the demo shows a policy denial and its explanation: {stdout}"
    );
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("exchange") && l.contains("alice") && l.contains("tools/call")),
        "events carry the caller: {stdout}"
    );
    assert!(
        stdout.contains("while the agent is down: refused"),
        "{stdout}"
    );
    assert!(
        stdout.contains("the call held on host03 returns 42")
            && stdout.contains("grant added on host01 (ok); then: allowed")
            && stdout.contains("ok: 3 host(s)"),
        "the fleet section: one queue, shared grants, every chain verified: {stdout}"
    );
    assert!(stdout.contains("demo done"), "{stdout}");
    assert!(
        stdout.contains("chain and signatures intact"),
        "the demo's audit verifies: {stdout}"
    );
    assert!(
        stdout.lines().any(|l| l.contains("tools/call")
            && l.contains("lookup_customer")
            && l.contains("exchange")),
        "replay shows the call: {stdout}"
    );
    let call = stdout
        .lines()
        .find(|l| l.starts_with("exchange") && l.contains("tools/call"));
    assert!(
        call.is_some_and(|l| l.contains("lookup_customer") && l.contains("200")),
        "{stdout}"
    );
}
