//! The shipped systemd unit (deploy/systemd/mcp-interceptor.service): it
//! verifies, its sandbox stays tight, and the agent speaks the notify
//! protocol `Type=notify` relies on.

use std::{
    os::unix::net::UnixDatagram,
    path::{Path, PathBuf},
    sync::mpsc,
    time::{Duration, Instant},
};

use mcp_interceptor_tests::{
    Agent, NetNs, TempDir,
    agent::ANONYMOUS,
    bin,
    everything::repo,
    http::{exchange, initialize, post},
    proc::run_in,
    require_root,
};

const SIGTERM: i32 = 15;
const PORT_8080: &str = "[[intercept.ports]]\nport = 8080\n";

/// The overall `systemd-analyze security` exposure the unit must not
/// exceed (0 best, 10 worst; "OK" is below 5). It scored 2.5 when written:
/// the headroom allows a justified addition, not a lost protection.
const MAX_EXPOSURE: f64 = 3.5;

/// `systemd-analyze --security --offline` exists from systemd 250 on.
const MIN_SYSTEMD: u32 = 250;

/// A copy of the unit in `dir` whose ExecStart names the built agent
/// (`verify` checks that the binary exists).
fn unit_copy(dir: &Path) -> PathBuf {
    let text = std::fs::read_to_string(repo().join("deploy/systemd/mcp-interceptor.service"))
        .expect("read the unit");
    let shipped = "ExecStart=/usr/bin/mcp-interceptor ";
    assert_eq!(
        text.lines().filter(|l| l.starts_with(shipped)).count(),
        1,
        "the unit has exactly one ExecStart running /usr/bin/mcp-interceptor"
    );
    let built = format!("ExecStart={} ", bin("mcp-interceptor").display());
    let path = dir.join("mcp-interceptor.service");
    std::fs::write(&path, text.replace(shipped, &built)).expect("write the unit copy");
    path
}

fn analyze(args: &[&str]) -> std::process::Output {
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    run_in(
        None,
        Path::new("systemd-analyze"),
        &args,
        Duration::from_secs(60),
    )
}

fn systemd_version() -> u32 {
    let out = analyze(&["--version"]);
    let text = String::from_utf8_lossy(&out.stdout);
    // "systemd 252 (252.38-1~deb12u1)"
    text.split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("unexpected `systemd-analyze --version`: {text}"))
}

