//! The real agent binary, configured for one namespace and one pin
//! directory, with its pins removed on drop even if the test failed.

use std::{
    path::{Path, PathBuf},
    process::Output,
    time::Duration,
};

use serde_json::Value;

use crate::{NetNs, Proc, bin, proc::run_in, unique};

/// Counters of one port as `mcp-interceptor status` reports them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    pub steered: u64,
    pub dropped: u64,
    pub bypassed: u64,
    pub failed_open: u64,
}

/// Removes a bpffs pin directory on drop: the pinned link goes first, which
/// detaches the program, then the maps.
pub struct PinGuard(pub PathBuf);

impl Drop for PinGuard {
    fn drop(&mut self) {
        if let Ok(entries) = std::fs::read_dir(&self.0) {
            let mut paths: Vec<PathBuf> =
                entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
            paths.sort_by_key(|p| !p.ends_with("link"));
            for p in paths {
                let _ = std::fs::remove_file(p);
            }
        }
        let _ = std::fs::remove_dir(&self.0);
    }
}

pub struct Agent {
    pub proc: Option<Proc>,
    pub config: PathBuf,
    pub pins: PinGuard,
    ns: String,
    dir: PathBuf,
    starts: u32,
    audit_keys: String,
    /// Top-level tables after `[audit]`: `[identity]`, `[tls]`, ...
    sections: String,
    env: Vec<(String, String)>,
}

/// What tests that are not about identity use: anonymous callers allowed.
pub const ANONYMOUS: &str = "[identity]\nallow_anonymous = true\n";

impl Agent {
    /// Writes a config for `ns` (its netns and a fresh pin dir are added to
    /// `[intercept]`, followed by `intercept_keys`; `tables` follows, e.g.
    /// `[[intercept.ports]]` entries) and starts the agent.
    pub fn start(ns: &NetNs, dir: &Path, intercept_keys: &str, tables: &str) -> Self {
        Self::start_with(ns, dir, intercept_keys, tables, "")
    }

    /// Like [`Agent::start`], with extra `[audit]` keys (the audit writes
    /// to `<dir>/audit`, closing files every 2 s).
    pub fn start_with(
        ns: &NetNs,
        dir: &Path,
        intercept_keys: &str,
        tables: &str,
        audit_keys: &str,
    ) -> Self {
        Self::start_with_env(ns, dir, intercept_keys, tables, audit_keys, Vec::new())
    }

    /// Like [`Agent::start_with`], with environment variables for the agent
    /// (e.g. AWS credentials, which never go into the config file).
    pub fn start_with_env(
        ns: &NetNs,
        dir: &Path,
        intercept_keys: &str,
        tables: &str,
        audit_keys: &str,
        env: Vec<(String, String)>,
    ) -> Self {
        Self::start_full(ns, dir, intercept_keys, tables, audit_keys, ANONYMOUS, env)
    }

    /// Like [`Agent::start_with_env`], with `sections` (whole tables such as
    /// `[identity]` and `[tls]`) instead of the anonymous default.
    pub fn start_full(
        ns: &NetNs,
        dir: &Path,
        intercept_keys: &str,
        tables: &str,
        audit_keys: &str,
        sections: &str,
        env: Vec<(String, String)>,
    ) -> Self {
        let pin_dir = PathBuf::from(format!("/sys/fs/bpf/{}", unique("mcpi-t")));
        let config = dir.join("agent.toml");
        let mut a = Self {
            proc: None,
            config,
            pins: PinGuard(pin_dir),
            ns: ns.name().to_string(),
            dir: dir.to_path_buf(),
            starts: 0,
            audit_keys: audit_keys.to_string(),
            sections: sections.to_string(),
            env,
        };
        a.write_config(ns, intercept_keys, tables);
        a.restart();
        a
    }

