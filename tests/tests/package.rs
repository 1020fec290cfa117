//! The packages `cargo xtask package` builds.
//!
//! - The arm64 agent (cross-built by `cargo xtask test --full`; CI's
//!   budget leaves the cross-build out, so the test is `#[ignore]`d there)
//!   runs under qemu-user: `--version`, and `check-config` accepting a valid config
//!   and refusing a broken one.
//! - The .deb of the dev build installs in a private mount and network
//!   namespace: overlays whose upper layers are a tmpfs of that namespace
//!   cover /etc, /usr (and so /lib), /var/lib, /var/log and /var/cache, a
//!   tmpfs hides /run (no systemd for the maintainer scripts to talk to).
//!   dpkg, the agent and the purge all run there; nothing reaches the
//!   host, which the test checks. The pins alone go to the host's bpffs
//!   (a private one would die with the namespace, and the agent refuses
//!   it), in a directory of the test's own.
//!   Chosen over `dpkg --root` into a debootstrap'd tree: that needs a
//!   mirror (none here) and minutes, where overlays over the host's own
//!   system take milliseconds, and the maintainer scripts run against a
//!   real system.

use std::{
    os::unix::process::CommandExt,
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
    time::{Duration, Instant},
};

use mcp_interceptor_tests::{
    TempDir, agent::PinGuard, bin, bin_dir, everything::repo, pki::Pki, require_root, unique,
};

const PKG: &str = "mcp-interceptor";
const BIN: &str = "/usr/bin/mcp-interceptor";

/// What the .deb installs (a sample of each directory), checked inside
/// the namespace.
const FILES: &[&str] = &[
    BIN,
    "/lib/systemd/system/mcp-interceptor.service",
    "/usr/share/mcp-interceptor/config.example.toml",
    "/usr/share/mcp-interceptor/policy/mcp.cedarschema",
    "/usr/share/mcp-interceptor/policy/examples/base.cedar",
    "/usr/share/mcp-interceptor/athena/create_table.sql",
    "/usr/share/doc/mcp-interceptor/README.md",
    "/usr/share/doc/mcp-interceptor/systemd.md",
    "/usr/share/doc/mcp-interceptor/copyright",
    "/usr/share/doc/mcp-interceptor/changelog.gz",
    "/usr/share/man/man8/mcp-interceptor.8.gz",
    "/usr/share/bash-completion/completions/mcp-interceptor",
    "/usr/share/zsh/vendor-completions/_mcp-interceptor",
    "/usr/share/fish/vendor_completions.d/mcp-interceptor.fish",
];

/// Runs `cmd`, output to files (no pipe to fill), killed with its process
/// group after `limit`.
fn run(cmd: &str, args: &[&str], limit: Duration) -> Result<Output, String> {
    let shown = format!("{cmd} {}", args.join(" "));
    let logs = std::env::temp_dir().join(unique("mcpi-pkg-run"));
    let (out_path, err_path) = (logs.with_extension("out"), logs.with_extension("err"));
    let files = std::fs::File::create(&out_path)
        .and_then(|o| Ok((o, std::fs::File::create(&err_path)?)))
        .map_err(|e| format!("{shown}: output files: {e}"))?;
    let mut child = Command::new(cmd)
        .args(args)
        .current_dir(repo())
        .stdin(Stdio::null())
        .stdout(files.0)
        .stderr(files.1)
        .process_group(0)
        .spawn()
        .map_err(|e| format!("starting {shown}: {e}"))?;
    let deadline = Instant::now() + limit;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Ok(status),
            Ok(None) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(50));
            }
            _ => {
                let _ = Command::new("kill")
                    .args(["-KILL", "--", &format!("-{}", child.id())])
                    .status();
                let _ = child.wait();
                break Err(format!("{shown} did not finish within {limit:?}"));
            }
        }
    };
    let out = std::fs::read(&out_path).unwrap_or_default();
    let err = std::fs::read(&err_path).unwrap_or_default();
    let _ = std::fs::remove_file(&out_path);
    let _ = std::fs::remove_file(&err_path);
    match status {
        Ok(status) => Ok(Output {
            status,
            stdout: out,
            stderr: err,
        }),
        Err(e) => Err(format!(
            "{e}\n{}{}",
            String::from_utf8_lossy(&out),
            String::from_utf8_lossy(&err)
        )),
    }
}