#[test]
fn unit_verifies_without_warnings() {
    let dir = TempDir::new("sd-verify");
    let unit = unit_copy(dir.path());
    // --man=no: the man page Documentation= names comes with the package;
    // tests/tests/package.rs verifies the installed unit, man page
    // included.
    let out = analyze(&["verify", "--man=no", &unit.display().to_string()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stderr.trim().is_empty(),
        "systemd-analyze verify ({}):\n{stderr}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout)
    );
}

/// Values of `key=` in the unit, in order.
fn settings(unit: &str, key: &str) -> Vec<String> {
    let prefix = format!("{key}=");
    unit.lines()
        .filter_map(|l| l.strip_prefix(&prefix))
        .map(str::to_owned)
        .collect()
}

/// What neither `verify` nor the exposure score notices, but the agent
/// needs: a "hardening" that removes one of these breaks steering.
#[test]
fn unit_keeps_what_steering_needs() {
    let unit = std::fs::read_to_string(repo().join("deploy/systemd/mcp-interceptor.service"))
        .expect("read the unit");
    // ProtectKernelTunables= mounts /sys/fs/bpf read-only, and
    // ReadWritePaths= cannot reopen that same path: no pins.
    assert!(
        settings(&unit, "ProtectKernelTunables")
            .iter()
            .all(|v| matches!(v.as_str(), "no" | "false" | "0" | "off")),
        "ProtectKernelTunables= makes the pin directory read-only"
    );
    assert!(
        settings(&unit, "ReadWritePaths")
            .iter()
            .any(|v| v.trim_start_matches('-') == "/sys/fs/bpf"),
        "the pin directory must stay writable"
    );
    assert!(
        settings(&unit, "SystemCallFilter")
            .iter()
            .any(|v| v.split_whitespace().any(|c| c == "bpf")),
        "bpf(2) is not in @system-service"
    );
    let caps: Vec<String> = settings(&unit, "CapabilityBoundingSet")
        .iter()
        .flat_map(|v| v.split_whitespace().map(str::to_owned).collect::<Vec<_>>())
        .collect();
    for need in [
        "CAP_BPF",
        "CAP_PERFMON",
        "CAP_NET_ADMIN",
        "CAP_NET_BIND_SERVICE",
    ] {
        assert!(caps.iter().any(|c| c == need), "{need} missing: {caps:?}");
    }
    assert_eq!(settings(&unit, "Type"), ["notify"]);
}

/// The operational settings issue 26 asked for: no start before the
/// operator wrote a config, a watchdog the agent pings, documentation.
#[test]
fn unit_waits_for_a_config_and_is_watched() {
    let unit = std::fs::read_to_string(repo().join("deploy/systemd/mcp-interceptor.service"))
        .expect("read the unit");
    assert_eq!(
        settings(&unit, "ConditionPathExists"),
        ["/etc/mcp-interceptor/config.toml"]
    );
    assert_eq!(
        settings(&unit, "ExecStart"),
        ["/usr/bin/mcp-interceptor run --config /etc/mcp-interceptor/config.toml"],
        "the condition must name the file ExecStart reads"
    );
    assert_eq!(settings(&unit, "WatchdogSec"), ["30s"]);
    // The watchdog restarts through Restart=; NotifyAccess=main lets the
    // agent's pings in and nobody else's.
    assert_eq!(settings(&unit, "Restart"), ["always"]);
    assert_eq!(settings(&unit, "NotifyAccess"), ["main"]);
    let docs = settings(&unit, "Documentation").join(" ");
    assert!(
        docs.contains("man:mcp-interceptor(8)")
            && docs.contains("file:/usr/share/doc/mcp-interceptor/systemd.md"),
        "Documentation={docs}"
    );
    // The runbook the unit points at covers the start limit.
    let readme = std::fs::read_to_string(repo().join("deploy/systemd/README.md")).unwrap();
    assert!(
        readme.contains("reset-failed mcp-interceptor"),
        "runbook missing"
    );
}

/// The number and label of "→ Overall exposure level for X: 2.3 OK 🙂".
fn overall_exposure(report: &str) -> Option<(f64, String)> {
    let line = report
        .lines()
        .find(|l| l.contains("Overall exposure level"))?;
    let mut words = line.rsplit_once(": ")?.1.split_whitespace();
    let value = words.next()?.parse().ok()?;
    Some((value, words.next()?.to_string()))
}

#[test]
fn exposure_parser_reads_the_summary_line() {
    let report = "✓ NoNewPrivileges=   ...\n\
                  → Overall exposure level for mcp-interceptor.service: 2.3 OK 🙂\n";
    assert_eq!(overall_exposure(report), Some((2.3, "OK".to_string())));
    assert_eq!(overall_exposure("nothing here"), None);
}

#[test]
fn unit_sandbox_exposure_stays_low() {
    let version = systemd_version();
    assert!(
        version >= MIN_SYSTEMD,
        "systemd {version} has no `systemd-analyze security --offline` (needs {MIN_SYSTEMD}+)"
    );
    let dir = TempDir::new("sd-security");
    let unit = unit_copy(dir.path());
    let out = analyze(&[
        "security",
        "--no-pager",
        "--offline=true",
        &unit.display().to_string(),
    ]);
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "systemd-analyze security ({}):\n{}{report}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let (exposure, label) = overall_exposure(&report)
        .unwrap_or_else(|| panic!("no overall exposure in the report:\n{report}"));
    println!("systemd {version}: mcp-interceptor.service exposure {exposure} {label}");
    assert!(
        exposure <= MAX_EXPOSURE,
        "exposure {exposure} {label} is above {MAX_EXPOSURE}:\n{report}"
    );
}

/// Everything the agent sent to the notify socket, each with whether the
/// agent's log said "agent ready" when the datagram arrived.
fn listen(sock: UnixDatagram, log: PathBuf, limit: Duration) -> mpsc::Receiver<(String, bool)> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        sock.set_read_timeout(Some(Duration::from_millis(200)))
            .expect("read timeout");
        let deadline = Instant::now() + limit;
        let mut buf = vec![0u8; 4096];
        while Instant::now() < deadline {
            let Ok(n) = sock.recv(&mut buf) else { continue };
            let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
            let logged_ready = std::fs::read_to_string(&log)
                .unwrap_or_default()
                .contains("agent ready");
            if tx.send((msg, logged_ready)).is_err() {
                return;
            }
        }
    });
    rx
}

