//! Same-host callers named by the kernel (issue 23), end to end: the real
//! agent in eBPF mode, the real capture programs (fentry on tcp_connect,
//! tp_btf inet_sock_set_state), callers that are real processes under other
//! uids and in other cgroups, a remote peer over veth, and a reused PID.
//! What the proxy saw is read from its "connection closed" log line, which
//! carries the process facts of the connection.

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::Duration,
};

use mcp_interceptor_tests::{Agent, NetNs, TempDir, Veth, peer, require_root, unique, wait_for};

const PORT_8080: &str = "[[intercept.ports]]\nport = 8080\n";
const CURL: &str = "/usr/bin/curl";
const PYTHON: &str = "/usr/bin/python3.11";

/// A cgroup2 directory for one test, removed on drop (its processes have
/// exited by then).
struct Cgroup(PathBuf);

impl Cgroup {
    fn new(parent: &Path, name: &str) -> Self {
        let p = parent.join(name);
        std::fs::create_dir_all(&p).expect("create cgroup");
        Self(p)
    }

    /// The path as the agent reports it: relative to the cgroup2 mount.
    fn rel(&self) -> String {
        let root = cgroup2_root();
        format!("/{}", self.0.strip_prefix(&root).unwrap().display())
    }
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(&self.0);
    }
}

fn cgroup2_root() -> PathBuf {
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    mounts
        .lines()
        .find_map(|l| {
            let (pre, post) = l.split_once(" - ")?;
            (post.starts_with("cgroup2 ")).then(|| PathBuf::from(pre.split(' ').nth(4).unwrap()))
        })
        .expect("a cgroup2 mount")
}

/// `curl` to `url` from inside `ns` (network namespace only), as `uid`, in
/// cgroup `cg`: one shell that moves itself into the cgroup, then execs
/// nsenter, setpriv and curl, so the PID the test gets is curl's.
fn curl_as(ns: &NetNs, uid: u32, cg: &Cgroup, url: &str) -> Child {
    let script = format!(
        "echo $$ > {procs} && exec nsenter --net={ns} setpriv --reuid={uid} --regid={uid} \
         --clear-groups {CURL} -s -o /dev/null --max-time 10 -X POST \
         -H 'content-type: application/json' -H 'accept: application/json, text/event-stream' \
         -d '{{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}}' {url}",
        procs = cg.0.join("cgroup.procs").display(),
        ns = ns.path(),
    );
    Command::new("sh")
        .args(["-c", &script])
        .spawn()
        .expect("spawn sh")
}

/// The value of `field` in `line` (`field=value`, quotes dropped).
fn field<'a>(line: &'a str, name: &str) -> Option<&'a str> {
    let at = line.find(&format!(" {name}="))? + name.len() + 2;
    let v = line[at..].split(' ').next()?;
    Some(v.trim_matches('"'))
}

/// The "connection closed" line of the connection from process `pid`.
fn closed_line_of(agent: &Agent, pid: u32) -> String {
    wait_for(
        &format!("the connection of pid {pid} logged"),
        Duration::from_secs(10),
        || {
            agent
                .log()
                .lines()
                .find(|l| {
                    l.contains("connection closed") && field(l, "pid") == Some(&pid.to_string())
                })
                .map(String::from)
        },
    )
}

/// Two unix users in two cgroups call the same server on loopback (IPv4
/// and IPv6): the proxy sees each one's pid, uid, gid, cgroup and
/// executable, as the kernel recorded them at connect time.
#[test]
fn local_callers_carry_their_uid_cgroup_and_exe() {
    require_root();
    let (ns, dir) = (NetNs::new("pcap"), TempDir::new("pcap"));
    let _server = peer::server(ns.name(), "[::]:8080", dir.path());
    let agent = Agent::start(&ns, dir.path(), "", PORT_8080);
    let parent = Cgroup::new(&cgroup2_root(), &unique("mcpi-pcap-"));
    let (a, b) = (Cgroup::new(&parent.0, "a"), Cgroup::new(&parent.0, "b"));

    let mut seen = Vec::new();
    for (uid, cg, url) in [
        (65534, &a, "http://127.0.0.1:8080/mcp"),
        (4242, &b, "http://[::1]:8080/mcp"),
    ] {
        let mut child = curl_as(&ns, uid, cg, url);
        let pid = child.id();
        assert!(child.wait().unwrap().success(), "curl as {uid} failed");
        let line = closed_line_of(&agent, pid);
        assert_eq!(
            field(&line, "uid"),
            Some(uid.to_string().as_str()),
            "{line}"
        );
        assert_eq!(
            field(&line, "gid"),
            Some(uid.to_string().as_str()),
            "{line}"
        );
        assert_eq!(field(&line, "cgroup"), Some(cg.rel().as_str()), "{line}");
        let exe = std::fs::canonicalize(CURL).unwrap();
        assert_eq!(field(&line, "exe"), exe.to_str(), "{line}");
        assert!(
            field(&line, "start_time_ns").is_some_and(|t| t != "0"),
            "{line}"
        );
        seen.push(line);
    }
    assert_ne!(field(&seen[0], "cgroup"), field(&seen[1], "cgroup"));

    // Every record left the map: taken by the proxy on accept (the
    // agent's own upstream connections are never recorded).
    let metrics = metrics(&agent);
    assert!(metrics.contains("kind=\"taken_by_proxy\"} 2"), "{metrics}");
    assert!(metrics.contains("kind=\"recorded\"} 2"), "{metrics}");
    assert!(metrics.contains("kind=\"map_full\"} 0"), "{metrics}");
    // doctor names the hook it checked on this kernel.
    let doctor = String::from_utf8_lossy(&agent.doctor().stdout).into_owned();
    let line = doctor.lines().find(|l| l.contains("process capture"));
    assert!(
        line.is_some_and(|l| l.contains("inet_sock_set_state")),
        "{doctor}"
    );
    drop((a, b));
}

