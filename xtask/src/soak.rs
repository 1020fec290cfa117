//! `cargo xtask soak [--minutes N] [--rate R] [--clients C]`: the release
//! agent with every stage on (OIDC identity, Cedar policy, masking, the
//! audit trail) in front of the real rmcp server, in a network namespace
//! of its own, under a steady moderate load for N minutes (30), with the
//! agent's memory sampled every 10 s into `target/soak/rss.csv`. It ends
//! with the curve, minute by minute, and a verdict on growth from the 25%
//! mark to the end: a leak shows as a slope, warm-up does not.
//!
//! The load is C clients (4), each a loop of fresh MCP sessions (real rmcp
//! clients, `mcp-peer load`: initialize, 20 `tools/call`s, close) paced to
//! R calls/s (100) in all, so session state comes and goes all the time;
//! each client's token is re-minted every minute, so the agent's token
//! cache keeps meeting new tokens and retiring expired ones.
//!
//! The process re-runs itself inside the namespace (`ip netns exec`), so
//! its sockets (token minting) and children are there; the outer one only
//! builds, creates the namespace and removes it. A run killed outright
//! leaves its namespace and pins behind; the next run removes them.

use std::{
    fmt::Write as _,
    io::{Read, Write},
    net::TcpStream,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    thread,
    time::{Duration, Instant, SystemTime},
};

use anyhow::{Context, Result, bail};

mod curve;
mod host;

use curve::{Sample, fds, growth, report, row, status_kib};
use host::{NetNs, Pins, Proc, remove_stale};

const SAMPLE: Duration = Duration::from_secs(10);
const ISSUER: &str = "http://127.0.0.1:9400";
const URL: &str = "http://127.0.0.1:8080/mcp";
const AUDIENCE: &str = "mcp-soak";
/// Calls per MCP session.
const CALLS: u32 = 20;
/// Tokens live this long and are replaced every minute.
const TOKEN_TTL_SECS: u64 = 300;
/// Growth from the 25% mark to the end counted as a leak: both.
const GROWTH_PCT: f64 = 10.0;
const GROWTH_MIB: f64 = 8.0;
/// Shorter runs print the verdict but do not fail on it: warm-up (the
/// first Parquet roll, caches filling) is not over by their 25% mark.
const VERDICT_MIN_MINUTES: f64 = 10.0;

#[derive(Debug, Clone)]
struct Opts {
    minutes: f64,
    rate: f64,
    clients: u32,
}

fn parse(args: &[String]) -> Result<(Opts, Option<String>)> {
    let mut o = Opts {
        minutes: 30.0,
        rate: 100.0,
        clients: 4,
    };
    let mut inside = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut val = || it.next().with_context(|| format!("{a} needs a value"));
        match a.as_str() {
            "--minutes" => o.minutes = val()?.parse().context("--minutes")?,
            "--rate" => o.rate = val()?.parse().context("--rate")?,
            "--clients" => o.clients = val()?.parse().context("--clients")?,
            "--inside" => inside = Some(val()?.clone()),
            _ => bail!("soak: unknown argument {a:?} (--minutes N, --rate R, --clients C)"),
        }
    }
    if !(o.minutes > 0.0 && o.rate > 0.0 && o.clients > 0) {
        bail!("soak: --minutes, --rate and --clients must be positive");
    }
    Ok((o, inside))
}

