//! Child processes that die with their guard, and bounded one-shot runs.

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Output, Stdio},
    time::Duration,
};

use crate::wait_for;

/// A long-running child (server, agent) whose stdout and stderr go to
/// files, so a test can read them while it runs and print them on failure.
pub struct Proc {
    pub name: String,
    child: Option<Child>,
    pub stdout: PathBuf,
    pub stderr: PathBuf,
}

impl Proc {
    /// Starts `cmd` inside network namespace `ns` (or here, if `None`).
    pub fn spawn(name: &str, ns: Option<&str>, cmd: &Path, args: &[String], dir: &Path) -> Self {
        Self::spawn_env(name, ns, cmd, args, dir, &[])
    }

    /// Like [`Proc::spawn`], with extra environment variables.
    pub fn spawn_env(
        name: &str,
        ns: Option<&str>,
        cmd: &Path,
        args: &[String],
        dir: &Path,
        env: &[(String, String)],
    ) -> Self {
        let stdout = dir.join(format!("{name}.out"));
        let stderr = dir.join(format!("{name}.err"));
        let mut c = netns_command(ns, cmd);
        c.args(args)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&stdout).expect("stdout file"))
            .stderr(std::fs::File::create(&stderr).expect("stderr file"));
        let child = c.spawn().unwrap_or_else(|e| panic!("spawning {name}: {e}"));
        Self {
            name: name.into(),
            child: Some(child),
            stdout,
            stderr,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(Child::id).unwrap_or(0)
    }

    pub fn stdout(&self) -> String {
        std::fs::read_to_string(&self.stdout).unwrap_or_default()
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// Waits until stdout or stderr contains `needle`; panics with both
    /// streams if the process exits first or `limit` passes.
    pub fn wait_for_output(&mut self, needle: &str, limit: Duration) -> String {
        wait_for(&format!("{} to print {needle:?}", self.name), limit, || {
            let all = format!("{}{}", self.stdout(), self.stderr());
            if all.contains(needle) {
                return Some(all);
            }
            if let Some(status) = self.try_wait() {
                panic!(
                    "{} exited ({status}) before printing {needle:?}:\n{all}",
                    self.name
                );
            }
            None
        })
    }

    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }

    /// Sends `signal` (e.g. libc's SIGTERM, SIGKILL, SIGHUP) to the child.
    pub fn signal(&self, signal: i32) {
        if let Some(c) = &self.child {
            let _ = Command::new("kill")
                .arg(format!("-{signal}"))
                .arg(c.id().to_string())
                .status();
        }
    }

    /// Signals the child and waits (bounded) for it to exit.
    pub fn stop(&mut self, signal: i32, limit: Duration) -> ExitStatus {
        self.signal(signal);
        let name = self.name.clone();
        wait_for(&format!("{name} to exit"), limit, || self.try_wait())
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// `ip netns exec <ns> <cmd>`, or plain `<cmd>`.
pub fn netns_command(ns: Option<&str>, cmd: &Path) -> Command {
    match ns {
        Some(ns) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", ns]).arg(cmd);
            c
        }
        None => Command::new(cmd),
    }
}

/// Runs a command to completion inside `ns`, killed after `limit`.
pub fn run_in(ns: Option<&str>, cmd: &Path, args: &[String], limit: Duration) -> Output {
    let mut c = netns_command(ns, cmd);
    c.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    run_bounded(c, limit)
}

/// Like [`run_in`], with environment variables (credentials that never
/// go into a config file).
pub fn run_in_env(
    ns: Option<&str>,
    cmd: &Path,
    args: &[String],
    env: &[(&str, &str)],
    limit: Duration,
) -> Output {
    let mut c = netns_command(ns, cmd);
    c.args(args)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    run_bounded(c, limit)
}

/// Like [`run_in`] but as user `nobody`, without capabilities.
pub fn run_unprivileged(ns: &str, cmd: &Path, args: &[String], limit: Duration) -> Output {
    let mut c = Command::new("ip");
    c.args([
        "netns",
        "exec",
        ns,
        "setpriv",
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
    ])
    .arg("--inh-caps=-all")
    .arg(cmd)
    .args(args)
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    run_bounded(c, limit)
}

fn run_bounded(mut c: Command, limit: Duration) -> Output {
    let shown = format!("{c:?}");
    let mut child = c
        .spawn()
        .unwrap_or_else(|e| panic!("spawning {shown}: {e}"));
    // Drained while the child runs: a child that writes more than a pipe
    // holds would otherwise block on the write and never exit.
    let stdout = drain(child.stdout.take());
    let stderr = drain(child.stderr.take());
    let deadline = std::time::Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().ok().flatten() {
            break Some(status);
        }
        if std::time::Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let stdout = stdout.join().expect("stdout reader");
    let stderr = stderr.join().expect("stderr reader");
    let Some(status) = status else {
        panic!(
            "{shown} did not finish within {limit:?}\nstdout: {}\nstderr: {}",
            String::from_utf8_lossy(&stdout),
            String::from_utf8_lossy(&stderr)
        );
    };
    Output {
        status,
        stdout,
        stderr,
    }
}

/// Reads a child's pipe to its end on a thread of its own.
fn drain<R: std::io::Read + Send + 'static>(pipe: Option<R>) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(mut p) = pipe {
            let _ = p.read_to_end(&mut buf);
        }
        buf
    })
}
