//! `cargo xtask setup`: installs what the build and the tests need, and
//! nothing twice. A second run only asks dpkg and bpf-linker what they have.
//!
//! Why Debian's compiler: rustup stable ships no `core` for
//! `bpfel-unknown-none` and `-Z build-std` needs `rust-src`; Debian's
//! rustc-web with libstd-rust-web-dev-bpf has a prebuilt one, and
//! llvm-22-dev is the LLVM bpf-linker links against.

use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::run as sh;

/// Debian packages: the eBPF toolchain, and what the e2e tests drive.
const PACKAGES: &[&str] = &[
    "rustc-web",
    "cargo-web",
    "libstd-rust-web-dev-bpf",
    "llvm-22-dev",
    "iproute2",   // ip netns / veth for the e2e tests and the demo
    "util-linux", // setpriv: the unprivileged-bypass test
    "procps",
    "nginx-light", // the bench's baseline proxy
    // The `report nist` e2e test renders the HTML report to a PNG, in the
    // report's font (recommends are not installed).
    "chromium",
    "fonts-dejavu-core",
    // `cargo xtask package`: the aarch64 cross build (the linker is set for
    // that target alone in .cargo/config.toml), qemu-user to run the arm64
    // binary in tests, rpmbuild for the .rpm, and the linters of both.
    "gcc-aarch64-linux-gnu",
    "libc6-dev-arm64-cross",
    "qemu-user",
    "rpm",
    "lintian",
    "rpmlint",
    "shellcheck",
    // promtool: deploy/monitoring's alert rules and dashboard queries are
    // checked with it (tests/tests/deploy_monitoring.rs). The package also
    // ships the Prometheus server; on a host that runs systemd its unit is
    // enabled like any Debian service's (`systemctl disable --now
    // prometheus` if unwanted).
    "prometheus",
];

const BPF_LINKER_VERSION: &str = "0.13";

pub fn run() -> Result<()> {
    if !nix_is_root() {
        bail!("cargo xtask setup installs packages and loads eBPF: run it as root");
    }
    apt()?;
    bpf_linker()?;
    Ok(())
}

fn nix_is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .map(|u| u.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}

fn installed(pkg: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${db:Status-Status}", pkg])
        .output()
        .is_ok_and(|o| o.status.success() && o.stdout == b"installed")
}

fn apt() -> Result<()> {
    let missing: Vec<&str> = PACKAGES.iter().copied().filter(|p| !installed(p)).collect();
    if missing.is_empty() {
        eprintln!("==> setup: Debian packages present");
        return Ok(());
    }
    eprintln!("==> setup: installing {}", missing.join(" "));
    // The lists on a fresh machine are stale: rustc-web 1.96 comes from
    // bookworm-security, the old list only knows 1.85.
    sh(Command::new("apt-get").args(["update", "-qq"]))?;
    sh(Command::new("apt-get")
        .env("DEBIAN_FRONTEND", "noninteractive")
        .args(["install", "-y", "-qq", "--no-install-recommends"])
        .args(&missing))?;
    let version = Command::new("/usr/bin/rustc")
        .arg("--version")
        .output()
        .context("running /usr/bin/rustc")?;
    eprintln!(
        "==> setup: Debian {}",
        String::from_utf8_lossy(&version.stdout).trim()
    );
    Ok(())
}

fn bpf_linker() -> Result<()> {
    // build.rs looks on PATH and in ~/.cargo/bin; so does this check.
    let home_bin =
        std::env::var_os("HOME").map(|h| std::path::PathBuf::from(h).join(".cargo/bin/bpf-linker"));
    let candidates = std::iter::once(std::path::PathBuf::from("bpf-linker")).chain(home_bin);
    for bin in candidates {
        if let Ok(out) = Command::new(&bin).arg("--version").output()
            && String::from_utf8_lossy(&out.stdout)
                .contains(&format!("bpf-linker {BPF_LINKER_VERSION}"))
        {
            eprintln!("==> setup: bpf-linker {BPF_LINKER_VERSION} present");
            return Ok(());
        }
    }
    // Debian names it llvm-config-22, so bpf-linker's build needs the prefix.
    sh(Command::new("cargo")
        .env("LLVM_PREFIX", "/usr/lib/llvm-22")
        .args(["install", "bpf-linker", "--locked", "--version"])
        .arg(format!("~{BPF_LINKER_VERSION}"))
        .args(["--no-default-features", "--features", "llvm-22"]))
}
