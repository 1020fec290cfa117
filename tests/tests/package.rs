//! `cargo xtask package --dev` builds a .deb that installs on this host,
//! does not start the agent, whose packaged binary runs and passes
//! `doctor`, and that purges without a trace.
//!
//! The package is installed system-wide, so the test refuses to run where
//! one is installed already (it would replace and purge it), and purges
//! in a guard that runs on failure too.

use std::{
    os::unix::{fs::PermissionsExt, process::CommandExt},
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
    time::{Duration, Instant},
};

use mcp_interceptor_tests::{
    NetNs, Proc, TempDir, agent::PinGuard, everything::repo, pki::Pki, require_root, unique,
};

const PKG: &str = "mcp-interceptor";
const BIN: &str = "/usr/bin/mcp-interceptor";
/// The shipped config's pin directory: the prerm detaches it on removal.
const DEFAULT_PINS: &str = "/sys/fs/bpf/mcp-interceptor";

/// What the package must install (a sample of each directory).
const FILES: &[&str] = &[
    BIN,
    "/lib/systemd/system/mcp-interceptor.service",
    "/etc/mcp-interceptor/config.toml",
    "/usr/share/mcp-interceptor/config.example.toml",
    "/usr/share/mcp-interceptor/policy/mcp.cedarschema",
    "/usr/share/mcp-interceptor/policy/examples/base.cedar",
    "/usr/share/mcp-interceptor/policy/examples/cases.toml",
    "/usr/share/mcp-interceptor/athena/README.md",
    "/usr/share/mcp-interceptor/athena/create_table.sql",
    "/usr/share/mcp-interceptor/athena/queries/denials.sql",
    "/usr/share/doc/mcp-interceptor/README.md",
    "/usr/share/doc/mcp-interceptor/copyright",
    "/usr/share/man/man8/mcp-interceptor.8.gz",
];

/// Directories that are the package's alone: gone after a purge.
const OWN_DIRS: &[&str] = &[
    "/etc/mcp-interceptor",
    "/usr/share/mcp-interceptor",
    "/usr/share/doc/mcp-interceptor",
    "/var/lib/mcp-interceptor",
];

/// Runs `cmd` in `cwd`, output to files (no pipe to fill), killed with its
/// process group after `limit`. Never panics: guards use it while unwinding.
fn run(cwd: &Path, cmd: &str, args: &[&str], limit: Duration) -> Result<Output, String> {
    let shown = format!("{cmd} {}", args.join(" "));
    let logs = std::env::temp_dir().join(unique("mcpi-pkg-run"));
    let (out_path, err_path) = (logs.with_extension("out"), logs.with_extension("err"));
    let files = std::fs::File::create(&out_path)
        .and_then(|o| Ok((o, std::fs::File::create(&err_path)?)))
        .map_err(|e| format!("{shown}: output files: {e}"))?;
    let child = Command::new(cmd)
        .args(args)
        .current_dir(cwd)
        .stdin(Stdio::null())
        .stdout(files.0)
        .stderr(files.1)
        .process_group(0)
        .spawn();
    let result = match child {
        Err(e) => Err(format!("starting {shown}: {e}")),
        Ok(mut child) => {
            let deadline = Instant::now() + limit;
            loop {
                match child.try_wait() {
                    Ok(Some(status)) => {
                        break Ok(Output {
                            status,
                            stdout: std::fs::read(&out_path).unwrap_or_default(),
                            stderr: std::fs::read(&err_path).unwrap_or_default(),
                        });
                    }
                    Ok(None) if Instant::now() < deadline => {
                        std::thread::sleep(Duration::from_millis(50));
                    }
                    _ => {
                        let _ = Command::new("kill")
                            .args(["-KILL", "--", &format!("-{}", child.id())])
                            .status();
                        let _ = child.wait();
                        break Err(format!(
                            "{shown} did not finish within {limit:?}\n{}{}",
                            std::fs::read_to_string(&out_path).unwrap_or_default(),
                            std::fs::read_to_string(&err_path).unwrap_or_default()
                        ));
                    }
                }
            }
        }
    };
    let _ = std::fs::remove_file(&out_path);
    let _ = std::fs::remove_file(&err_path);
    result
}

