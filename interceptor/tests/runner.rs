//! Keeps the request runner readable as the list of a request's steps:
//! every step `McpHandler::run` calls lives in the file of its name under
//! `mcp/handler/`, and docs/development.md's table of the steps names the same steps in
//! the same order.

use std::{fs, path::Path};

/// The step names `run` calls, in order (`self.<step>(`).
fn steps() -> Vec<String> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/mcp/handler");
    let src = fs::read_to_string(dir.join("run.rs")).expect("run.rs");
    let start = src.find("async fn run(").expect("fn run in run.rs");
    let body = &src[start..];
    let body = &body[..body.find("\n    }\n").expect("end of run")];
    let mut out = Vec::new();
    for piece in body.split("self").skip(1) {
        // `self.step(` possibly across a line break (`self\n    .step(`).
        let piece = piece.trim_start();
        let Some(rest) = piece.strip_prefix('.') else {
            continue;
        };
        let name: String = rest
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        if rest[name.len()..].starts_with('(') {
            out.push(name);
        }
    }
    out
}

#[test]
fn every_step_of_the_runner_is_in_the_file_of_its_name() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/mcp/handler");
    let steps = steps();
    assert!(steps.len() >= 8, "run lists its steps: {steps:?}");
    for s in &steps {
        let file = dir.join(format!("{s}.rs"));
        let src = fs::read_to_string(&file)
            .unwrap_or_else(|e| panic!("step {s}: {} ({e})", file.display()));
        assert!(
            src.contains(&format!("fn {s}")),
            "{} does not define fn {s}",
            file.display()
        );
    }
}

#[test]
fn development_doc_lists_the_runner_steps_in_order() {
    let page = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/development.md");
    let text = fs::read_to_string(page).expect("docs/development.md");
    let at = text
        .find("## A request's path through the modules")
        .expect("docs/development.md section on the request's path");
    let listed: Vec<String> = text[at..]
        .lines()
        .skip_while(|l| !l.starts_with("| step |"))
        .skip(2)
        .take_while(|l| l.starts_with("| `"))
        .map(|l| l[3..].split('`').next().unwrap_or_default().to_string())
        .collect();
    assert_eq!(
        listed,
        steps(),
        "docs/development.md's step table against run.rs"
    );
}
