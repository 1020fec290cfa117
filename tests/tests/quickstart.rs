//! The README's quickstart, run as written: the fenced bash blocks under
//! "## Quickstart", in order, in one bash, on a sandboxed "host" with
//! server-everything on port 8080 and a real OIDC issuer. It must end in an
//! audited, policy-checked call: `echo` allowed, `get-env` denied (-32002),
//! both printed by `audit tail` and in the Parquet audit with the decision.
//!
//! What a test cannot do literally, and does instead (the only changes):
//!
//! | README | here |
//! | --- | --- |
//! | `apt-get install ./mcp-interceptor_*.deb` | the built binary as `/usr/bin/mcp-interceptor`, and `deploy/` files where the package puts them |
//! | `systemctl enable --now mcp-interceptor` | the unit's `ConditionPathExists=`, `ExecStartPre=` and `ExecStart=` lines (read from `deploy/systemd/mcp-interceptor.service`), the agent in the background, waited for until it is ready |
//! | `https://login.example.com/realms/corp` | the test issuer's URL |
//! | `token.txt` | an access token the test issuer minted for `alice` with the README's `--audience` |
//!
//! The host: a network namespace (server-everything on 127.0.0.1:8080, the
//! issuer) entered with `nsenter --net`, and a mount namespace in which
//! `/etc`, `/usr`, `/var` and `/run` are overlays over the machine's (all
//! writes land in the test's directory) and `/sys/fs/bpf` is a directory of
//! the machine's bpffs (so pins outlive the agent, as on a host).

