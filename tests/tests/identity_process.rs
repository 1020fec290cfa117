//! Same-host callers named by the kernel (issue 23), end to end, with no
//! token anywhere but where a token is the point: real processes (curl) as
//! two unix users in two cgroups (the systemd-unit case simulated by cgroup
//! paths made under the cgroup2 mount and removed after) call one MCP
//! server on loopback through the agent; `[identity.process]` rules name
//! them, Cedar allows one unit and refuses the other, a process no rule
//! admits gets `process_unmatched` with a rule to paste, a remote caller
//! over veth gets no process record, a PID reused after its first process
//! exited is judged as the new process, and a token-carrying same-host call
//! records both identities. The audit rows (DuckDB over the Parquet files,
//! and the OCSF view) carry the right uid, user, exe and cgroup.

use std::{
    fs::File,
    io::Write,
    net::SocketAddr,
    os::{fd::AsFd, unix::process::CommandExt},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
};

use mcp_interceptor_tests::{
    Agent, NetNs, TempDir, Veth, auditq,
    http::post_in,
    oidc::Issuer,
    peer, require_root, unique,
    world::{CLIENT, PORT, URL, token},
};
use serde_json::{Value, json};

/// uids of two unprivileged users every Debian-like system has.
const DAEMON: u32 = 1;
const NOBODY: u32 = 65534;

/// A cgroup slice of this test under the cgroup2 mount, with unit-named
/// children; removed (children first) when dropped, after its processes
/// exited.
struct Slice {
    mount: PathBuf,
    rel: String,
    children: Vec<PathBuf>,
}

impl Slice {
    fn new() -> Self {
        let mounts = std::fs::read_to_string("/proc/mounts").unwrap();
        let mount = mounts
            .lines()
            .find_map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                (f.get(2) == Some(&"cgroup2")).then(|| PathBuf::from(f[1]))
            })
            .expect("a cgroup2 mount (the kernel capture reads cgroup v2 ids)");
        let rel = format!("/{}.slice", unique("mcpi-proc"));
        std::fs::create_dir(mount.join(&rel[1..])).expect("make the test's cgroup slice");
        Self {
            mount,
            rel,
            children: Vec::new(),
        }
    }

    /// Makes `<slice>/<unit>`; its path as the kernel names it.
    fn unit(&mut self, unit: &str) -> String {
        let rel = format!("{}/{unit}", self.rel);
        let dir = self.mount.join(&rel[1..]);
        std::fs::create_dir(&dir).expect("make a unit cgroup");
        self.children.push(dir);
        rel
    }

    fn procs(&self, rel: &str) -> PathBuf {
        self.mount.join(&rel[1..]).join("cgroup.procs")
    }
}

impl Drop for Slice {
    fn drop(&mut self) {
        for c in self.children.iter().rev() {
            let _ = std::fs::remove_dir(c);
        }
        let _ = std::fs::remove_dir(self.mount.join(&self.rel[1..]));
    }
}

/// A stateless `tools/call echo {text}` as curl sends it, with `headers`.
fn curl_args(headers: &[String]) -> Vec<String> {
    let mut a: Vec<String> = [
        "-sS",
        "--max-time",
        "20",
        "-w",
        "\n%{http_code}",
        "-X",
        "POST",
        URL,
        "-H",
        "Content-Type: application/json",
        "-H",
        "Accept: application/json, text/event-stream",
        "-H",
        "MCP-Protocol-Version: 2026-07-28",
        "-H",
        "Mcp-Method: tools/call",
        "-H",
        "Mcp-Name: echo",
        // Read from stdin before connecting: the caller waits until the
        // test has checked its PID.
        "--data-binary",
        "@-",
    ]
    .map(String::from)
    .to_vec();
    for h in headers {
        a.push("-H".into());
        a.push(h.clone());
    }
    a
}

/// The request body of [`curl_args`].
fn body(text: &str) -> String {
    json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {
        "name": "echo", "arguments": {"text": text},
        "_meta": {
            "io.modelcontextprotocol/protocolVersion": "2026-07-28",
            "io.modelcontextprotocol/clientInfo": {"name": "curl", "version": "1"},
            "io.modelcontextprotocol/clientCapabilities": {}}}})
    .to_string()
}