/// [`run`] that must succeed; returns stdout.
fn ok(cmd: &str, args: &[&str], limit: Duration) -> String {
    let out = run(&repo(), cmd, args, limit).unwrap_or_else(|e| panic!("{e}"));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{cmd} {} failed ({}):\n{text}{}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

/// dpkg's state of the package: "installed", "config-files", or "" (none).
fn dpkg_status() -> String {
    run(
        Path::new("/"),
        "dpkg-query",
        &["-W", "-f=${db:Status-Status}", PKG],
        Duration::from_secs(20),
    )
    .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    .unwrap_or_default()
}

/// `dpkg --purge` on drop unless [`Purge::now`] already ran: a failed test
/// leaves nothing installed.
struct Purge {
    armed: bool,
}

impl Purge {
    fn now(&mut self) -> String {
        self.armed = false;
        ok("dpkg", &["--purge", PKG], Duration::from_secs(30))
    }
}

impl Drop for Purge {
    fn drop(&mut self) {
        if self.armed {
            match run(
                Path::new("/"),
                "dpkg",
                &["--purge", PKG],
                Duration::from_secs(30),
            ) {
                Ok(o) if o.status.success() => {}
                Ok(o) => eprintln!(
                    "cleanup: dpkg --purge {PKG} failed: {}",
                    String::from_utf8_lossy(&o.stderr)
                ),
                Err(e) => eprintln!("cleanup: {e}"),
            }
        }
    }
}

/// Pids of processes running the installed binary.
fn packaged_agents() -> Vec<String> {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .filter_map(|e| {
            let e = e.ok()?;
            let exe = std::fs::read_link(e.path().join("exe")).ok()?;
            exe.to_string_lossy()
                .starts_with(BIN)
                .then(|| e.file_name().to_string_lossy().into_owned())
        })
        .collect()
}

#[test]
fn deb_installs_without_starting_the_agent_passes_doctor_and_purges_clean() {
    require_root();
    assert_eq!(
        dpkg_status(),
        "",
        "{PKG} is installed on this host already: this test would replace and purge it \
         (`dpkg --purge {PKG}` if it is a leftover)"
    );
    assert!(
        !Path::new(DEFAULT_PINS).exists(),
        "{DEFAULT_PINS} exists: the package's prerm would detach it on removal"
    );
    let dir = TempDir::new("package");
    let out = dir.path().display().to_string();

    // Under `cargo xtask test` (and nextest) CARGO is the cargo that runs us.
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let built = ok(
        &cargo,
        &["xtask", "package", "--dev", "--out", &out],
        Duration::from_secs(90),
    );
    let deb = PathBuf::from(built.trim());
    assert!(
        deb.is_file() && deb.starts_with(dir.path()) && deb.extension() == Some("deb".as_ref()),
        "xtask printed {built:?}"
    );

    let mut purge = Purge { armed: true };
    let installed = ok(
        "dpkg",
        &["-i", &deb.display().to_string()],
        Duration::from_secs(60),
    );
    assert_eq!(dpkg_status(), "installed");

    for f in FILES {
        assert!(Path::new(f).is_file(), "{f} is not installed");
    }
    let conffiles = ok(
        "dpkg-query",
        &["-W", "-f=${Conffiles}", PKG],
        Duration::from_secs(20),
    );
    assert!(
        conffiles.contains("/etc/mcp-interceptor/config.toml"),
        "conffiles: {conffiles}"
    );
    // The conffile is the example, and the example is valid.
    assert_eq!(
        std::fs::read("/etc/mcp-interceptor/config.toml").unwrap(),
        std::fs::read(repo().join("deploy/config.example.toml")).unwrap()
    );
    ok(
        BIN,
        &["check-config", "/etc/mcp-interceptor/config.toml"],
        Duration::from_secs(20),
    );
    let state = std::fs::metadata("/var/lib/mcp-interceptor").expect("postinst made the state dir");
    assert!(state.is_dir());
    assert_eq!(state.permissions().mode() & 0o7777, 0o700);
    let mode = std::fs::metadata(BIN).unwrap().permissions().mode();
    assert_eq!(mode & 0o7777, 0o755);

    let version = ok(BIN, &["--version"], Duration::from_secs(10));
    assert_eq!(
        version.trim(),
        format!("mcp-interceptor {}", env!("CARGO_PKG_VERSION"))
    );
    let man = ok(
        "gzip",
        &["-dc", "/usr/share/man/man8/mcp-interceptor.8.gz"],
        Duration::from_secs(10),
    );
    for needle in [
        ".TH MCP\\-INTERCEPTOR 8",
        "mcp\\-interceptor check\\-config",
        "mcp\\-interceptor audit verify",
        "mcp\\-interceptor grants",
        "/etc/mcp\\-interceptor/config.toml",
    ] {
        assert!(man.contains(needle), "man page lacks {needle:?}:\n{man}");
    }

    // postinst said how to start the agent and did not start it.
    assert!(
        installed.contains("not started") && installed.contains("systemctl enable --now"),
        "{installed}"
    );
    assert_eq!(
        packaged_agents(),
        Vec::<String>::new(),
        "postinst started the agent"
    );
    assert!(
        !Path::new(DEFAULT_PINS).exists(),
        "postinst attached steering"
    );
    if Path::new("/run/systemd/system").is_dir() {
        for (query, not) in [("is-active", "active"), ("is-enabled", "enabled")] {
            let out = run(
                Path::new("/"),
                "systemctl",
                &[query, "mcp-interceptor.service"],
                Duration::from_secs(20),
            )
            .unwrap_or_else(|e| panic!("{e}"));
            let said = String::from_utf8_lossy(&out.stdout);
            assert_ne!(said.trim(), not, "systemctl {query}");
        }
    } else {
        eprintln!("systemd is not running here: systemctl is-active not checked");
    }

    // The packaged agent, steering port 8080 in a namespace of its own with
    // mTLS and the packaged example policies: every doctor check passes.
    let ns = NetNs::new("pkg");
    let pins = PinGuard(PathBuf::from(format!("/sys/fs/bpf/{}", unique("mcpi-pkg"))));
    let pki = Pki::new(&dir.path().join("pki"));
    let (cert, key) = pki.server("server", &["127.0.0.1".parse().unwrap()], &["localhost"]);
    let d = dir.path();
    let config = d.join("agent.toml");
    std::fs::write(
        &config,
        format!(
            "[intercept]\nnetns = \"{}\"\npin_dir = \"{}\"\n\
             [[intercept.ports]]\nport = 8080\n\
             [tls]\ncert = \"{}\"\nkey = \"{}\"\nclient_ca = [\"{}\"]\n\
             [policy]\nfiles = [\"/usr/share/mcp-interceptor/policy/examples\"]\n\
             [audit]\ndir = \"{}\"\nsigning_key = \"{}\"\n\
             [admin]\nsocket = \"{}\"\n",
            ns.path(),
            pins.0.display(),
            cert.display(),
            key.display(),
            pki.ca_pem.display(),
            d.join("audit").display(),
            d.join("audit-signing.key").display(),
            d.join("admin.sock").display(),
        ),
    )
    .unwrap();
    let config = config.display().to_string();
    let mut agent = Proc::spawn(
        "packaged-agent",
        None,
        Path::new(BIN),
        &["run".into(), "--config".into(), config.clone()],
        d,
    );
    agent.wait_for_output("agent ready", Duration::from_secs(20));
    let doctor = run(
        &repo(),
        BIN,
        &["doctor", "--config", &config],
        Duration::from_secs(30),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let report = String::from_utf8_lossy(&doctor.stdout);
    eprintln!("doctor:\n{report}");
    assert!(
        doctor.status.success() && report.contains("checks passed"),
        "{report}{}\nagent log:\n{}",
        String::from_utf8_lossy(&doctor.stderr),
        agent.stderr()
    );
    for check in ["agent", "program", "rules", "tls", "identity", "policy"] {
        assert!(
            report
                .lines()
                .any(|l| l.split_whitespace().take(2).eq(["ok", check])),
            "doctor did not pass {check}:\n{report}"
        );
    }
    assert!(!report.lines().any(|l| l.starts_with("warn")), "{report}");
    drop(agent);
    drop(pins);

    // Purge: every file the package listed is gone, and its state with it.
    let listed = ok("dpkg", &["-L", PKG], Duration::from_secs(20));
    // Files, and whatever is below the package's own directories (shared
    // directories such as /usr/share/man/man8 stay).
    let gone: Vec<&Path> = listed
        .lines()
        .map(Path::new)
        .filter(|p| !p.is_dir() || OWN_DIRS.iter().any(|d| p.starts_with(d)))
        .collect();
    assert!(gone.len() > FILES.len(), "dpkg -L: {listed}");
    purge.now();
    assert_eq!(dpkg_status(), "", "dpkg still knows {PKG}");
    for f in gone {
        assert!(!f.exists(), "{} survived the purge", f.display());
    }
    for d in OWN_DIRS {
        assert!(!Path::new(d).exists(), "{d} survived the purge");
    }
}