use std::{
    os::unix::process::CommandExt,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use mcp_interceptor_tests::{
    NetNs, TempDir, agent::PinGuard, auditq, bin, everything, oidc::Issuer, require_root, unique,
    wait_for,
};
use pulldown_cmark::{CodeBlockKind, Event, HeadingLevel, Parser, Tag, TagEnd};

const ISSUER_PLACEHOLDER: &str = "https://login.example.com/realms/corp";
const INSTALL: &str = "apt-get install ./mcp-interceptor_";
const START: &str = "systemctl enable --now mcp-interceptor";
/// How long the whole quickstart may take.
const LIMIT: Duration = Duration::from_secs(180);

/// One line of the quickstart and where it is in README.md.
struct Line {
    text: String,
    readme_line: usize,
}

/// The lines of the bash blocks under "## Quickstart", in order.
fn quickstart(readme: &str) -> Vec<Line> {
    let line_of = |offset: usize| readme[..offset].matches('\n').count() + 1;
    let (mut inside, mut in_heading, mut heading) = (false, false, String::new());
    let mut block: Option<usize> = None;
    let mut out = Vec::new();
    for (event, range) in Parser::new(readme).into_offset_iter() {
        match event {
            Event::Start(Tag::Heading { level, .. }) if level <= HeadingLevel::H2 => {
                in_heading = true;
                heading.clear();
            }
            Event::End(TagEnd::Heading(level)) if level <= HeadingLevel::H2 => {
                in_heading = false;
                inside = heading.trim() == "Quickstart";
            }
            Event::Text(t) if in_heading => heading.push_str(&t),
            Event::Start(Tag::CodeBlock(CodeBlockKind::Fenced(lang)))
                if inside && matches!(&*lang, "bash" | "sh") =>
            {
                // The block's text starts on the line after its fence.
                block = Some(line_of(range.start) + 1);
            }
            Event::Text(t) if block.is_some() => {
                let first = block.unwrap_or(0);
                for (i, l) in t.lines().enumerate() {
                    out.push(Line {
                        text: l.to_string(),
                        readme_line: first + i,
                    });
                }
                block = Some(first + t.lines().count());
            }
            Event::End(TagEnd::CodeBlock) => block = None,
            _ => {}
        }
    }
    out
}

/// `KEY=value` lines of the unit's `[Unit]` and `[Service]` sections.
fn unit_lines(key: &str) -> Vec<String> {
    let unit =
        std::fs::read_to_string(everything::repo().join("deploy/systemd/mcp-interceptor.service"))
            .expect("the systemd unit");
    unit.lines()
        .filter_map(|l| l.trim().strip_prefix(key)?.strip_prefix('='))
        // systemd's prefixes (`-`: failure ignored, `@`, `+`, `!`, `!!`)
        // change how the line runs, not what.
        .map(|v| v.trim_start_matches(['-', '@', '+', '!']).to_string())
        .collect()
}

/// The shell functions that stand in for the package install and for
/// `systemctl enable --now`, and the sandbox's mounts.
fn prelude(work: &Path, host_pins: &Path) -> String {
    let repo = everything::repo();
    let deploy = repo.join("deploy");
    let mut start = String::from("qs_start_unit() {\n");
    for p in unit_lines("ConditionPathExists") {
        start +=
            &format!("  [ -e {p} ] || {{ echo 'unit condition: {p} missing' >&2; return 1; }}\n");
    }
    for pre in unit_lines("ExecStartPre") {
        start += &format!("  {pre}\n");
    }
    let exec = unit_lines("ExecStart");
    assert_eq!(exec.len(), 1, "one ExecStart in the unit: {exec:?}");
    start += &format!(
        "  {} > {w}/agent.log 2>&1 < /dev/null &\n  echo $! > {w}/agent.pid\n\
         for _ in $(seq 200); do\n    grep -q 'agent ready' {w}/agent.log && return 0\n\
         kill -0 \"$(cat {w}/agent.pid)\" 2>/dev/null || break\n    sleep 0.1\n  done\n\
         cat {w}/agent.log >&2\n  return 1\n}}\n",
        exec[0],
        w = work.display()
    );
    let mut s = String::from("set -eE -o pipefail\n");
    for d in ["etc", "usr", "var", "run"] {
        s += &format!(
            "mkdir -p {w}/overlay/{d}/upper {w}/overlay/{d}/work\n\
             mount -t overlay overlay -o lowerdir=/{d},upperdir={w}/overlay/{d}/upper,workdir={w}/overlay/{d}/work /{d}\n",
            w = work.display()
        );
    }
    s += &format!(
        "mount --bind {} /sys/fs/bpf\nmount --make-shared /sys/fs/bpf\n",
        host_pins.display()
    );
    // A fresh host: nothing of an install on this machine shows through
    // (the overlays hide it; the machine's files stay as they are).
    s += "rm -rf /etc/mcp-interceptor /var/lib/mcp-interceptor /usr/share/mcp-interceptor \
          /run/mcp-interceptor /usr/bin/mcp-interceptor\n";
    s += &format!(
        "qs_install() {{\n  install -m 0755 {bin} /usr/bin/mcp-interceptor\n\
         install -D -m 0644 {d}/config.example.toml /usr/share/mcp-interceptor/config.example.toml\n\
         mkdir -p /usr/share/mcp-interceptor/policy\n\
         cp -r {d}/policy/mcp.cedarschema {d}/policy/examples /usr/share/mcp-interceptor/policy/\n\
         install -D -m 0644 {d}/systemd/mcp-interceptor.service /lib/systemd/system/mcp-interceptor.service\n}}\n",
        bin = bin("mcp-interceptor").display(),
        d = deploy.display()
    );
    s + &start
}

/// The script: prelude, then the quickstart's lines with the substitutions,
/// each README line marked so that a failure names it; then the session id
/// for the test.
fn script(lines: &[Line], issuer: &str, work: &Path, host_pins: &Path) -> (String, Vec<usize>) {
    let prelude = prelude(work, host_pins);
    let mut origin = vec![0; prelude.lines().count() + 3];
    let mut s = prelude;
    // In a function (qs_start_unit) LINENO is inside the prelude, and
    // BASH_LINENO[0] is the quickstart line that called it.
    s += "trap 'echo \"quickstart failed at script line $LINENO ${BASH_LINENO[0]:-0}: $BASH_COMMAND\" >&2' ERR\n";
    s += &format!("cd {}\n", work.display());
    s += "# --- README.md, Quickstart ---\n";
    let (mut installs, mut starts) = (0, 0);
    for l in lines {
        let text = if l.text.starts_with(INSTALL) {
            installs += 1;
            "qs_install".to_string()
        } else if l.text.trim() == START {
            starts += 1;
            "qs_start_unit".to_string()
        } else {
            l.text.replace(ISSUER_PLACEHOLDER, issuer)
        };
        s += &text;
        s.push('\n');
        origin.push(l.readme_line);
    }
    assert_eq!(
        (installs, starts),
        (1, 1),
        "the quickstart installs the package and starts the unit once each \
         (the substitution table in tests/tests/quickstart.rs names those lines)"
    );
    s += "echo \"qs-session $SID\"\n";
    (s, origin)
}

/// Kills what the quickstart left running: the agent (SIGTERM, so its
/// audit is closed) and then the script's process group (`audit tail &`).
struct Run {
    child: Child,
    work: PathBuf,
}

impl Run {
    fn stop_agent(&self) {
        if let Ok(pid) = std::fs::read_to_string(self.work.join("agent.pid")) {
            let pid = pid.trim().to_string();
            let _ = Command::new("kill")
                .args(["-TERM", &pid])
                .stderr(Stdio::null())
                .status();
            let gone = Path::new("/proc").join(&pid);
            let deadline = Instant::now() + Duration::from_secs(30);
            while gone.exists() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        self.stop_agent();
        let group = format!("-{}", self.child.id());
        let _ = Command::new("kill")
            .args(["-KILL", "--", &group])
            .stderr(Stdio::null())
            .status();
        let _ = self.child.wait();
    }
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_default()
}

/// `YYYY-MM-DD 00:00:00` of today + `days` (UTC).
fn day(days: i64) -> String {
    let d = time::OffsetDateTime::now_utc() + time::Duration::days(days);
    format!(
        "{:04}-{:02}-{:02} 00:00:00",
        d.year(),
        u8::from(d.month()),
        d.day()
    )
}

#[test]
fn the_readme_quickstart_reaches_an_audited_policy_checked_call() {
    require_root();
    let readme = std::fs::read_to_string(everything::repo().join("README.md")).unwrap();
    let lines = quickstart(&readme);
    let text: Vec<&str> = lines.iter().map(|l| l.text.as_str()).collect();
    assert!(
        text.iter().any(|l| l.contains(ISSUER_PLACEHOLDER))
            && text.iter().any(|l| l.contains("token.txt")),
        "the quickstart names the example issuer and token.txt:\n{}",
        text.join("\n")
    );
    let audience = text
        .iter()
        .find_map(|l| l.split("--audience ").nth(1))
        .and_then(|a| a.split_whitespace().next())
        .expect("the quickstart's init names --audience")
        .to_string();

    let (ns, dir) = (NetNs::new("quick"), TempDir::new("quickstart"));
    let work = dir.path().to_path_buf();
    let issuer = Issuer::start(&ns, 9000, &work);
    let _server = everything::server(ns.name(), "streamableHttp", 8080, &work);
    let tokens = issuer.login("alice", "quickstart", "openid", Some(&audience));
    let token = tokens["access_token"].as_str().expect("access_token");
    std::fs::write(work.join("token.txt"), token).unwrap();

    // The machine's bpffs (mounted if need be, as the agent would), and a
    // directory of it that the sandbox sees as /sys/fs/bpf.
    let host_pins = PathBuf::from("/sys/fs/bpf").join(unique("mcpi-qs"));
    interceptor::steer::bpffs::ensure(&host_pins).expect("bpffs at /sys/fs/bpf");
    std::fs::create_dir_all(&host_pins).unwrap();
    let _pins_dir = PinGuard(host_pins.clone());
    let _pins = PinGuard(host_pins.join("mcp-interceptor"));

    let (script, origin) = script(&lines, &issuer.url, &work, &host_pins);
    std::fs::write(work.join("quickstart.sh"), &script).unwrap();
    let (out, err) = (work.join("quickstart.out"), work.join("quickstart.err"));
    let child = Command::new("nsenter")
        .arg(format!("--net={}", ns.path()))
        .args(["unshare", "--mount", "--propagation", "private", "bash"])
        .arg(work.join("quickstart.sh"))
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(std::fs::File::create(&err).unwrap())
        .process_group(0)
        .spawn()
        .expect("nsenter, unshare and bash");
    let mut run = Run {
        child,
        work: work.clone(),
    };
    let status = wait_for("the quickstart to finish", LIMIT, || {
        run.child.try_wait().ok().flatten()
    });
    let failed_step = || {
        let e = read(&err);
        let readme_line = e
            .lines()
            .filter_map(|l| l.strip_prefix("quickstart failed at script line "))
            .flat_map(|l| {
                let nums = l.split(':').next().unwrap_or_default();
                nums.split_whitespace()
                    .filter_map(|n| n.parse::<usize>().ok())
                    .collect::<Vec<_>>()
            })
            .find_map(|n| origin.get(n.checked_sub(1)?).copied().filter(|&r| r > 0));
        match readme_line {
            Some(n) => format!(
                "README.md line {n}: {}",
                readme.lines().nth(n - 1).unwrap_or_default()
            ),
            None => "(the sandbox before the quickstart)".into(),
        }
    };
    assert!(
        status.success(),
        "the quickstart failed at {}\n--- stderr\n{}\n--- stdout\n{}\n--- agent log\n{}",
        failed_step(),
        read(&err),
        read(&out),
        read(&work.join("agent.log"))
    );
    check_answers_and_tail(&out, &err);

    // The audit, as an auditor reads it once the agent has closed it.
    run.stop_agent();
    let audit = work.join("overlay/var/upper/lib/mcp-interceptor/audit");
    check_audit(&audit, &issuer.url);
}

/// The calls' answers (curl's output) and `audit tail`'s lines.
fn check_answers_and_tail(out: &Path, err: &Path) {
    let stdout = wait_for(
        "audit tail to print both calls",
        Duration::from_secs(15),
        || {
            let s = read(out);
            let tail = |kind: &str, tool: &str| {
                s.lines().any(|l| {
                    let w: Vec<&str> = l.split_whitespace().collect();
                    w.get(1) == Some(&kind) && w.contains(&"tools/call") && w.contains(&tool)
                })
            };
            (tail("exchange", "echo") && tail("denied", "get-env")).then_some(s)
        },
    );
    let session = stdout
        .lines()
        .find_map(|l| l.strip_prefix("qs-session "))
        .unwrap_or_default();
    assert!(
        !session.trim().is_empty(),
        "a session was opened:\n{stdout}\n{}",
        read(err)
    );
    assert!(stdout.contains("Echo: hello"), "echo answered:\n{stdout}");
    let denied = stdout
        .lines()
        .find(|l| l.contains("\"id\":3"))
        .unwrap_or_else(|| panic!("an answer to the get-env call:\n{stdout}"));
    assert!(
        denied.contains("-32002") && denied.contains("policy_denied"),
        "get-env is denied by policy: {denied}"
    );
    assert!(
        stdout
            .lines()
            .any(|l| l.contains("denied") && l.contains("get-env") && l.contains("error=-32002")),
        "audit tail shows the denial with its code:\n{stdout}"
    );
}

/// The Parquet audit: alice's echo allowed, her get-env denied by policy.
fn check_audit(audit: &Path, issuer: &str) {
    let (from, to) = (day(-1), day(2));
    let params = [("from", from.as_str()), ("to", to.as_str())];
    let rows = auditq::records(audit, "activity_by_subject", &params);
    let row = |tool: &str| {
        rows.iter()
            .find(|r| r["method"] == "tools/call" && r["tool_name"] == tool)
            .unwrap_or_else(|| panic!("a tools/call {tool} row in {rows:#?}"))
    };
    // (An allowed call has a `forwarded` row and an `exchange` row.)
    for (tool, allowed) in [("echo", true), ("get-env", false)] {
        let r = row(tool);
        assert_eq!(r["subject"], "alice", "{r:?}");
        assert_eq!(r["issuer"], issuer, "{r:?}");
        let (a, d) = (
            r["allowed"].as_i64().unwrap_or(0),
            r["denied"].as_i64().unwrap_or(0),
        );
        assert!(
            if allowed {
                a > 0 && d == 0
            } else {
                a == 0 && d == 1
            },
            "{tool}: {r:?}"
        );
    }
    let denials = auditq::records(audit, "denials", &params);
    let d = denials
        .iter()
        .find(|r| r["tool_name"] == "get-env")
        .unwrap_or_else(|| panic!("the get-env denial in {denials:#?}"));
    assert_eq!(d["decided_by"], "policy", "{d:?}");
}