/// The notifications as they arrive, WATCHDOG=1 pings counted apart.
struct Notes {
    rx: mpsc::Receiver<(String, bool)>,
    /// When each WATCHDOG=1 arrived.
    pings: Vec<Instant>,
}

impl Notes {
    /// The next state change (anything but a watchdog ping).
    fn next(&mut self, what: &str) -> (String, bool) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let got = self
                .rx
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("no {what} notification within 20 s"));
            if got.0 == "WATCHDOG=1" {
                self.pings.push(Instant::now());
            } else {
                return got;
            }
        }
    }

    /// Collects pings for `d`; fails on any other notification.
    fn pings_for(&mut self, d: Duration) -> usize {
        let before = self.pings.len();
        let end = Instant::now() + d;
        while let Some(left) = end.checked_duration_since(Instant::now()) {
            match self.rx.recv_timeout(left) {
                Ok((m, _)) if m == "WATCHDOG=1" => self.pings.push(Instant::now()),
                Ok((m, _)) => panic!("unexpected notification {m:?}"),
                Err(_) => break,
            }
        }
        self.pings.len() - before
    }
}

/// `WATCHDOG_USEC` for the tests' agents: 1 s, so a ping every 0.5 s.
const WATCHDOG_USEC: &str = "1000000";

fn notify_env(socket: &Path) -> Vec<(String, String)> {
    vec![
        ("NOTIFY_SOCKET".to_string(), socket.display().to_string()),
        ("WATCHDOG_USEC".to_string(), WATCHDOG_USEC.to_string()),
    ]
}

