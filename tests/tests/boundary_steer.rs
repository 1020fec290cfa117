//! Steering that used to fail open without a word (issue 19), end to end
//! in namespaces each test creates: pins that die with the agent, server
//! sockets wider than their rule, fail open without an IPv6 proxy socket,
//! and upstream budgets one caller's GET streams could exhaust.

#[path = "boundary_steer/raw.rs"]
mod raw;

use std::{path::Path, time::Duration};

use mcp_interceptor_tests::{
    Agent, NetNs, Proc, TempDir,
    agent::PinGuard,
    bin,
    peer::{self, call},
    proc::run_in,
    require_root, unique, wait_for,
};
use serde_json::json;

const SIGKILL: i32 = 9;
const SIGTERM: i32 = 15;
const PORT_8080: &str = "[[intercept.ports]]\nport = 8080\n";

fn host(tag: &str) -> (NetNs, TempDir) {
    require_root();
    (NetNs::new(tag), TempDir::new(tag))
}

fn text(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A config for an agent that is *not* told its namespace: it steers the
/// one it runs in, as under `ip netns exec`.
fn config_without_netns(dir: &Path, pin_dir: &Path) -> std::path::PathBuf {
    let path = dir.join("netns-exec.toml");
    let d = dir.display();
    std::fs::write(
        &path,
        format!(
            "[intercept]\npin_dir = \"{}\"\n{PORT_8080}\
             [audit]\ndir = \"{d}/audit\"\nsigning_key = \"{d}/audit-signing.key\"\n\
             [admin]\nsocket = \"{d}/admin.sock\"\n[identity]\nallow_anonymous = true\n",
            pin_dir.display()
        ),
    )
    .expect("write config");
    path
}

#[test]
fn under_ip_netns_exec_the_agent_refuses_pins_that_die_with_it() {
    let (ns, dir) = host("mntns");
    let _server = peer::server(ns.name(), "127.0.0.1:8080", dir.path());
    let pins = PinGuard(format!("/sys/fs/bpf/{}", unique("mcpi-t")).into());
    let config = config_without_netns(dir.path(), &pins.0);
    let args: Vec<String> = ["run", "--config", &config.display().to_string()]
        .map(String::from)
        .to_vec();
    // `ip netns exec` gives the agent a private mount namespace with a
    // fresh /sys: a bpffs it mounts there goes away with it.
    let mut agent = Proc::spawn(
        "agent-netns-exec",
        Some(ns.name()),
        &bin("mcp-interceptor"),
        &args,
        dir.path(),
    );
    let status = wait_for("the agent to refuse", Duration::from_secs(20), || {
        agent.try_wait()
    });
    let log = agent.stderr();
    assert!(!status.success(), "the agent started:\n{log}");
    assert!(log.contains("would not outlive the agent"), "{log}");
    assert!(
        log.contains("-v /sys/fs/bpf:/sys/fs/bpf:rslave"),
        "names the fix:\n{log}"
    );
    assert!(log.contains("intercept.netns"), "{log}");
    // Nothing steers: the server is reached directly, as before the agent.
    assert_eq!(
        call(
            ns.name(),
            "http://127.0.0.1:8080/mcp",
            "echo",
            json!({"text": "x"})
        )
        .text(),
        "x"
    );

    // doctor, run the same way, says the same.
    let args: Vec<String> = ["doctor", "--config", &config.display().to_string()]
        .map(String::from)
        .to_vec();
    let out = run_in(
        Some(ns.name()),
        &bin("mcp-interceptor"),
        &args,
        Duration::from_secs(60),
    );
    let report = text(&out);
    assert!(!out.status.success(), "{report}");
    assert!(report.contains("FAIL bpffs"), "{report}");
    assert!(
        report.contains("/sys/fs/bpf:/sys/fs/bpf:rslave"),
        "{report}"
    );
}

#[test]
fn with_intercept_netns_the_pins_outlive_a_kill_9_and_keep_the_port_closed() {
    let (ns, dir) = host("mntok");
    let _server = peer::server(ns.name(), "127.0.0.1:8080", dir.path());
    let mut agent = Agent::start(&ns, dir.path(), "fail = \"closed\"", PORT_8080);
    assert!(
        agent.log().contains("pins outlive the agent"),
        "{}",
        agent.log()
    );
    let doctor = text(&agent.doctor());
    assert!(doctor.contains("ok   pins last"), "{doctor}");
    let url = "http://127.0.0.1:8080/mcp";
    assert_eq!(
        call(ns.name(), url, "echo", json!({"text": "up"})).text(),
        "up"
    );
    agent.stop(SIGKILL);
    let before = agent.counters(8080);
    let refused = call(ns.name(), url, "echo", json!({"text": "must not pass"}));
    assert!(!refused.ok(), "reached the server: {:?}", refused.output);
    assert!(agent.counters(8080).dropped > before.dropped);
}

#[test]
fn a_server_bound_wider_than_its_rule_is_named_at_start_by_doctor_and_check_config() {
    let (ns, dir) = host("wide");
    ns.ip(&["addr", "add", "127.0.0.2/8", "dev", "lo"]);
    let _server = peer::server(ns.name(), "0.0.0.0:8080", dir.path());
    let rule = "[[intercept.ports]]\nport = 8080\naddresses = [\"127.0.0.2\"]\n";
    let agent = Agent::start(&ns, dir.path(), "", rule);
    let log = agent.log();
    assert!(
        log.contains("the server socket 0.0.0.0:8080 accepts connections at addresses"),
        "{log}"
    );
    assert!(log.contains("remove `addresses` from the rule"), "{log}");
    // The hole the warning is about: 127.0.0.1 reaches the server unsteered.
    let before = agent.counters(8080).steered;
    let direct = call(
        ns.name(),
        "http://127.0.0.1:8080/mcp",
        "echo",
        json!({"text": "d"}),
    );
    assert_eq!(direct.text(), "d");
    assert_eq!(
        agent.counters(8080).steered,
        before,
        "127.0.0.1 is not steered"
    );

    let doctor = agent.doctor();
    let report = text(&doctor);
    assert!(!doctor.status.success(), "{report}");
    assert!(report.contains("FAIL listeners"), "{report}");
    assert!(
        report.contains("0.0.0.0:8080 is wider than its rule"),
        "{report}"
    );
    let check = agent.cli(&["check-config", &agent.config.display().to_string()]);
    let out = text(&check);
    assert!(check.status.success(), "the config itself is valid: {out}");
    assert!(
        out.contains("# warning: the server socket 0.0.0.0:8080"),
        "{out}"
    );
}

/// An MCP server run by user `nobody` on `listen`.
fn squatter(ns: &NetNs, dir: &Path, listen: &str) -> Proc {
    let peer = bin("mcp-peer").display().to_string();
    let mut p = Proc::spawn(
        "squatter",
        Some(ns.name()),
        Path::new("/usr/bin/setpriv"),
        &[
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=-all",
            &peer,
            "server",
            "--listen",
            listen,
        ]
        .map(String::from),
        dir,
    );
    p.wait_for_output("listening", Duration::from_secs(10));
    p
}

#[test]
fn a_steered_call_is_never_forwarded_to_another_users_socket_on_the_port() {
    let (ns, dir) = host("squat");
    ns.ip(&["addr", "add", "127.0.0.2/8", "dev", "lo"]);
    let _server = peer::server(ns.name(), "127.0.0.1:8080", dir.path());
    // `addresses = []`, no `upstream`: calls go to the original destination.
    let agent = Agent::start(&ns, dir.path(), "", PORT_8080);
    let squatter = squatter(&ns, dir.path(), "127.0.0.2:8080");
    let url = "http://127.0.0.1:8080/mcp";
    assert_eq!(
        call(ns.name(), url, "echo", json!({"text": "ok"})).text(),
        "ok"
    );
    let stolen = call(
        ns.name(),
        "http://127.0.0.2:8080/mcp",
        "echo",
        json!({"text": "x"}),
    );
    assert!(!stolen.ok(), "the call was answered: {:?}", stolen.output);
    let log = agent.log();
    assert!(
        log.contains("that would receive 127.0.0.2:8080 belongs to uid 65534"),
        "{log}"
    );
    let theirs = squatter.stderr();
    assert!(
        !theirs.contains(": POST ") && !theirs.contains(": GET "),
        "the other user's server was sent a request:\n{theirs}"
    );
}

/// The IPv6 twin of the test above: the server listens on IPv4 only, so
/// the one socket for `[::1]:8080` is another user's. A call there through
/// the steered port (the agent's `[::1]` proxy socket) must be refused,
/// not forwarded with the caller's request to that user.
#[test]
fn a_steered_ipv6_call_is_never_forwarded_to_another_users_socket_on_the_port() {
    let (ns, dir) = host("squat6");
    let _server = peer::server(ns.name(), "127.0.0.1:8080", dir.path());
    let agent = Agent::start(&ns, dir.path(), "", PORT_8080);
    let squatter = squatter(&ns, dir.path(), "[::1]:8080");
    assert_eq!(
        call(
            ns.name(),
            "http://127.0.0.1:8080/mcp",
            "echo",
            json!({"text": "ok"})
        )
        .text(),
        "ok"
    );
    let stolen = call(
        ns.name(),
        "http://[::1]:8080/mcp",
        "echo",
        json!({"text": "x"}),
    );
    assert!(!stolen.ok(), "the call was answered: {:?}", stolen.output);
    let log = agent.log();
    assert!(
        log.contains("that would receive [::1]:8080 belongs to uid 65534"),
        "{log}"
    );
    let theirs = squatter.stderr();
    assert!(
        !theirs.contains(": POST ") && !theirs.contains(": GET "),
        "the other user's server was sent a request:\n{theirs}"
    );
}

#[test]
fn another_users_listener_on_a_steered_port_is_named() {
    let (ns, dir) = host("second");
    ns.ip(&["addr", "add", "127.0.0.2/8", "dev", "lo"]);
    let _server = peer::server(ns.name(), "127.0.0.1:8080", dir.path());
    // An unprivileged user's socket on the same port at another address:
    // steered connections to it would be forwarded there.
    let _squatter = squatter(&ns, dir.path(), "127.0.0.2:8080");
    let agent = Agent::start(&ns, dir.path(), "", PORT_8080);
    assert!(
        agent
            .log()
            .contains("sockets of more than one owner listen on steered port 8080"),
        "{}",
        agent.log()
    );
    let report = text(&agent.doctor());
    assert!(
        report.contains("a second listener on steered port 8080")
            && report.contains("127.0.0.2:8080 (uid 65534)"),
        "{report}"
    );
}

#[test]
fn fail_open_without_an_ipv6_proxy_socket_is_refused() {
    let (ns, dir) = host("v4open");
    let _server = peer::server(ns.name(), "[::]:8080", dir.path());
    let mut agent = Agent::start(&ns, dir.path(), "", PORT_8080);
    agent.stop(SIGTERM);
    // With only an IPv4 proxy socket, the program finds no socket for IPv6
    // connections and, failing open, passes them to the server unproxied.
    let keys = "fail = \"open\"\nproxy_listen = [\"127.0.0.1:15001\"]";
    let out = agent.start_refused(&ns, keys, PORT_8080);
    assert!(
        out.contains("intercept.proxy_listen has no IPv6 address while fail = \"open\""),
        "{out}"
    );
    assert!(out.contains("[::1]:15001"), "names the fix: {out}");
    let check = agent.cli(&["check-config", &agent.config.display().to_string()]);
    assert!(!check.status.success(), "{}", text(&check));
}

#[test]
fn one_callers_get_streams_cannot_stop_another_callers_post() {
    let (ns, dir) = host("budget");
    for a in ["127.0.0.2/8", "127.0.0.3/8"] {
        ns.ip(&["addr", "add", a, "dev", "lo"]);
    }
    let _server = peer::server(ns.name(), "127.0.0.1:8080", dir.path());
    let tables = format!(
        "{PORT_8080}[http]\nmax_upstream_streams = 3\nmax_upstream_streams_per_caller = 2\n"
    );
    let _agent = Agent::start(&ns, dir.path(), "", &tables);
    let (mallory, eve, alice) = ("127.0.0.2", "127.0.0.3", "127.0.0.1");

    let m1 = raw::open_stream(&ns, mallory);
    let _m2 = raw::open_stream(&ns, mallory);
    assert_eq!((m1.status, _m2.status), (200, 200));
    let m3 = raw::open_stream(&ns, mallory);
    assert_eq!(m3.status, 429, "over the caller's share: {}", m3.head);
    assert_eq!(
        (m3.code(), m3.reason()),
        (-32004, "caller_busy".into()),
        "{}",
        m3.head
    );
    let e1 = raw::open_stream(&ns, eve);
    assert_eq!(e1.status, 200, "another caller still gets a stream");
    let e2 = raw::open_stream(&ns, eve);
    assert_eq!(e2.status, 503, "every stream slot is held: {}", e2.head);
    assert_eq!((e2.code(), e2.reason()), (-32004, "upstream_busy".into()));

    // Every stream slot of the server is held, yet a call goes through.
    assert_eq!(raw::echo(&ns, alice, "still served"), "still served");
    assert_eq!(raw::echo(&ns, mallory, "mine too"), "mine too");
    // A closed stream gives its slot back.
    drop(m1);
    wait_for(
        "mallory's slot to come back",
        Duration::from_secs(45),
        || (raw::open_stream(&ns, mallory).status == 200).then_some(()),
    );
}
