//! The configurations under test, each started fresh in the namespace.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use anyhow::{Context, Result, bail};
use mcp_interceptor_tests::{NetNs, Proc, TempDir, agent::PinGuard, bin, oidc::Issuer, unique};
use serde_json::{Value, json};

use crate::policy_set;

/// The audience the agent accepts and the bench's token names.
const AUDIENCE: &str = "mcp-bench";
/// The issuer's port in the bench's own namespace (nothing else there uses
/// it).
const ISSUER_PORT: u16 = 9400;

/// What every configuration shares: the MCP servers, A on :8080 (direct,
/// nginx, listen mode) and B on :8090 (steered by the agent in eBPF mode),
/// same binary, same tools; and an OIDC issuer with one token minted for
/// the whole run.
pub struct Servers {
    _procs: Vec<Proc>,
    pub pids: Vec<u32>,
    issuer: Issuer,
    /// RS256 JWT for subject `bench-user`, valid for an hour: the load
    /// generator sends it on every request of every configuration.
    pub token: String,
}

pub fn servers(ns: &NetNs, dir: &TempDir) -> Result<Servers> {
    let mut procs = Vec::new();
    for port in [8080, 8090] {
        let args = [
            "server",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--json-response",
        ]
        .map(String::from);
        let mut p = Proc::spawn(
            &format!("server{port}"),
            Some(ns.name()),
            &bin("mcp-peer"),
            &args,
            dir.path(),
        );
        p.wait_for_output("listening", Duration::from_secs(15));
        procs.push(p);
    }
    // `ip netns exec` execs the command, so the pid is the server's own.
    let pids = procs.iter().map(Proc::pid).collect();
    let issuer = Issuer::start(ns, ISSUER_PORT, dir.path());
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs();
    let claims = json!({
        "iss": issuer.url, "aud": AUDIENCE, "sub": "bench-user", "groups": ["bench"],
        "iat": now, "exp": now + 3600,
    });
    let token = issuer.mint(claims, Value::Null, "key");
    Ok(Servers {
        _procs: procs,
        pids,
        issuer,
        token,
    })
}

/// Which of the agent's stages run; the agent runs in eBPF mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stages {
    /// OIDC: every request's bearer token verified (anonymous refused).
    pub identity: bool,
    /// The bench's Cedar set of this many policies (`policy_set`); needs
    /// identity.
    pub policies: Option<usize>,
    /// Masking with the standard profile (on by default in the agent, so
    /// "off" is configured explicitly).
    pub masking: bool,
    /// The audit trail with the default fsync policy.
    pub audit: bool,
}

/// The bench's policy set size for the rows (the curve varies it).
pub const POLICIES: usize = 100;

/// The MCP-aware hop alone: every stage off.
pub const HOP: Stages = Stages {
    identity: false,
    policies: None,
    masking: false,
    audit: false,
};

/// Everything a deployment runs.
pub const EVERYTHING: Stages = Stages {
    identity: true,
    policies: Some(POLICIES),
    masking: true,
    audit: true,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Setup {
    Direct,
    Nginx,
    /// Listen mode, every stage off.
    Listen,
    Ebpf(Stages),
}

/// What a configuration is measured for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// A row of the main table (closed and open loop).
    Row,
    /// Only a point of the policy-set-size curve.
    PolicyCurve,
}

/// The main table's rows, in order (each agent row adds one stage to the
/// one before), then the policy curve's other points.
pub fn all(policy_curve: &[usize]) -> Vec<(Setup, Role)> {
    let identity = Stages {
        identity: true,
        ..HOP
    };
    let policy = Stages {
        policies: Some(POLICIES),
        ..identity
    };
    let masking = Stages {
        masking: true,
        ..policy
    };
    let mut out: Vec<(Setup, Role)> = [
        Setup::Direct,
        Setup::Nginx,
        Setup::Listen,
        Setup::Ebpf(HOP),
        Setup::Ebpf(identity),
        Setup::Ebpf(policy),
        Setup::Ebpf(masking),
        Setup::Ebpf(EVERYTHING),
    ]
    .into_iter()
    .map(|s| (s, Role::Row))
    .collect();
    for &n in policy_curve.iter().filter(|n| **n != POLICIES) {
        let s = Stages {
            policies: Some(n),
            ..EVERYTHING
        };
        out.push((Setup::Ebpf(s), Role::PolicyCurve));
    }
    out
}

pub struct Running {
    pub target: SocketAddr,
    /// The proxy's processes (empty for direct).
    pub pids: Vec<u32>,
    proc: Option<Proc>,
    _pins: Option<PinGuard>,
}