    fn write_config(&self, ns: &NetNs, intercept_keys: &str, tables: &str) {
        // Each agent its own admin socket (the default is one per host).
        let admin = if self.sections.contains("[admin]") || tables.contains("[admin]") {
            String::new()
        } else {
            format!("[admin]\nsocket = \"{}\"\n", self.admin_socket().display())
        };
        let text = format!(
            "[intercept]\nnetns = \"{}\"\npin_dir = \"{}\"\n{intercept_keys}\n{tables}\n\
             [events]\njsonl = \"{}\"\n[log]\nlevel = \"info\"\n\
             [audit]\ndir = \"{}\"\nsigning_key = \"{}\"\nroll_seconds = 2\n{}\n{}\n",
            ns.path(),
            self.pins.0.display(),
            self.events_path().display(),
            self.audit_dir().display(),
            self.dir.join("audit-signing.key").display(),
            self.audit_keys,
            self.sections,
        ) + &admin;
        std::fs::write(&self.config, text).expect("write agent config");
    }

    /// (Re)starts the agent process with the current config and waits until
    /// it says it is ready.
    pub fn restart(&mut self) {
        let mut p = self.spawn();
        p.wait_for_output("agent ready", Duration::from_secs(20));
        self.proc = Some(p);
    }

    /// `mcp-interceptor run` with this agent's config, numbered.
    fn spawn(&mut self) -> Proc {
        self.starts += 1;
        let args = ["run", "--config", &self.config.display().to_string()].map(String::from);
        Proc::spawn_env(
            &format!("agent{}", self.starts),
            None,
            &bin("mcp-interceptor"),
            &args,
            &self.dir,
            &self.env,
        )
    }

    pub fn proc(&mut self) -> &mut Proc {
        self.proc.as_mut().expect("agent running")
    }

    /// The admin socket the harness gives each agent (unless the test's
    /// own `[admin]` table names one).
    pub fn admin_socket(&self) -> PathBuf {
        self.dir.join("admin.sock")
    }

    /// Where this agent's audit trail is.
    pub fn audit_dir(&self) -> PathBuf {
        self.dir.join("audit")
    }

    /// `mcp-interceptor audit <args>` (exit status and output).
    pub fn audit_cli(&self, args: &[&str]) -> Output {
        let args: Vec<&str> = std::iter::once("audit")
            .chain(args.iter().copied())
            .collect();
        self.cli(&args)
    }

    /// `mcp-interceptor <args>` (exit status and output).
    pub fn cli(&self, args: &[&str]) -> Output {
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        run_in(
            None,
            &bin("mcp-interceptor"),
            &args,
            Duration::from_secs(60),
        )
    }

    /// The JSON-lines event file the agent writes every exchange to.
    pub fn events_path(&self) -> PathBuf {
        self.dir.join("events.jsonl")
    }

