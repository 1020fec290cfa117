//! Builds the `sk_lookup` object so that one `cargo build` yields one binary
//! with the kernel program embedded.
//!
//! The eBPF crate is built with Debian's rustc (which ships a prebuilt `core`
//! for `bpfel-unknown-none`; rustup stable does not) and bpf-linker, both
//! installed by `cargo xtask setup`. Set `MCPI_BPF_OBJECT` to a prebuilt
//! object to skip the nested build (packaging, cross builds).

use std::{
    env,
    path::{Path, PathBuf},
    process::Command,
};

const DEBIAN_RUSTC: &str = "/usr/bin/rustc";
const DEBIAN_CARGO: &str = "/usr/bin/cargo";

fn main() {
    let manifest = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let root = manifest.parent().expect("workspace root").to_path_buf();
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("set by cargo")).join("mcpi.bpf.o");
    println!("cargo:rerun-if-env-changed=MCPI_BPF_OBJECT");

    if let Some(prebuilt) = env::var_os("MCPI_BPF_OBJECT") {
        // A prebuilt object rewritten in place must reach the binary too.
        println!("cargo:rerun-if-changed={}", Path::new(&prebuilt).display());
        std::fs::copy(&prebuilt, &out)
            .unwrap_or_else(|e| panic!("MCPI_BPF_OBJECT={}: {e}", Path::new(&prebuilt).display()));
        return;
    }

    let ebpf = root.join("interceptor-ebpf");
    for p in ["src", "Cargo.toml", "Cargo.lock"] {
        println!("cargo:rerun-if-changed={}", ebpf.join(p).display());
    }
    println!(
        "cargo:rerun-if-changed={}",
        root.join("interceptor-common/src").display()
    );

    for (tool, what) in [(DEBIAN_RUSTC, "rustc-web"), (DEBIAN_CARGO, "cargo-web")] {
        if !Path::new(tool).exists() {
            panic!("{tool} is missing (Debian package {what}): run `cargo xtask setup` first");
        }
    }
    let linker_dir = find_bpf_linker().unwrap_or_else(|| {
        panic!("bpf-linker not found on PATH or in ~/.cargo/bin: run `cargo xtask setup` first")
    });

    // A clean environment: the variables cargo sets for this build script
    // (RUSTC, target flags, jobserver) must not leak into the nested build,
    // which targets another architecture with another compiler.
    let mut cmd = Command::new(DEBIAN_CARGO);
    for (k, _) in env::vars_os() {
        let k = k.to_string_lossy().into_owned();
        let keep = k == "CARGO_HOME";
        if !keep && (k.starts_with("CARGO") || k.starts_with("RUSTC") || k.starts_with("RUSTFLAGS"))
        {
            cmd.env_remove(&k);
        }
    }
    let path = env::var_os("PATH").unwrap_or_default();
    let mut paths = vec![linker_dir];
    paths.extend(env::split_paths(&path));
    cmd.env("PATH", env::join_paths(paths).expect("valid PATH"))
        .env("RUSTC", DEBIAN_RUSTC)
        // aya-ebpf uses one unstable feature; Debian's stable rustc allows it
        // only with this switch.
        .env("RUSTC_BOOTSTRAP", "1")
        .current_dir(&ebpf)
        .args(["build", "--release", "--target", "bpfel-unknown-none"]);
    let status = cmd
        .status()
        .unwrap_or_else(|e| panic!("running {DEBIAN_CARGO}: {e}"));
    if !status.success() {
        panic!("building interceptor-ebpf failed ({status}); see the output above");
    }
    let built = ebpf.join("target/bpfel-unknown-none/release/interceptor-ebpf");
    std::fs::copy(&built, &out).unwrap_or_else(|e| panic!("copy {}: {e}", built.display()));
}

fn find_bpf_linker() -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = env::var_os("PATH")
        .map(|p| env::split_paths(&p).collect())
        .unwrap_or_default();
    if let Some(home) = env::var_os("CARGO_HOME") {
        dirs.push(PathBuf::from(home).join("bin"));
    }
    if let Some(home) = env::var_os("HOME") {
        dirs.push(PathBuf::from(home).join(".cargo/bin"));
    }
    dirs.into_iter().find(|d| d.join("bpf-linker").is_file())
}
