//! Every committed fuzz seed (fuzz/corpus/<target>), and whatever local
//! campaigns found (target/fuzz/corpus/<target>, if present), run through
//! the fuzz target's own body on the stable debug build: the assertions
//! the targets make hold for every seed, and a target that stops compiling
//! against the library's API fails CI here rather than in the next
//! campaign. The nightly libFuzzer build runs in `cargo xtask test --full`.

use std::path::{Path, PathBuf};

#[allow(unused_attributes, dead_code)]
#[path = "../../../fuzz/fuzz_targets/jsonrpc.rs"]
mod jsonrpc;

#[allow(unused_attributes, dead_code)]
#[path = "../../../fuzz/fuzz_targets/sse.rs"]
mod sse;

#[allow(unused_attributes, dead_code)]
#[path = "../../../fuzz/fuzz_targets/jwt.rs"]
mod jwt;

#[allow(unused_attributes, dead_code)]
#[path = "../../../fuzz/fuzz_targets/cedar_input.rs"]
mod cedar_input;

#[allow(unused_attributes, dead_code)]
#[path = "../../../fuzz/fuzz_targets/mask.rs"]
mod mask;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Runs `one` on every file of the target's corpora; the number run.
fn replay(target: &str, one: fn(&[u8])) -> usize {
    let mut n = 0;
    for dir in ["fuzz/corpus", "target/fuzz/corpus"] {
        let Ok(entries) = std::fs::read_dir(repo().join(dir).join(target)) else {
            continue;
        };
        let mut files: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
        files.sort();
        for f in files {
            let data = std::fs::read(&f).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
            eprintln!("{target}: {}", f.display());
            one(&data);
            n += 1;
        }
    }
    n
}

fn seeds(target: &str, one: fn(&[u8])) {
    let n = replay(target, one);
    assert!(n >= 5, "{target}: only {n} seeds in fuzz/corpus/{target}");
    // The empty input and a few bytes of every value: the edges a seed set
    // rarely holds.
    one(&[]);
    for b in [0u8, 1, 2, 3, 0x7f, 0xff] {
        one(&[b]);
        one(&[b; 9]);
    }
}

#[test]
fn jsonrpc_seeds() {
    seeds("jsonrpc", jsonrpc::fuzz_one);
}

#[test]
fn sse_seeds() {
    seeds("sse", sse::fuzz_one);
}

#[test]
fn jwt_seeds() {
    seeds("jwt", jwt::fuzz_one);
}

#[test]
fn cedar_input_seeds() {
    seeds("cedar_input", cedar_input::fuzz_one);
}

#[test]
fn mask_seeds() {
    seeds("mask", mask::fuzz_one);
}