/// curl, started in `ns` and the cgroup whose `cgroup.procs` is `procs`,
/// as `uid` (its own gid, no supplementary groups), waiting on stdin.
fn spawn_caller(ns: &NetNs, procs: &Path, uid: u32, args: &[String]) -> Child {
    let netns = File::open(ns.path()).expect("open netns");
    let cgroup = File::options()
        .write(true)
        .open(procs)
        .expect("open cgroup.procs");
    let mut c = Command::new("/usr/bin/curl");
    c.args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // SAFETY: between fork and exec the closure only makes system calls
    // (setns, write, setgroups, setgid, setuid) on values made before the
    // fork; it allocates nothing and takes no lock.
    unsafe {
        c.pre_exec(move || {
            nix::sched::setns(netns.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET)?;
            // "0" moves the writing process: this child, before it runs curl.
            (&cgroup).write_all(b"0")?;
            let (u, g) = (
                nix::unistd::Uid::from_raw(uid),
                nix::unistd::Gid::from_raw(uid),
            );
            nix::unistd::setgroups(&[])?;
            nix::unistd::setgid(g)?;
            nix::unistd::setuid(u)?;
            Ok(())
        });
    }
    c.spawn().expect("spawn curl")
}

/// Lets a waiting caller send `text`; its HTTP status and body.
fn finish(mut child: Child, text: &str) -> (u16, Value) {
    child
        .stdin
        .take()
        .unwrap()
        .write_all(body(text).as_bytes())
        .unwrap();
    let out = child.wait_with_output().expect("curl output");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let (json_text, status) = stdout
        .rsplit_once('\n')
        .unwrap_or_else(|| panic!("curl printed {stdout:?}, {:?}", out.stderr));
    let v = serde_json::from_str(json_text)
        .or_else(|_| {
            // An SSE answer: the JSON of its data line.
            json_text
                .lines()
                .find_map(|l| l.strip_prefix("data: "))
                .map(serde_json::from_str)
                .unwrap_or(Ok(Value::Null))
        })
        .unwrap_or(Value::Null);
    (status.trim().parse().unwrap_or(0), v)
}

/// One call from a new process; `(pid, status, answer)`.
fn call_from(
    ns: &NetNs,
    procs: &Path,
    uid: u32,
    text: &str,
    headers: &[String],
) -> (u32, u16, Value) {
    let child = spawn_caller(ns, procs, uid, &curl_args(headers));
    let pid = child.id();
    let (status, v) = finish(child, text);
    (pid, status, v)
}

/// A caller that runs with PID `want` (freed by a process that exited):
/// the kernel's next PID is set just below it, and a child that raced
/// another fork to it is killed and the attempt repeated.
fn spawn_with_pid(ns: &NetNs, procs: &Path, uid: u32, args: &[String], want: u32) -> Child {
    for _ in 0..500 {
        std::fs::write("/proc/sys/kernel/ns_last_pid", (want - 1).to_string())
            .expect("set ns_last_pid (root, initial PID namespace)");
        let mut child = spawn_caller(ns, procs, uid, args);
        if child.id() == want {
            return child;
        }
        let _ = child.kill();
        let _ = child.wait();
    }
    panic!("could not start a process with PID {want}");
}

const POLICY: &str = r#"
@id("session")
permit (principal, action in [Mcp::Action::"initialize", Mcp::Action::"tools/list",
  Mcp::Action::"server/discover"], resource)
when { principal.auth_method != "anonymous" };

// Only the AI agent unit may call tools from this host.
@id("agent-calls")
permit (principal in Mcp::Group::"agents", action == Mcp::Action::"tools/call", resource)
when { principal.auth_method == "process" &&
       context has process && context.process.unit == "ai-agent.service" };

// A person's token from this host, only from root's shell.
@id("alice-from-root")
permit (principal, action == Mcp::Action::"tools/call", resource)
when { principal.subject == "alice" && principal.auth_method == "oidc" &&
       context has process && context.process.uid == 0 };
"#;

fn rows(v: &Value) -> Vec<Vec<Value>> {
    serde_json::from_value(v["rows"].clone()).expect("rows")
}