impl Running {
    pub fn stop(mut self) {
        if let Some(p) = self.proc.as_mut() {
            p.stop(15, Duration::from_secs(20));
            // Show why requests failed, if the proxy said so.
            let log = p.stderr();
            let bad: Vec<&str> = log
                .lines()
                .filter(|l| {
                    l.contains("WARN")
                        || l.contains("ERROR")
                        || l.contains("[warn]")
                        || l.contains("[error]")
                })
                .collect();
            if !bad.is_empty() {
                eprintln!(
                    "    {} warning/error lines from {}, first ones:",
                    bad.len(),
                    p.name
                );
                for l in bad.iter().take(3) {
                    eprintln!("    {l}");
                }
            }
        }
    }
}

impl Setup {
    /// The row's name: what runs.
    pub fn name(&self) -> String {
        match self {
            Setup::Direct => "direct".into(),
            Setup::Nginx => "nginx".into(),
            Setup::Listen => "agent listen mode: MCP-aware hop alone".into(),
            Setup::Ebpf(s) if *s == HOP => {
                "agent eBPF: MCP-aware hop alone (identity, policy, masking, audit off)".into()
            }
            Setup::Ebpf(s) if s.identity && s.masking && s.audit && s.policies.is_some() => {
                format!(
                    "agent eBPF: everything on (OIDC identity + {}-policy Cedar + masking + audit, default fsync)",
                    s.policies.unwrap_or_default()
                )
            }
            Setup::Ebpf(s) => {
                let mut name = String::from("agent eBPF: hop");
                if s.identity {
                    name += " + identity (OIDC JWT)";
                }
                if let Some(n) = s.policies {
                    name += &format!(" + policy ({n}-policy Cedar)");
                }
                if s.masking {
                    name += " + masking (standard profile)";
                }
                if s.audit {
                    name += " + audit (default fsync)";
                }
                name
            }
        }
    }

    /// Whether the concurrency sweep runs for this configuration.
    pub fn in_sweep(&self) -> bool {
        matches!(self, Setup::Direct | Setup::Nginx)
            || *self == Setup::Ebpf(HOP)
            || self.everything()
    }

    /// Whether the result-size curve runs for this configuration.
    pub fn in_sizes(&self) -> bool {
        matches!(self, Setup::Nginx) || *self == Setup::Ebpf(HOP) || self.everything()
    }

    /// Every stage on, with the rows' policy set.
    pub fn everything(&self) -> bool {
        *self == Setup::Ebpf(EVERYTHING)
    }

    pub fn start(&self, ns: &NetNs, dir: &TempDir, servers: &Servers) -> Result<Running> {
        let addr = |p: u16| SocketAddr::from(([127, 0, 0, 1], p));
        let ebpf = "[[intercept.ports]]\nport = 8090\n";
        let issuer = servers.issuer.url.as_str();
        match self {
            Setup::Direct => Ok(Running {
                target: addr(8080),
                pids: Vec::new(),
                proc: None,
                _pins: None,
            }),
            Setup::Nginx => nginx(ns, dir),
            Setup::Listen => agent(
                ns,
                dir,
                "mode = \"listen\"\n[[intercept.ports]]\nport = 8082\nupstream = \"127.0.0.1:8080\"\nlisten = [\"127.0.0.1:8082\"]\n",
                HOP,
                issuer,
                addr(8082),
            ),
            Setup::Ebpf(s) if s.policies.is_some() => {
                // Policies name the server, as a deployment's would.
                let named = format!("{ebpf}name = \"{}\"\n", policy_set::SERVER);
                agent(ns, dir, &named, *s, issuer, addr(8090))
            }
            Setup::Ebpf(s) => agent(ns, dir, ebpf, *s, issuer, addr(8090)),
        }
    }
}