#[test]
fn agent_notifies_ready_reloading_stopping_and_pings_the_watchdog() {
    require_root();
    let ns = NetNs::new("sdnotify");
    let dir = TempDir::new("sdnotify");
    let socket = dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&socket).expect("bind the notify socket");
    // The harness names the first agent process "agent1", its stderr
    // `<dir>/agent1.err`; checked below once the agent is up.
    let log = dir.path().join("agent1.err");
    let rx = listen(sock, log.clone(), Duration::from_secs(90));
    let mut notes = Notes {
        rx,
        pings: Vec::new(),
    };

    let env = notify_env(&socket);
    let mut agent = Agent::start_full(&ns, dir.path(), "", PORT_8080, "", ANONYMOUS, env);
    assert_eq!(
        agent.proc().stderr,
        log,
        "the harness moved the agent's log"
    );

    let (msg, logged_ready) = notes.next("READY=1");
    assert_eq!(msg, "READY=1");
    assert!(
        logged_ready,
        "READY=1 arrived before the log said \"agent ready\":\n{}",
        agent.log()
    );
    assert!(notes.pings.is_empty(), "a watchdog ping before READY=1");
    // Half of WATCHDOG_USEC: about 6 pings in 3 s (timer jitter allowed).
    let pinged = notes.pings_for(Duration::from_secs(3));
    assert!(
        (4..=8).contains(&pinged),
        "{pinged} watchdog pings in 3 s with WATCHDOG_USEC={WATCHDOG_USEC}"
    );

    // SIGHUP: RELOADING=1 with the monotonic clock, a status, READY=1.
    agent.reload(&ns, "", PORT_8080);
    let (msg, _) = notes.next("RELOADING=1");
    let mut lines = msg.lines();
    assert_eq!(lines.next(), Some("RELOADING=1"), "{msg:?}");
    assert!(
        lines
            .next()
            .and_then(|l| l.strip_prefix("MONOTONIC_USEC="))
            .is_some_and(|v| v.parse::<u64>().is_ok_and(|us| us > 0)),
        "{msg:?}"
    );
    assert_eq!(notes.next("STATUS").0, "STATUS=running; config reloaded");
    assert_eq!(notes.next("READY=1 after the reload").0, "READY=1");
    assert!(
        notes.pings_for(Duration::from_secs(1)) >= 1,
        "no watchdog ping after the reload"
    );

    agent.stop(SIGTERM);
    let (msg, _) = notes.next("STOPPING=1");
    assert_eq!(msg, "STOPPING=1", "{}", agent.log());
    let log = agent.log();
    assert!(log.contains("agent stopped"), "{log}");
    // Nothing else was sent, not even a ping.
    assert!(
        notes.rx.recv_timeout(Duration::from_millis(1200)).is_err(),
        "an unexpected notification after STOPPING=1"
    );
}

#[test]
fn agent_without_watchdog_usec_sends_no_pings() {
    require_root();
    let ns = NetNs::new("sdnodog");
    let dir = TempDir::new("sdnodog");
    let socket = dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&socket).expect("bind the notify socket");
    let rx = listen(sock, dir.path().join("agent1.err"), Duration::from_secs(30));
    let mut notes = Notes {
        rx,
        pings: Vec::new(),
    };
    let env = vec![("NOTIFY_SOCKET".to_string(), socket.display().to_string())];
    let _agent = Agent::start_full(&ns, dir.path(), "", PORT_8080, "", ANONYMOUS, env);
    assert_eq!(notes.next("READY=1").0, "READY=1");
    assert_eq!(notes.pings_for(Duration::from_secs(2)), 0);
}