    /// Every event recorded so far, in order.
    pub fn events(&self) -> Vec<Value> {
        std::fs::read_to_string(self.events_path())
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).expect("each events line is JSON"))
            .collect()
    }

    /// Waits until `pred` holds for the recorded events; returns them.
    pub fn wait_events(&self, what: &str, pred: impl Fn(&[Value]) -> bool) -> Vec<Value> {
        crate::wait_for(what, Duration::from_secs(10), || {
            let ev = self.events();
            pred(&ev).then_some(ev)
        })
    }

    /// Everything the current agent process logged.
    pub fn log(&self) -> String {
        self.proc.as_ref().map(Proc::stderr).unwrap_or_default()
    }

    /// Stops the agent with `signal` (SIGTERM, SIGKILL) and waits for exit.
    pub fn stop(&mut self, signal: i32) {
        if let Some(p) = self.proc.as_mut() {
            p.stop(signal, Duration::from_secs(20));
        }
    }

    /// Replaces the `sections` for the next [`Agent::reload`] or restart.
    pub fn set_sections(&mut self, sections: &str) {
        self.sections = sections.to_string();
    }

    /// Rewrites the config and sends SIGHUP; waits for the reload line.
    pub fn reload(&mut self, ns: &NetNs, intercept_keys: &str, tables: &str) {
        let before = self.log().matches("config reloaded").count();
        self.write_config(ns, intercept_keys, tables);
        let p = self.proc.as_mut().expect("agent running");
        p.signal(libc_sighup());
        crate::wait_for("the agent to reload", Duration::from_secs(10), || {
            (self.log().matches("config reloaded").count() > before).then_some(())
        });
    }

    /// Rewrites the config and sends SIGHUP to an agent that must refuse
    /// it; waits for the refusal and returns its log line.
    pub fn reload_refused(&mut self, ns: &NetNs, intercept_keys: &str, tables: &str) -> String {
        let refusals = |log: &str| -> Vec<String> {
            log.lines()
                .filter(|l| l.contains("reload rejected") || l.contains("reload failed"))
                .map(str::to_owned)
                .collect()
        };
        let before = refusals(&self.log()).len();
        self.write_config(ns, intercept_keys, tables);
        self.proc().signal(libc_sighup());
        crate::wait_for(
            "the agent to refuse the reload",
            Duration::from_secs(10),
            || refusals(&self.log()).get(before).cloned(),
        )
    }

    /// Rewrites the config and starts an agent that must refuse to start:
    /// waits (bounded) for it to exit non-zero; returns what it printed.
    pub fn start_refused(&mut self, ns: &NetNs, intercept_keys: &str, tables: &str) -> String {
        assert!(
            self.proc.as_mut().is_none_or(|p| p.try_wait().is_some()),
            "stop the running agent first"
        );
        self.write_config(ns, intercept_keys, tables);
        let mut p = self.spawn();
        let status = crate::wait_for("the agent to give up", Duration::from_secs(20), || {
            p.try_wait()
        });
        let out = format!("{}{}", p.stdout(), p.stderr());
        assert!(!status.success(), "the agent started:\n{out}");
        out
    }

    /// `mcp-interceptor <cmd> --config <this agent's config>` with its
    /// output through files: `status` and `doctor` of a full steering table
    /// print more than a pipe holds, and [`run_in`] reads pipes only once
    /// the child has exited. Bounded like [`Agent::cli`].
    pub fn cli_large(&self, cmd: &str) -> Output {
        let (out, err) = (
            self.dir.join(format!("{cmd}.out")),
            self.dir.join(format!("{cmd}.err")),
        );
        let mut child = std::process::Command::new(bin("mcp-interceptor"))
            .args([cmd, "--config", &self.config.display().to_string()])
            .stdin(std::process::Stdio::null())
            .stdout(std::fs::File::create(&out).expect("stdout file"))
            .stderr(std::fs::File::create(&err).expect("stderr file"))
            .spawn()
            .expect("spawn mcp-interceptor");
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        let waited = loop {
            if let Some(s) = child.try_wait().ok().flatten() {
                break s;
            }
            if std::time::Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("mcp-interceptor {cmd} did not finish within 60 s");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        Output {
            status: waited,
            stdout: std::fs::read(&out).unwrap_or_default(),
            stderr: std::fs::read(&err).unwrap_or_default(),
        }
    }

    /// `mcp-interceptor <cmd> --config <this agent's config>`.
    fn cli_config(&self, cmd: &str) -> Output {
        let config = self.config.display().to_string();
        self.cli(&[cmd, "--config", &config])
    }

    /// `mcp-interceptor status` as JSON.
    pub fn status(&self) -> Value {
        let out = self.cli_config("status");
        assert!(
            out.status.success(),
            "status failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("status prints JSON")
    }

    /// Counters of `port` (zero if the port has no entry).
    pub fn counters(&self, port: u16) -> Counters {
        let s = self.status();
        let entry = s["counters"]
            .as_array()
            .and_then(|a| a.iter().find(|c| c["port"] == port))
            .cloned()
            .unwrap_or(Value::Null);
        let n = |k: &str| entry[k].as_u64().unwrap_or(0);
        Counters {
            steered: n("steered"),
            dropped: n("dropped"),
            bypassed: n("bypassed"),
            failed_open: n("failed_open"),
        }
    }

    /// `mcp-interceptor doctor` (exit status and report).
    pub fn doctor(&self) -> Output {
        self.cli_config("doctor")
    }

    pub fn netns(&self) -> &str {
        &self.ns
    }
}

/// SIGHUP's number on Linux (avoids a libc dependency in the harness).
pub const fn libc_sighup() -> i32 {
    1
}

impl Drop for Agent {
    fn drop(&mut self) {
        // Kill first so nothing re-pins while the guard removes the pins.
        self.proc.take();
    }
}