/// [`run`] that must succeed; returns stdout.
fn ok(cmd: &str, args: &[&str], limit: Duration) -> String {
    let out = run(cmd, args, limit).unwrap_or_else(|e| panic!("{e}"));
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

/// The arm64 agent `cargo xtask test --full` cross-builds beside the
/// native one.
fn arm64_agent() -> PathBuf {
    let p = bin_dir()
        .parent()
        .expect("target dir")
        .join("aarch64-unknown-linux-gnu")
        .join(bin_dir().file_name().expect("profile dir"))
        .join(PKG);
    assert!(
        p.is_file(),
        "{} is missing: cargo build -p mcp-interceptor --target aarch64-unknown-linux-gnu \
         (cargo xtask test --full does)",
        p.display()
    );
    p
}

#[test]
#[ignore = "needs the arm64 cross-build: cargo xtask test --full"]
fn arm64_agent_runs_version_and_check_config_under_qemu() {
    let agent = arm64_agent();
    let agent = agent.display().to_string();
    let header = ok("readelf", &["-h", &agent], Duration::from_secs(10));
    assert!(
        header
            .lines()
            .any(|l| l.trim().starts_with("Machine:") && l.contains("AArch64")),
        "{agent} is not an arm64 binary:\n{header}"
    );
    let qemu = |args: &[&str]| {
        let mut all = vec!["-L", "/usr/aarch64-linux-gnu", agent.as_str()];
        all.extend_from_slice(args);
        run("qemu-aarch64", &all, Duration::from_secs(60)).unwrap_or_else(|e| panic!("{e}"))
    };
    let version = qemu(&["--version"]);
    assert!(version.status.success(), "{version:?}");
    assert_eq!(
        String::from_utf8_lossy(&version.stdout).trim(),
        format!("{PKG} {}", env!("CARGO_PKG_VERSION"))
    );

    let dir = TempDir::new("qemu");
    let good = dir.path().join("good.toml");
    std::fs::write(
        &good,
        "[[intercept.ports]]\nport = 8080\n[identity]\nallow_anonymous = true\n",
    )
    .unwrap();
    let checked = qemu(&["check-config", &good.display().to_string()]);
    let shown = String::from_utf8_lossy(&checked.stdout);
    assert!(
        checked.status.success() && shown.contains("pin_dir") && shown.contains("8080"),
        "check-config under qemu ({}):\n{shown}{}",
        checked.status,
        String::from_utf8_lossy(&checked.stderr)
    );
    // It checks, under qemu too: a key the config does not know is refused.
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[[intercept.ports]]\nport = 8080\nportt = 1\n").unwrap();
    let refused = qemu(&["check-config", &bad.display().to_string()]);
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(
        !refused.status.success() && said.contains("portt"),
        "check-config accepted an unknown key under qemu ({}): {said}",
        refused.status
    );
}

/// The bash script `completions` prints completes commands and flags in
/// a real bash (the packages install it for bash-completion to load).
#[test]
fn bash_completion_completes_commands_and_flags() {
    let dir = TempDir::new("complete");
    let script = dir.path().join("mcp-interceptor.bash");
    std::fs::write(
        &script,
        ok(
            &bin(PKG).display().to_string(),
            &["completions", "bash"],
            Duration::from_secs(10),
        ),
    )
    .unwrap();
    let complete = |line: &str| {
        let words: Vec<&str> = line.split(' ').collect();
        let program = format!(
            "source {}; COMP_WORDS=({}); COMP_CWORD={}; COMP_LINE='{line}'; COMP_POINT={}; \
             _mcp__interceptor mcp-interceptor '{}' '{}'; printf '%s\\n' \"${{COMPREPLY[@]}}\"",
            script.display(),
            words
                .iter()
                .map(|w| format!("'{w}'"))
                .collect::<Vec<_>>()
                .join(" "),
            words.len() - 1,
            line.len(),
            words[words.len() - 1],
            words[words.len().saturating_sub(2)],
        );
        ok("bash", &["-c", &program], Duration::from_secs(10))
    };
    let commands = complete("mcp-interceptor che");
    assert_eq!(commands.trim(), "check-config", "{commands}");
    let all = complete("mcp-interceptor ");
    for c in ["run", "doctor", "audit", "completions"] {
        assert!(all.lines().any(|l| l == c), "{c} not offered: {all}");
    }
    let flags = complete("mcp-interceptor doctor --c");
    assert!(flags.lines().any(|l| l == "--config"), "{flags}");
    let audit = complete("mcp-interceptor audit ");
    assert!(audit.lines().any(|l| l == "verify"), "{audit}");
    let shells = complete("mcp-interceptor completions f");
    assert_eq!(shells.trim(), "fish", "{shells}");
}

/// dpkg's state of the package on the host: "installed", "config-files",
/// or "" (none).
fn host_dpkg_status() -> String {
    run(
        "dpkg-query",
        &["-W", "-f=${db:Status-Status}", PKG],
        Duration::from_secs(20),
    )
    .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    .unwrap_or_default()
}

/// What the host has of the package's paths: unchanged by the test.
fn host_paths() -> Vec<(String, bool)> {
    [
        BIN,
        "/etc/mcp-interceptor",
        "/var/lib/mcp-interceptor",
        "/usr/share/mcp-interceptor",
        "/lib/systemd/system/mcp-interceptor.service",
    ]
    .iter()
    .map(|p| (p.to_string(), Path::new(p).exists()))
    .collect()
}

/// bpffs at /sys/fs/bpf, shared, as systemd mounts it at boot (a host
/// without systemd, like this one, may have it private, or not at all).
/// Shared, its copy in the namespace is a slave of it, which the agent
/// takes as the host's: pins there outlive it.
fn host_bpffs() {
    let mounted = run(
        "findmnt",
        &["-t", "bpf", "/sys/fs/bpf"],
        Duration::from_secs(10),
    )
    .is_ok_and(|o| o.status.success());
    if !mounted {
        ok(
            "mount",
            &["-t", "bpf", "bpf", "/sys/fs/bpf"],
            Duration::from_secs(10),
        );
    }
    ok(
        "mount",
        &["--make-shared", "/sys/fs/bpf"],
        Duration::from_secs(10),
    );
}

/// The agent's config inside the namespace: mTLS on port 8080, the
/// packaged example policies, the default audit and key paths below
/// /var/lib/mcp-interceptor (what the purge must keep).
fn agent_config(dir: &Path, pins: &Path) -> PathBuf {
    let pki = Pki::new(&dir.join("pki"));
    let (cert, key) = pki.server("server", &["127.0.0.1".parse().unwrap()], &["localhost"]);
    let config = dir.join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[intercept]\npin_dir = \"{}\"\n[[intercept.ports]]\nport = 8080\n\
             [tls]\ncert = \"{}\"\nkey = \"{}\"\nclient_ca = [\"{}\"]\n\
             [policy]\nfiles = [\"/usr/share/mcp-interceptor/policy/examples\"]\n",
            pins.display(),
            cert.display(),
            key.display(),
            pki.ca_pem.display(),
        ),
    )
    .unwrap();
    config
}