pub fn run(args: &[String]) -> Result<()> {
    let (opts, inside) = parse(args)?;
    if let Some(tag) = inside {
        return inside_netns(&opts, &tag);
    }
    // The issuer is a Python peer: the venv comes with the install.
    crate::install()?;
    crate::run(crate::cargo().args(["build", "--workspace", "--bins", "--locked", "--release"]))?;
    remove_stale();
    let tag = format!("mcpi-soak-{}", std::process::id());
    let _ns = NetNs::add(&tag)?;
    let exe = std::env::current_exe().context("xtask's own path")?;
    let status = Command::new("ip")
        .args(["netns", "exec", &tag])
        .arg(exe)
        .arg("soak")
        .args(args)
        .args(["--inside", &tag])
        .current_dir(crate::root())
        .status()
        .context("ip netns exec")?;
    if !status.success() {
        bail!("soak failed ({status})");
    }
    Ok(())
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// An RS256 token for `sub` from the issuer's test endpoint.
fn mint(sub: &str) -> Result<String> {
    let now = unix_now();
    let body = format!(
        r#"{{"claims":{{"iss":"{ISSUER}","aud":"{AUDIENCE}","sub":"{sub}","groups":["soak"],"iat":{now},"exp":{}}},"header":{{}},"sign":"key"}}"#,
        now + TOKEN_TTL_SECS
    );
    let mut s = TcpStream::connect("127.0.0.1:9400").context("connecting to the issuer")?;
    s.set_read_timeout(Some(Duration::from_secs(15)))?;
    write!(
        s,
        "POST /test/mint HTTP/1.1\r\nHost: 127.0.0.1:9400\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    let (head, token) = out.split_once("\r\n\r\n").context("no HTTP answer")?;
    if !head.starts_with("HTTP/1.1 200") {
        bail!("minting a token: {out}");
    }
    Ok(token.trim().to_string())
}

/// What the clients did so far.
#[derive(Default)]
struct Counts {
    calls: AtomicU64,
    errors: AtomicU64,
    sessions: AtomicU64,
    last_error: Mutex<String>,
}

/// One client: fresh sessions of `CALLS` calls, paced to `rate` calls/s.
fn client(k: u32, o: &Opts, tokens: &Mutex<Vec<String>>, c: &Counts, stop: &AtomicBool) {
    let peer = release_bin("mcp-peer");
    let rate = o.rate / f64::from(o.clients);
    let per_session = Duration::from_secs_f64(f64::from(CALLS) / rate);
    // Spread the clients over one period, so their sessions interleave.
    sleep_unless(
        stop,
        per_session.mul_f64(f64::from(k) / f64::from(o.clients)),
    );
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let started = Instant::now();
        let token = tokens
            .lock()
            .map(|t| t[k as usize].clone())
            .unwrap_or_default();
        let out = Command::new(&peer)
            .args(["load", "--url", URL, "--count", &CALLS.to_string()])
            .args(["--prefix", &format!("c{k}-s{n}"), "--timeout-secs", "10"])
            .args(["--bearer", &token])
            .stdin(Stdio::null())
            .output();
        n += 1;
        c.sessions.fetch_add(1, Ordering::Relaxed);
        let (acks, failed) = match &out {
            Ok(o) => {
                let text = String::from_utf8_lossy(&o.stdout);
                let acks = text.lines().filter(|l| l.starts_with("ack ")).count() as u64;
                let why = (!o.status.success())
                    .then(|| String::from_utf8_lossy(&o.stderr).trim().to_string());
                (acks, why)
            }
            Err(e) => (0, Some(e.to_string())),
        };
        c.calls.fetch_add(acks, Ordering::Relaxed);
        if let Some(why) = failed {
            c.errors
                .fetch_add((u64::from(CALLS) - acks).max(1), Ordering::Relaxed);
            if let Ok(mut l) = c.last_error.lock() {
                *l = why;
            }
        }
        sleep_unless(stop, per_session.saturating_sub(started.elapsed()));
    }
}

fn sleep_unless(stop: &AtomicBool, d: Duration) {
    let until = Instant::now() + d;
    while !stop.load(Ordering::Relaxed) && Instant::now() < until {
        thread::sleep(
            Duration::from_millis(50).min(until.saturating_duration_since(Instant::now())),
        );
    }
}

fn release_bin(name: &str) -> PathBuf {
    crate::bin_dir().with_file_name("release").join(name)
}

fn config(dir: &Path, pins: &Path) -> String {
    let d = dir.display();
    let bench = crate::root().join("bench/policy");
    format!(
        "[intercept]\npin_dir = \"{}\"\n[[intercept.ports]]\nport = 8080\nname = \"soak\"\n\
         [identity]\nallow_anonymous = false\n\
         [[identity.oidc]]\nissuer = \"{ISSUER}\"\naudiences = [\"{AUDIENCE}\"]\n\
         [policy]\nfiles = [\"{}\", \"{d}/soak.cedar\"]\npins_file = \"{d}/tool-pins.json\"\n\
         [approvals]\ndb = \"{d}/approvals.db\"\n[admin]\nsocket = \"{d}/admin.sock\"\n\
         [mask]\nhash_key = \"{d}/mask-hash.key\"\n\
         [audit]\ndir = \"{d}/audit\"\nsigning_key = \"{d}/audit-signing.key\"\n\
         [log]\nlevel = \"warn,interceptor::agent=info,mcp_interceptor=info\"\n",
        pins.display(),
        bench.display(),
    )
}

/// The soak's own rules, beside the bench's hand-written set (which the
/// agent evaluates too: ~80 policies, none of them for this server).
const POLICY: &str = r#"@id("soak-echo")
permit (
  principal in Mcp::Group::"soak",
  action == Mcp::Action::"tools/call",
  resource == Mcp::Tool::"echo"
)
when { resource in Mcp::Server::"soak" && principal.auth_method == "oidc" };

@id("soak-no-secrets")
forbid (
  principal,
  action == Mcp::Action::"tools/call",
  resource
)
when { context.arguments_json like "*BEGIN PRIVATE KEY*" };
"#;

fn inside_netns(o: &Opts, tag: &str) -> Result<()> {
    let out = crate::root().join("target/soak");
    let dir = out.join("run");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).context("creating target/soak/run")?;
    std::fs::write(dir.join("soak.cedar"), POLICY)?;

    let python = crate::root().join(".venv/bin/python");
    let script = crate::root().join("tests/peers/oidc_issuer.py");
    let mut issuer = Proc::spawn(
        "issuer",
        Command::new(python).arg(script).args([
            "--host",
            "127.0.0.1",
            "--port",
            "9400",
            "--issuer",
            ISSUER,
        ]),
        &dir,
    )?;
    issuer.wait_for("issuer ready", Duration::from_secs(30))?;
    let mut server = Proc::spawn(
        "server",
        Command::new(release_bin("mcp-peer")).args(["server", "--listen", "127.0.0.1:8080"]),
        &dir,
    )?;
    server.wait_for("listening", Duration::from_secs(15))?;

    let pins = Pins(PathBuf::from("/sys/fs/bpf").join(tag));
    let cfg = dir.join("agent.toml");
    std::fs::write(&cfg, config(&dir, &pins.0))?;
    let mut agent = Proc::spawn(
        "agent",
        Command::new(release_bin("mcp-interceptor"))
            .arg("run")
            .arg("--config")
            .arg(&cfg),
        &dir,
    )?;
    agent.wait_for("agent ready", Duration::from_secs(30))?;
    let pid = agent.child.id();

    let tokens = (0..o.clients)
        .map(|k| mint(&format!("soak-user-{k}")))
        .collect::<Result<Vec<_>>>()?;
    let tokens = Arc::new(Mutex::new(tokens));
    let counts = Arc::new(Counts::default());
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..o.clients)
        .map(|k| {
            let (o, t, c, s) = (o.clone(), tokens.clone(), counts.clone(), stop.clone());
            thread::spawn(move || client(k, &o, &t, &c, &s))
        })
        .collect();
    eprintln!(
        "==> soak: {} min, {} calls/s from {} clients ({CALLS} calls a session), agent pid {pid}; \
         samples every {SAMPLE:?} into {}",
        o.minutes,
        o.rate,
        o.clients,
        out.join("rss.csv").display()
    );

    let started = Instant::now();
    let total = Duration::from_secs_f64(o.minutes * 60.0);
    let mut samples = Vec::new();
    let mut csv = String::from("seconds,rss_kib,hwm_kib,fds,calls,errors,sessions\n");
    let mut next_mint = started + Duration::from_secs(60);
    let mut died = false;
    for i in 0.. {
        let at = started + SAMPLE * i;
        while Instant::now() < at {
            thread::sleep(Duration::from_millis(200));
        }
        if !agent.alive() {
            died = true;
            break;
        }
        let s = Sample {
            secs: started.elapsed().as_secs_f64(),
            rss_kib: status_kib(pid, "VmRSS:"),
            hwm_kib: status_kib(pid, "VmHWM:"),
            fds: fds(pid),
            calls: counts.calls.load(Ordering::Relaxed),
            errors: counts.errors.load(Ordering::Relaxed),
            sessions: counts.sessions.load(Ordering::Relaxed),
        };
        let _ = writeln!(
            csv,
            "{:.0},{},{},{},{},{},{}",
            s.secs, s.rss_kib, s.hwm_kib, s.fds, s.calls, s.errors, s.sessions
        );
        std::fs::write(out.join("rss.csv"), &csv)?;
        if i % 6 == 0 {
            eprintln!("    {}", row(&s));
        }
        samples.push(s);
        if started.elapsed() >= total {
            break;
        }
        if Instant::now() >= next_mint {
            next_mint += Duration::from_secs(60);
            let fresh = (0..o.clients)
                .map(|k| mint(&format!("soak-user-{k}")))
                .collect::<Result<Vec<_>>>()?;
            if let Ok(mut t) = tokens.lock() {
                *t = fresh;
            }
        }
    }
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        let _ = c.join();
    }
    let log = std::fs::read_to_string(&agent.log).unwrap_or_default();
    agent.terminate(Duration::from_secs(30));
    drop(agent);
    drop(pins);
    drop((server, issuer));

    let verify = Command::new(release_bin("mcp-interceptor"))
        .args(["audit", "verify"])
        .arg(dir.join("audit"))
        .output()
        .context("audit verify")?;
    let verify_line = String::from_utf8_lossy(&verify.stdout).trim().to_string();
    let report = report(o, &samples, &counts, &verify_line);
    print!("{report}");
    std::fs::write(out.join("report.txt"), &report)?;
    if died {
        bail!("the agent died during the soak; its log:\n{log}");
    }
    if log.contains("panicked") {
        bail!(
            "the agent panicked; see {}",
            dir.join("agent.log").display()
        );
    }
    if !verify.status.success() {
        bail!("audit verify failed: {verify_line}");
    }
    let last = samples.last().context("no samples")?;
    if last.calls == 0 || last.errors * 100 > last.calls {
        bail!("{} errors for {} calls", last.errors, last.calls);
    }
    if o.minutes >= VERDICT_MIN_MINUTES && growth(&samples).is_some_and(|g| g.leaking) {
        bail!("the agent's memory grew steadily: see the verdict above");
    }
    Ok(())
}