#[test]
fn the_kernel_names_same_host_callers_and_policy_and_audit_see_it() {
    require_root();
    let (ns, client, dir) = (
        NetNs::new("proc"),
        NetNs::new("proc-remote"),
        TempDir::new("proc"),
    );
    let veth = Veth::connect(&ns, &client, 23);
    let mut slice = Slice::new();
    let agent_cg = slice.unit("ai-agent.service");
    let ci_cg = slice.unit("ci-runner.service");
    let shell_cg = slice.unit("session-7.scope");
    let issuer = Issuer::start(&ns, 9400, dir.path());
    let _server = peer::server_with(ns.name(), "0.0.0.0:8080", dir.path(), &[]);
    std::fs::write(dir.path().join("p.cedar"), POLICY).unwrap();
    let sections = format!(
        "[identity]\nallow_anonymous = false\n\
         [[identity.oidc]]\nissuer = \"{}\"\naudiences = [\"{CLIENT}\", \"{URL}\"]\n\
         [[identity.process.rules]]\nunit = \"ai-agent.service\"\nuser = \"daemon\"\n\
         subject = \"svc:ai-agent\"\ngroups = [\"agents\"]\n\
         [[identity.process.rules]]\ncgroup = \"{ci_cg}\"\nuid = {NOBODY}\nsubject = \"svc:ci\"\n\
         [policy]\nfiles = [\"{}\"]\n",
        issuer.url,
        dir.path().join("p.cedar").display()
    );
    let mut agent = Agent::start_full(&ns, dir.path(), "", PORT, "", &sections, Vec::new());

    // The agent's unit, as daemon: named by its rule, allowed by policy.
    let (agent_pid, status, v) = call_from(&ns, &slice.procs(&agent_cg), DAEMON, "agent", &[]);
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["result"]["content"][0]["text"], "agent", "{v}");
    // The CI runner, as nobody: named (svc:ci), but policy refuses it.
    let (_, status, v) = call_from(&ns, &slice.procs(&ci_cg), NOBODY, "ci", &[]);
    assert_eq!(
        (status, v["error"]["data"]["reason"].as_str()),
        (200, Some("policy_denied")),
        "{v}"
    );
    // nobody in the agent's unit: the unit rule also wants user daemon,
    // the CI rule another cgroup: refused, naming the process and a rule.
    let (stranger_pid, status, v) =
        call_from(&ns, &slice.procs(&agent_cg), NOBODY, "stranger", &[]);
    assert_eq!(status, 401, "{v}");
    let e = &v["error"];
    assert_eq!(
        (e["code"].as_i64(), e["data"]["reason"].as_str()),
        (Some(-32001), Some("process_unmatched")),
        "{v}"
    );
    let msg = e["message"].as_str().unwrap();
    assert!(
        msg.contains(&format!(
            "pid {stranger_pid} (curl), user nobody (uid {NOBODY}), unit ai-agent.service, exe "
        )),
        "{msg}"
    );
    assert_eq!(e["data"]["process"]["cgroup"], json!(agent_cg), "{v}");
    let rule = e["data"]["rule"].as_str().unwrap();
    assert!(
        rule.starts_with("[[identity.process.rules]]\nsubject = \"svc:ai-agent\"\nuser = \"nobody\"\nunit = \"ai-agent.service\"\nexe = \""),
        "{rule}"
    );

    // The agent's PID, reused after it exited, by nobody in the CI unit:
    // judged as the new process, not as the agent it replaced.
    let reused = spawn_with_pid(
        &ns,
        &slice.procs(&ci_cg),
        NOBODY,
        &curl_args(&[]),
        agent_pid,
    );
    let (status, v) = finish(reused, "reused");
    assert_eq!(
        (status, v["error"]["data"]["reason"].as_str()),
        (200, Some("policy_denied")),
        "{v}"
    );

    // A token from this host: the token names the caller, the process is
    // recorded beside it (and the policy reads both).
    let t = token(&issuer, "alice", &["dev"]);
    let (_, status, v) = call_from(
        &ns,
        &slice.procs(&shell_cg),
        0,
        "alice",
        &[format!("Authorization: Bearer {t}")],
    );
    assert_eq!(
        (status, v["result"]["content"][0]["text"].as_str()),
        (200, Some("alice")),
        "{v}"
    );

    // A remote caller over veth: no process record, so no process rule,
    // and the refusal is the plain one.
    let addr: SocketAddr = format!("{}:8080", veth.a_v4).parse().unwrap();
    let remote = post_in(
        &client,
        addr,
        "/mcp",
        body("remote").as_bytes(),
        &[
            "MCP-Protocol-Version: 2026-07-28",
            "Mcp-Method: tools/call",
            "Mcp-Name: echo",
        ],
    );
    assert_eq!(
        (remote.status, remote.reason()),
        (401, "unauthenticated".to_string()),
        "{remote:?}"
    );

    agent.stop(15);
    check_audit(
        &agent.audit_dir(),
        &[&agent_cg, &ci_cg, &shell_cg],
        agent_pid,
        stranger_pid,
        &veth.b_v4,
    );
    drop(slice);
}