#[test]
fn deb_in_a_private_namespace_waits_for_a_config_passes_doctor_and_purge_keeps_the_audit() {
    require_root();
    assert_eq!(
        host_dpkg_status(),
        "",
        "{PKG} is installed on this host: the namespace would start from an upgrade, \
         not a fresh install"
    );
    let host_before = host_paths();
    let dir = TempDir::new("package");
    let out = dir.path().display().to_string();
    // The dev build as it is (cargo xtask test built it); lintian and
    // rpmlint run on the release packages, not here.
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let _ = bin(PKG);
    let built = ok(
        &cargo,
        &[
            "xtask",
            "package",
            "--dev",
            "--no-build",
            "--no-lint",
            "--format",
            "deb",
            "--arch",
            std::env::consts::ARCH,
            "--out",
            &out,
        ],
        Duration::from_secs(60),
    );
    let deb = PathBuf::from(built.trim());
    assert!(
        deb.is_file() && deb.starts_with(dir.path()) && deb.extension() == Some("deb".as_ref()),
        "xtask printed {built:?}"
    );
    // The pins go to the host's bpffs (the agent refuses, rightly, pins on
    // a bpffs that dies with a private mount namespace), under a name of
    // their own, removed on failure.
    let pins = PinGuard(PathBuf::from(format!("/sys/fs/bpf/{}", unique("mcpi-pkg"))));
    host_bpffs();
    let config = agent_config(dir.path(), &pins.0);
    let script = dir.path().join("in-namespace.sh");
    std::fs::write(&script, SCRIPT).unwrap();

    let started = Instant::now();
    let files = FILES.join(" ");
    let result = run(
        "unshare",
        &[
            "--mount",
            "--net",
            // Host mounts (the bpffs) show inside; none made inside
            // reaches the host.
            "--propagation",
            "slave",
            "--",
            "/bin/sh",
            &script.display().to_string(),
            &out,
            &deb.display().to_string(),
            &config.display().to_string(),
            &files,
            &pins.0.display().to_string(),
        ],
        Duration::from_secs(60),
    );
    eprintln!("namespace run took {:.1?}", started.elapsed());
    // Nothing leaked to the host, whatever happened inside.
    assert_eq!(host_dpkg_status(), "", "dpkg on the host knows {PKG}");
    assert_eq!(host_paths(), host_before, "the host's files changed");
    let result = result.unwrap_or_else(|e| panic!("{e}"));
    let said = String::from_utf8_lossy(&result.stdout);
    eprintln!("{said}");
    assert!(
        result.status.success() && said.trim_end().ends_with("ALL OK"),
        "in the namespace ({}):\n{said}{}",
        result.status,
        String::from_utf8_lossy(&result.stderr)
    );
    // What the operator was told.
    let install = section(&said, "install");
    assert!(
        install.contains("installed, not started") && install.contains("systemctl enable --now"),
        "{install}"
    );
    let doctor = section(&said, "doctor");
    assert!(doctor.contains("checks passed"), "{doctor}");
    for check in ["agent", "program", "rules", "tls", "policy"] {
        assert!(
            doctor
                .lines()
                .any(|l| l.split_whitespace().take(2).eq(["ok", check])),
            "doctor did not pass {check}:\n{doctor}"
        );
    }
    let purge = section(&said, "purge");
    assert!(
        purge.contains("KEPT /var/lib/mcp-interceptor") && purge.contains("rm -rf"),
        "the purge did not say it kept the state:\n{purge}"
    );
    let asked = section(&said, "purge-asked");
    assert!(
        asked.contains("removed /var/lib/mcp-interceptor"),
        "{asked}"
    );
}