fn agent(
    ns: &NetNs,
    dir: &TempDir,
    intercept: &str,
    stages: Stages,
    issuer: &str,
    target: SocketAddr,
) -> Result<Running> {
    let pins = PathBuf::from(format!("/sys/fs/bpf/{}", unique("mcpi-bench")));
    let tag = unique("agent");
    let audit_cfg = if stages.audit {
        format!(
            "[audit]\ndir = \"{}\"\nsigning_key = \"{}\"\n",
            dir.path().join(format!("{tag}-audit")).display(),
            dir.path().join(format!("{tag}.key")).display()
        )
    } else {
        "[audit]\nenabled = false\n".into()
    };
    // `[[intercept.ports]]` must follow the `[intercept]` keys.
    let (keys, ports) = match intercept.find("[[") {
        Some(i) => intercept.split_at(i),
        None => (intercept, ""),
    };
    // Without identity, callers are anonymous and their `Authorization`
    // header passes through untouched, as through nginx.
    let identity = if stages.identity {
        format!(
            "[identity]\nallow_anonymous = false\n[[identity.oidc]]\nissuer = \"{issuer}\"\naudiences = [\"{AUDIENCE}\"]\n"
        )
    } else {
        "[identity]\nallow_anonymous = true\n".into()
    };
    // Tool pins go to the temp dir in every configuration: the pinning
    // stage runs whether or not policy does.
    let policy_files = match stages.policies {
        Some(n) => format!("\"{}\"", policy_set::write(dir.path(), n)?.display()),
        None => String::new(),
    };
    // The set's `@mask("pii")` must name a profile, or the agent refuses
    // the policies; masking is on by default, so off is said explicitly.
    let pii = if stages.policies.is_some() {
        "[mask.profiles.pii]\ndetectors = [\"email\", \"phone\", \"card\", \"ssn\", \"iban\"]\n"
    } else if std::env::var_os("MCPI_BENCH_NO_MASK").is_some() {
        // MCPI_BENCH_NO_MASK: the hop alone, masking off too (for
        // profiling the data path without any stage).
        "[mask]\nenabled = false\n"
    } else {
        ""
    };
    let policy = format!(
        "[mask]\nenabled = {}\n{pii}[policy]\nfiles = [{policy_files}]\npins_file = \"{}\"\n\
         [approvals]\ndb = \"{}\"\n[admin]\nsocket = \"{}\"\n",
        stages.masking,
        dir.path().join(format!("{tag}-pins.json")).display(),
        dir.path().join(format!("{tag}-approvals.db")).display(),
        dir.path().join(format!("{tag}-admin.sock")).display()
    );
    // Per-exchange info lines are off, as nginx's access log is.
    let text = format!(
        "[intercept]\nnetns = \"{}\"\npin_dir = \"{}\"\n{keys}\n{ports}\n{audit_cfg}\n{identity}\n{policy}\n[log]\nlevel = \"warn,interceptor::agent=info\"\n",
        ns.path(),
        pins.display()
    );
    let cfg = dir.path().join(format!("{tag}.toml"));
    std::fs::write(&cfg, text)?;
    let args = ["run", "--config", &cfg.display().to_string()].map(String::from);
    let mut p = Proc::spawn(&tag, None, &bin("mcp-interceptor"), &args, dir.path());
    p.wait_for_output("agent ready", Duration::from_secs(30));
    Ok(Running {
        target,
        pids: vec![p.pid()],
        proc: Some(p),
        _pins: Some(PinGuard(pins)),
    })
}

fn nginx(ns: &NetNs, dir: &TempDir) -> Result<Running> {
    let prefix = dir.path().join("nginx");
    std::fs::create_dir_all(prefix.join("tmp")).context("nginx prefix")?;
    let p = prefix.display();
    let conf = format!(
        "worker_processes auto;\nerror_log {p}/error.log warn;\npid {p}/nginx.pid;\n\
         events {{ worker_connections 8192; }}\n\
         http {{\n  access_log off;\n  client_body_temp_path {p}/tmp/body;\n  proxy_temp_path {p}/tmp/proxy;\n\
           fastcgi_temp_path {p}/tmp/fcgi;\n  uwsgi_temp_path {p}/tmp/uwsgi;\n  scgi_temp_path {p}/tmp/scgi;\n\
           upstream mcp {{ server 127.0.0.1:8080; keepalive 256; }}\n\
           server {{\n    listen 127.0.0.1:8081 backlog=4096;\n    location / {{\n      proxy_pass http://mcp;\n\
               proxy_http_version 1.1;\n      proxy_set_header Connection \"\";\n      proxy_set_header Host $host;\n\
               proxy_buffering off;\n    }}\n  }}\n}}\n"
    );
    let conf_path = prefix.join("nginx.conf");
    std::fs::write(&conf_path, conf)?;
    let nginx = std::path::Path::new("/usr/sbin/nginx");
    if !nginx.exists() {
        bail!("/usr/sbin/nginx is missing: run `cargo xtask setup` (Debian nginx-light)");
    }
    let args = [
        "-p",
        &p.to_string(),
        "-c",
        &conf_path.display().to_string(),
        "-g",
        "daemon off;",
    ]
    .map(String::from);
    let proc = Proc::spawn("nginx", Some(ns.name()), nginx, &args, dir.path());
    let target = SocketAddr::from(([127, 0, 0, 1], 8081));
    mcp_interceptor_tests::wait_for("nginx to listen", Duration::from_secs(15), || {
        std::net::TcpStream::connect(target).ok().map(|_| ())
    });
    let master = proc.pid();
    Ok(Running {
        target,
        pids: crate::procstat::family(master),
        proc: Some(proc),
        _pins: None,
    })
}