/// The rows of each call: who the identity stage named, what the kernel
/// saw, and the OCSF view's `actor.process`. `cg`: the agent's, the CI
/// runner's and the shell's cgroup paths.
fn check_audit(audit: &Path, cg: &[&str; 3], agent_pid: u32, stranger_pid: u32, remote_ip: &str) {
    let curl = std::fs::canonicalize("/usr/bin/curl")
        .unwrap()
        .display()
        .to_string();
    let schema = auditq::check(audit, &["--schema"]);
    let fields = schema["fields"].as_array().expect("fields");
    let names: Vec<&str> = fields[fields.len() - 7..]
        .iter()
        .map(|f| f["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "process_pid",
            "process_uid",
            "process_user",
            "process_exe",
            "process_exe_sha256",
            "process_unit",
            "process_cgroup"
        ],
        "{schema}"
    );
    let got = auditq::sql(
        audit,
        "SELECT coalesce(json_extract_string(arguments, '$.text'), src_addr), subject, auth_method, \
           coalesce(json_extract_string(error, '$.data.reason'), decision), process_pid, process_uid, \
           process_user, process_exe, process_unit, process_cgroup, length(process_exe_sha256) \
         FROM mcp_audit WHERE kind IN ('exchange', 'denied', 'rejected') \
           AND (method = 'tools/call' OR decided_by = 'identity') ORDER BY event_time_us",
    );
    let want = [
        json!([
            "agent",
            "svc:ai-agent",
            "process",
            "allow",
            agent_pid,
            DAEMON,
            "daemon",
            curl,
            "ai-agent.service",
            cg[0],
            64
        ]),
        json!([
            "ci",
            "svc:ci",
            "process",
            "policy_denied",
            null,
            NOBODY,
            "nobody",
            curl,
            "ci-runner.service",
            cg[1],
            64
        ]),
        json!([
            "127.0.0.1",
            null,
            null,
            "process_unmatched",
            stranger_pid,
            NOBODY,
            null,
            curl,
            "ai-agent.service",
            cg[0],
            64
        ]),
        json!([
            "reused",
            "svc:ci",
            "process",
            "policy_denied",
            agent_pid,
            NOBODY,
            "nobody",
            curl,
            "ci-runner.service",
            cg[1],
            64
        ]),
        json!([
            "alice",
            "alice",
            "oidc",
            "allow",
            null,
            0,
            "root",
            curl,
            "session-7.scope",
            cg[2],
            64
        ]),
        json!([
            remote_ip,
            null,
            null,
            "unauthenticated",
            null,
            null,
            null,
            null,
            null,
            null,
            null
        ]),
    ];
    let got = rows(&got);
    assert_eq!(got.len(), want.len(), "{got:#?}");
    for (g, w) in got.iter().zip(&want) {
        for (i, (gv, wv)) in g.iter().zip(w.as_array().unwrap()).enumerate() {
            // null in `want` at the pid column of rows whose PID is not
            // known to the test (curl's own, checked above by the rule).
            if i == 4 && wv.is_null() && g[5] != Value::Null {
                assert!(gv.as_u64().is_some_and(|p| p > 0), "{g:?}");
                continue;
            }
            assert_eq!(gv, wv, "column {i} of {g:?}");
        }
    }
    // OCSF: actor.process for the same-host caller, null for the remote one.
    let ocsf = auditq::ocsf(
        audit,
        "SELECT a.src_addr, o.actor.process.pid, o.actor.process.file.path, \
           o.actor.process.file.hashes[1].algorithm, struct_extract(struct_extract(o.actor.process, 'user'), 'uid'), \
           json_extract_string(o.unmapped, '$.process_unit') \
         FROM mcp_audit_ocsf o JOIN mcp_audit a ON o.metadata.uid = a.event_id \
         WHERE json_extract_string(a.arguments, '$.text') = 'agent' AND a.method = 'tools/call' \
           AND a.kind = 'exchange' OR (a.decided_by = 'identity' AND a.src_addr = '{remote}') \
         ORDER BY a.src_addr"
            .replace("{remote}", remote_ip)
            .as_str(),
    );
    let o = rows(&ocsf);
    assert_eq!(o.len(), 2, "{ocsf}");
    let (local, remote): (Vec<_>, Vec<_>) = o.iter().partition(|r| r[0] == "127.0.0.1");
    assert_eq!(
        local[0][1..],
        [
            json!(agent_pid),
            json!(curl),
            json!("SHA-256"),
            json!(DAEMON.to_string()),
            json!("ai-agent.service")
        ],
        "{ocsf}"
    );
    assert_eq!(
        remote[0][1..],
        [
            Value::Null,
            Value::Null,
            Value::Null,
            Value::Null,
            Value::Null
        ],
        "{ocsf}"
    );
}

#[test]
fn cgroup_slice_helper_names_paths_as_the_kernel_does() {
    require_root();
    let mut s = Slice::new();
    let rel = s.unit("x.service");
    assert!(
        rel.starts_with("/mcpi-proc") && rel.ends_with(".slice/x.service"),
        "{rel}"
    );
    assert!(s.procs(&rel).exists());
    let dir = s.procs(&rel).parent().unwrap().to_path_buf();
    drop(s);
    assert!(!dir.exists(), "removed on drop");
}