/// The script's output between `STEP name` and the next `STEP`.
fn section<'a>(all: &'a str, name: &str) -> &'a str {
    let start = all
        .find(&format!("STEP {name}\n"))
        .unwrap_or_else(|| panic!("no STEP {name} in:\n{all}"));
    let rest = &all[start..];
    let end = rest[5..].find("STEP ").map_or(rest.len(), |i| i + 5);
    &rest[..end]
}

/// Runs in the private namespaces: $1 a scratch directory, $2 the .deb,
/// $3 the agent's config, $4 the files the package must install, $5 the
/// config's pin directory.
const SCRIPT: &str = r##"
set -eu
W=$1 DEB=$2 CONF=$3 FILES=$4 PINS=$5
CONFIG=/etc/mcp-interceptor/config.toml
UNIT=/lib/systemd/system/mcp-interceptor.service
fail() { echo "FAIL: $*"; exit 1; }
step() { echo "STEP $1"; }

# Private copies of everything dpkg and the agent write.
mkdir -p "$W/ov"
mount -t tmpfs tmpfs "$W/ov"
for d in /etc /usr /var/lib /var/log /var/cache; do
    n=$(echo "$d" | tr / _)
    mkdir -p "$W/ov/$n/u" "$W/ov/$n/w"
    mount -t overlay overlay -o "lowerdir=$d,upperdir=$W/ov/$n/u,workdir=$W/ov/$n/w" "$d"
done
mount -t tmpfs tmpfs /run
ip link set lo up
# A fresh host as far as this package goes (hidden here only), and no
# man-db index rebuild (seconds) for the man page.
rm -rf /etc/mcp-interceptor /var/lib/mcp-interceptor /var/log/mcp-interceptor
rm -f /var/lib/man-db/auto-update