/// A caller on another host (a veth peer) has no record, and none is
/// invented: its connection carries no process facts.
#[test]
fn remote_caller_gets_no_process_record() {
    require_root();
    let (ns, dir) = (NetNs::new("pcapr"), TempDir::new("pcapr"));
    let remote = NetNs::new("pcapp");
    let veth = Veth::connect(&ns, &remote, 61);
    let _server = peer::server(ns.name(), "[::]:8080", dir.path());
    let agent = Agent::start(&ns, dir.path(), "", PORT_8080);

    let ok = Command::new("nsenter")
        .arg(format!("--net={}", remote.path()))
        .args([
            CURL,
            "-s",
            "-o",
            "/dev/null",
            "--max-time",
            "10",
            "-X",
            "POST",
        ])
        .args(["-H", "content-type: application/json", "-d", "{}"])
        .arg(format!("http://{}:8080/mcp", veth.a_v4))
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(ok.success());
    let line = wait_for(
        "the remote connection logged",
        Duration::from_secs(10),
        || {
            agent
                .log()
                .lines()
                .find(|l| {
                    l.contains("connection closed")
                        && field(l, "client").is_some_and(|c| c.starts_with(&veth.b_v4))
                })
                .map(String::from)
        },
    );
    for f in ["pid", "uid", "exe", "cgroup", "start_time_ns"] {
        assert_eq!(field(&line, f), None, "{f} on a remote caller: {line}");
    }
    assert!(metrics(&agent).contains("kind=\"recorded\"} 0"));
}

/// PID reuse: the opener exits (a forked child keeps the socket), a new
/// process of the *same* executable gets its PID, and only then does the
/// agent accept. The record still names the opener's PID and start time;
/// the path is not lent from the new process (same exe inode, so only the
/// start-time check can tell them apart).
#[test]
fn reused_pid_does_not_lend_its_exe() {
    require_root();
    let (ns, dir) = (NetNs::new("pcapu"), TempDir::new("pcapu"));
    let _server = peer::server(ns.name(), "[::]:8080", dir.path());
    let mut agent = Agent::start(&ns, dir.path(), "", PORT_8080);
    let agent_pid = agent.proc().pid();
    let go = dir.path().join("go");
    // The agent does not accept while stopped; the kernel completes the
    // handshake and queues the connection (the record is written).
    signal(agent_pid, "STOP");
    let opener = format!(
        "import os,socket,sys,time\n\
         s=socket.create_connection(('127.0.0.1',8080))\n\
         if os.fork():\n  print(os.getpid(),flush=True); os._exit(0)\n\
         os.close(1)\n\
         while not os.path.exists({go:?}): time.sleep(0.05)\n\
         s.sendall(b'POST /mcp HTTP/1.1\\r\\nhost: x\\r\\ncontent-type: application/json\\r\\ncontent-length: 2\\r\\nconnection: close\\r\\n\\r\\n{{}}')\n\
         s.recv(65536)\n",
        go = go.display().to_string()
    );
    let out = Command::new("nsenter")
        .arg(format!("--net={}", ns.path()))
        .args([PYTHON, "-c", &opener])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let out = out.wait_with_output().unwrap();
    let pid: u32 = String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .expect("opener pid");
    let mut reuser = reuse_pid(pid);
    signal(agent_pid, "CONT");
    std::fs::write(&go, "").unwrap();
    let line = closed_line_of(&agent, pid);
    let reuser_ticks = start_ticks(pid);
    let _ = reuser.kill();
    let _ = reuser.wait();
    assert_eq!(
        field(&line, "exe"),
        None,
        "exe lent by the reused pid: {line}"
    );
    // The record keeps the opener's start time, not the new process's.
    let opener_ns: u64 = field(&line, "start_time_ns")
        .and_then(|t| t.parse().ok())
        .expect("the opener's start time");
    assert!(opener_ns > 0, "{line}");
    assert!(
        opener_ns / 10_000_000 < reuser_ticks,
        "{line} vs {reuser_ticks} ticks"
    );
}

/// `starttime` of `/proc/<pid>/stat`, in clock ticks (100 Hz) since boot.
fn start_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let rest = &stat[stat.rfind(')').unwrap() + 1..];
    rest.split_whitespace().nth(19).unwrap().parse().unwrap()
}

/// A process of the same executable with PID `pid`, by setting the host's
/// ns_last_pid just before each spawn (other processes may take the PID
/// first: retried).
fn reuse_pid(pid: u32) -> Child {
    for _ in 0..200 {
        std::fs::write("/proc/sys/kernel/ns_last_pid", (pid - 1).to_string()).unwrap();
        let mut c = Command::new(PYTHON)
            .args(["-c", "import time; time.sleep(60)"])
            .spawn()
            .unwrap();
        if c.id() == pid {
            return c;
        }
        let _ = c.kill();
        let _ = c.wait();
    }
    panic!("could not get pid {pid} again");
}

fn signal(pid: u32, sig: &str) {
    let ok = Command::new("kill")
        .args([&format!("-{sig}"), &pid.to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
}

/// `/metrics` from the agent's admin socket.
fn metrics(agent: &Agent) -> String {
    let out = Command::new(CURL)
        .args(["-s", "--max-time", "10", "--unix-socket"])
        .arg(agent.admin_socket())
        .arg("http://admin/metrics")
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}
