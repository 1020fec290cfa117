//! `cargo xtask`: everything a fresh machine needs, in the project's files.
//!
//!   setup   install Debian packages and bpf-linker (idempotent)
//!   build   setup, then build every binary (the eBPF object is embedded)
//!   test    setup, fmt check, clippy -D warnings, build, all tests
//!   demo    setup, build, run the agent against a real MCP server in a
//!           network namespace, show what it saw
//!   soak    the release agent under steady load for N minutes, memory
//!           sampled (a leak shows as growth)

mod fuzz;
mod package;
mod peers;
mod setup;
mod soak;

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context, Result, bail};

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (cmd, rest) = args
        .split_first()
        .map(|(c, r)| (c.as_str(), r))
        .unwrap_or(("help", &[]));
    match cmd {
        "setup" => install(),
        "build" => {
            install()?;
            build()
        }
        "test" => test(rest),
        "bench" => {
            install()?;
            bench(rest)
        }
        "demo" => {
            install()?;
            build()?;
            // The scenario lives beside the e2e harness it shares.
            run(&mut Command::new(bin_dir().join("mcp-demo")))
        }
        "package" => package::package(rest),
        "fuzz" => fuzz::run(rest),
        "soak" => soak::run(rest),
        _ => {
            eprintln!(
                "usage: cargo xtask <setup|build|test|demo|bench|package|fuzz|soak>\n\
                 \n  setup  install what the build and tests need (idempotent)\
                 \n  build  build the agent (eBPF object embedded) and test peers\
                 \n  test   setup, fmt, clippy, build, unit and end-to-end tests\
                 \n         (extra arguments go to cargo nextest); --full: also the\
                 \n         arm64 cross-build and the #[ignore]d tests that need it\
                 \n  demo   run the agent against a real MCP server in a netns\
                 \n  bench  direct vs nginx vs the agent, one run (release build);\
                 \n         --quick: a short smoke run on the dev build\
                 \n  package  .deb and .rpm for x86_64 and aarch64 in target/package, of\
                 \n         the release build (built only where missing or stale);\
                 \n         --dev: of the dev build; --arch, --format, --no-build, --no-lint\
                 \n  fuzz   [--seconds N] [--smoke] [TARGET...] run the fuzz targets, N s each\
                 \n         (600; --smoke: 10 s each, quick unsanitized build, as in test --full)\
                 \n  soak   [--minutes N] [--rate R] [--clients C] the release agent, all\
                 \n         stages on, under steady load for N min (30); RSS every 10 s\
                 \n         in target/soak/rss.csv, a curve and a growth verdict"
            );
            if cmd == "help" {
                Ok(())
            } else {
                bail!("unknown command {cmd:?}")
            }
        }
    }
}

/// Debian packages and bpf-linker, then the Python and npm test peers.
fn install() -> Result<()> {
    setup::run()?;
    peers::install(&root())
}

/// The workspace root (xtask lives one level below it).
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask is inside the workspace")
        .to_path_buf()
}

/// Where cargo puts binaries for the dev profile.
pub fn bin_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target"))
        .join("debug")
}

/// Runs `cmd` in the workspace root, failing with its name on non-zero exit.
pub fn run(cmd: &mut Command) -> Result<()> {
    run_in(&root(), cmd)
}

/// Runs `cmd` in `dir`, failing with its command line on non-zero exit.
pub fn run_in(dir: &Path, cmd: &mut Command) -> Result<()> {
    cmd.current_dir(dir);
    let shown = format!("{cmd:?}").replace('"', "");
    eprintln!("==> {shown}");
    let started = std::time::Instant::now();
    let status = cmd.status().with_context(|| format!("starting {shown}"))?;
    // Every step's time, so CI's budget can be read off its log.
    eprintln!("==> took {:.0?}: {shown}", started.elapsed());
    if !status.success() {
        bail!("{shown} failed: {status}");
    }
    Ok(())
}

fn cargo() -> Command {
    Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
}

fn build() -> Result<()> {
    run(cargo().args(["build", "--workspace", "--bins", "--locked"]))
}

/// `cargo xtask test [--full] [NEXTEST ARGS]`. `--full` adds what CI's
/// 30-minute budget leaves out: the arm64 cross-build and the tests marked
/// `#[ignore]` that need it (the arm64 agent under qemu-user), and the
/// libFuzzer smoke run of every fuzz target (CI replays their seeds).
fn test(extra: &[String]) -> Result<()> {
    let started = std::time::Instant::now();
    let full = extra.iter().any(|a| a == "--full");
    let extra: Vec<&String> = extra.iter().filter(|a| *a != "--full").collect();
    install()?;
    run(cargo().args(["fmt", "--all", "--check"]))?;
    // The eBPF crate is outside the workspace; rustfmt needs no target.
    run(cargo().args([
        "fmt",
        "--check",
        "--manifest-path",
        "interceptor-ebpf/Cargo.toml",
    ]))?;
    run(cargo().args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--locked",
        "--",
        "-D",
        "warnings",
    ]))?;
    build()?;
    if full {
        cross_build()?;
    }
    let mut nextest = cargo();
    nextest
        .args([
            "nextest",
            "run",
            "--workspace",
            "--locked",
            "--profile",
            "ci",
        ])
        .args(extra);
    if full {
        nextest.args(["--run-ignored", "all"]);
    }
    run(&mut nextest)?;
    // nextest replayed every fuzz seed on the stable build
    // (tests/fuzz-replay); the nightly libFuzzer build costs 5-6 minutes of
    // CI's 30, so it runs with --full.
    if full {
        fuzz::smoke()?;
    }
    // The bench must keep working: a short smoke run on the dev build
    // (numbers are not looked at).
    run(Command::new(bin_dir().join("mcp-bench")).args([
        "--quick",
        "--out",
        "target/bench-quick",
    ]))?;
    eprintln!("==> cargo xtask test passed in {:.0?}", started.elapsed());
    Ok(())
}

/// The agent alone, for arm64 (tests/tests/package.rs runs it under
/// qemu-user); build.rs embeds the same eBPF object as in the host build.
fn cross_build() -> Result<()> {
    run(cargo().args([
        "build",
        "--locked",
        "-p",
        "mcp-interceptor",
        "--bin",
        "mcp-interceptor",
        "--target",
        "aarch64-unknown-linux-gnu",
    ]))
}

/// `cargo xtask bench [--quick]`: release binaries, unless --quick.
fn bench(extra: &[String]) -> Result<()> {
    let quick = extra.iter().any(|a| a == "--quick");
    let dir = if quick {
        build()?;
        bin_dir()
    } else {
        run(cargo().args(["build", "--workspace", "--bins", "--locked", "--release"]))?;
        bin_dir().with_file_name("release")
    };
    run(Command::new(dir.join("mcp-bench")).args(extra))
}