step install
dpkg -i "$DEB" 2>&1 || fail "dpkg -i"
for f in $FILES; do [ -f "$f" ] || fail "$f is not installed"; done
# md5sums: dpkg can check the agent's files, and notices a change.
[ -s /var/lib/dpkg/info/mcp-interceptor.md5sums ] || fail "no md5sums"
[ -z "$(dpkg --verify mcp-interceptor)" ] || fail "dpkg --verify: $(dpkg --verify mcp-interceptor)"
cp /usr/share/mcp-interceptor/config.example.toml "$W/example"
echo "# changed" >>/usr/share/mcp-interceptor/config.example.toml
dpkg --verify mcp-interceptor | grep -q 'config.example.toml' || fail "dpkg --verify missed a change"
cp "$W/example" /usr/share/mcp-interceptor/config.example.toml

step no-config
# The installed unit verifies, its man page included (no output allowed).
verified=$(systemd-analyze verify "$UNIT" 2>&1) || fail "systemd-analyze verify: $verified"
[ -z "$verified" ] || fail "systemd-analyze verify: $verified"
[ ! -e "$CONFIG" ] || fail "the package installed a live config"
[ "$(stat -c %a /var/lib/mcp-interceptor)" = 700 ] || fail "state dir mode"
for p in /proc/[0-9]*; do
    [ "$(readlink "$p/exe" 2>/dev/null)" != /usr/bin/mcp-interceptor ] || fail "an agent runs: $p"
done
[ ! -e "$PINS" ] || fail "steering was pinned: $(ls "$PINS")"
enabled=$(systemctl --root=/ is-enabled mcp-interceptor.service 2>&1 || true)
echo "is-enabled: $enabled"
[ "$enabled" = disabled ] || fail "the package enabled the unit: $enabled"
# What systemd decides at start, enable --now or boot: the unit's
# conditions, evaluated by systemd itself.
conds=$(grep '^Condition' "$UNIT") || fail "the unit has no Condition"
if systemd-analyze condition $conds; then fail "the unit would start without a config"; fi

step config
cp "$CONF" "$CONFIG"
systemd-analyze condition $conds || fail "the unit would not start with a config"
mcp-interceptor check-config "$CONFIG" >/dev/null || fail "check-config"
if mcp-interceptor doctor --help | grep -q -- --preflight; then
    echo "doctor --preflight:"
    mcp-interceptor doctor --preflight --config "$CONFIG" || fail "doctor --preflight"
else
    echo "this doctor has no --preflight: checked with the agent running"
fi

step run
mkdir -p /run/mcp-interceptor # RuntimeDirectory=, as systemd would
mcp-interceptor run --config "$CONFIG" >"$W/agent.log" 2>&1 &
agent=$!
i=0
until grep -q "agent ready" "$W/agent.log"; do
    kill -0 "$agent" 2>/dev/null || { cat "$W/agent.log"; fail "the agent died"; }
    i=$((i + 1))
    [ $i -lt 300 ] || { cat "$W/agent.log"; fail "the agent is not ready after 30 s"; }
    sleep 0.1
done

step doctor
[ -e "$PINS" ] || fail "no steering pinned at $PINS"
mcp-interceptor doctor --config "$CONFIG" 2>&1 || { cat "$W/agent.log"; fail "doctor"; }

step stop
kill -TERM "$agent"
wait "$agent" || fail "the agent's exit"
find /var/lib/mcp-interceptor/audit -name '*.parquet' | grep -q . || fail "no audit written"

step purge
dpkg --purge mcp-interceptor 2>&1 || fail "dpkg --purge"
[ ! -e /usr/bin/mcp-interceptor ] || fail "the binary survived the purge"
[ ! -e /usr/share/mcp-interceptor ] || fail "/usr/share/mcp-interceptor survived the purge"
find /var/lib/mcp-interceptor/audit -name '*.parquet' | grep -q . || fail "the purge deleted the audit"
[ -s /var/lib/mcp-interceptor/audit-signing.key ] || fail "the purge deleted the signing key"
[ -f "$CONFIG" ] || fail "the purge deleted the operator's config"
[ ! -e "$PINS" ] || fail "the purge left the pinned steering: $(ls "$PINS")"

step purge-asked
dpkg -i "$DEB" >/dev/null 2>&1 || fail "reinstall"
touch /var/lib/mcp-interceptor/purge-state
dpkg --purge mcp-interceptor 2>&1 || fail "dpkg --purge"
[ ! -e /var/lib/mcp-interceptor ] || fail "asked, the purge kept the state"
echo "ALL OK"
"##;