/// Runs a command that must succeed; its stdout.
fn sh(cmd: &str, args: &[&str]) -> String {
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    let out = run_in(None, Path::new(cmd), &args, Duration::from_secs(30));
    assert!(
        out.status.success(),
        "{cmd} {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A small ext4 file system on a loop device, mounted at `at`; unmounted
/// and detached on drop (after the agent that wrote to it is gone).
struct LoopFs {
    at: PathBuf,
    dev: String,
}

impl LoopFs {
    fn new(image: &Path, at: &Path) -> Self {
        sh("truncate", &["-s", "64M", &image.display().to_string()]);
        sh("mkfs.ext4", &["-q", "-F", &image.display().to_string()]);
        let dev = sh("losetup", &["-f", "--show", &image.display().to_string()]);
        std::fs::create_dir_all(at).unwrap();
        let fs = Self {
            at: at.to_path_buf(),
            dev,
        };
        sh("mount", &[&fs.dev, &at.display().to_string()]);
        // The audit directory holds only what the audit writes.
        std::fs::remove_dir(at.join("lost+found")).unwrap();
        fs
    }
}

impl Drop for LoopFs {
    fn drop(&mut self) {
        let at = self.at.display().to_string();
        let _ = run_in(
            None,
            Path::new("fsfreeze"),
            &["-u".into(), at.clone()],
            Duration::from_secs(10),
        );
        let _ = run_in(
            None,
            Path::new("umount"),
            &["-l".into(), at],
            Duration::from_secs(10),
        );
        let _ = run_in(
            None,
            Path::new("losetup"),
            &["-d".into(), self.dev.clone()],
            Duration::from_secs(10),
        );
    }
}

/// A frozen file system (writes block until thawed); thawed on drop, which
/// must come before the agent's: a process blocked on it cannot be killed.
struct Frozen(String);

impl Frozen {
    fn new(at: &Path) -> Self {
        let at = at.display().to_string();
        sh("fsfreeze", &["-f", &at]);
        Self(at)
    }
}

impl Drop for Frozen {
    fn drop(&mut self) {
        let _ = run_in(
            None,
            Path::new("fsfreeze"),
            &["-u".into(), self.0.clone()],
            Duration::from_secs(10),
        );
    }
}

/// A hung agent must fall silent: audit writes blocked on a frozen disk
/// take every worker thread, and the pings stop (a free-running timer
/// thread would go on pinging, and systemd would never restart it). They
/// resume once the disk thaws.
#[test]
fn watchdog_pings_stop_while_serving_hangs_on_the_audit_disk() {
    require_root();
    let ns = NetNs::new("sdhang");
    let dir = TempDir::new("sdhang");
    // The harness's audit directory is <dir>/audit.
    let disk = LoopFs::new(&dir.path().join("audit.img"), &dir.path().join("audit"));
    let socket = dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&socket).expect("bind the notify socket");
    let rx = listen(
        sock,
        dir.path().join("agent1.err"),
        Duration::from_secs(100),
    );
    let mut notes = Notes {
        rx,
        pings: Vec::new(),
    };
    let agent = Agent::start_full(
        &ns,
        dir.path(),
        "",
        PORT_8080,
        "",
        ANONYMOUS,
        notify_env(&socket),
    );
    assert_eq!(notes.next("READY=1").0, "READY=1");
    assert!(
        notes.pings_for(Duration::from_secs(2)) >= 3,
        "no pings while serving"
    );

    let frozen = Frozen::new(&disk.at);
    // More requests than worker threads (one per core): each one's audit
    // row blocks in write(2) on the frozen disk.
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
    let clients: Vec<_> = (0..4 * workers.max(2))
        .map(|i| {
            let ns_path = ns.path();
            std::thread::spawn(move || {
                let body = serde_json::to_vec(&initialize(i as i64)).unwrap();
                let req = post("/mcp", &body, &[]);
                let file = std::fs::File::open(&ns_path).expect("open netns");
                nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
                // May fail either way (no upstream listens): only its audit
                // row matters.
                std::panic::catch_unwind(|| {
                    exchange(
                        "127.0.0.1:8080".parse().unwrap(),
                        &[&req],
                        Duration::ZERO,
                        Duration::from_secs(30),
                    )
                })
                .is_ok()
            })
        })
        .collect();
    // Pings may straddle the freeze for one tick, then stop.
    notes.pings_for(Duration::from_secs(1));
    let silent = notes.pings_for(Duration::from_secs(3));
    assert_eq!(
        silent,
        0,
        "the agent pinged the watchdog while its workers were stuck on the audit disk:\n{}",
        agent_log(&dir)
    );

    drop(frozen);
    let resumed = notes.pings_for(Duration::from_secs(3));
    assert!(
        resumed >= 2,
        "{resumed} pings in 3 s after the disk thawed:\n{}",
        agent_log(&dir)
    );
    // The requests blocked on the disk were answered once it thawed (the
    // agent resumed, it was not restarted): their audit rows were due.
    let answered = clients
        .into_iter()
        .filter_map(|c| c.join().ok())
        .filter(|&a| a)
        .count();
    assert!(
        answered > 0,
        "no request was answered after the thaw:\n{}",
        agent_log(&dir)
    );
    drop(agent);
    drop(disk);
}

fn agent_log(dir: &TempDir) -> String {
    std::fs::read_to_string(dir.path().join("agent1.err")).unwrap_or_default()
}
