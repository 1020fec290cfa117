//! Keeps lib.rs's module map true: reads every `crate::...` path in
//! `interceptor/src` and fails on a backward arrow.
//!
//! The rule, as lib.rs states it: a module may import the leaves and the
//! modules listed before it in [`CHAIN`]; importing one listed after it is a
//! backward arrow (an upstream module that knows its downstream consumers,
//! or a phase that reaches into the transport that runs it). Leaves import
//! only leaves listed before them. The wiring modules in [`WIRING`] build
//! the whole agent or a CLI command, so they may import anything; nothing in
//! the library may import them.
//!
//! Paths are read from the source text (comments and string literals
//! removed), including grouped `use crate::{a::X, b::{Y, Z}}` imports and
//! `super::` paths that climb to the crate root.

use std::{
    collections::BTreeSet,
    fs,
    path::{Path, PathBuf},
};

/// Shared types every module may use; each may import only leaves before it.
const LEAVES: &[&str] = &[
    "escape",
    "error",
    "conn",
    "jsonrpc",
    "reqpath",
    "config",
    "telemetry",
];

/// The library's stages, in the order each may build on the ones before it.
const CHAIN: &[&str] = &[
    "identity", "pipeline", "policy", "mask", "approval", "audit", "steer", "proxy", "mcp",
];

/// Top-level wiring that sees everything, each with why:
/// - `agent`: starts every stage in order and hands each its config;
/// - `admin`: the control socket reads and changes approvals, grants, pins,
///   steering and metrics of the running agent;
/// - `doctor`: checks every stage's preconditions (maps, certificates, issuer);
/// - `report`: reads audit files and the config to write compliance reports;
/// - `init`: writes a first config and checks it parses;
/// - `cli` and the binary's files (`main.rs`, `cli_*.rs`, `*_cmd.rs`): the
///   command tree and dispatch, one command per file.
const WIRING: &[&str] = &["agent", "admin", "doctor", "report", "init", "cli"];

/// One import of `to` by module `from`, at `file:line`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Arrow {
    from: String,
    to: String,
    at: String,
}

fn src_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Removes comments, string and char literals, keeping line breaks so
/// positions still name the right line.
fn strip(src: &str) -> String {
    let b = src.as_bytes();
    let mut out = String::with_capacity(src.len());
    let mut i = 0;
    while i < b.len() {
        let rest = &src[i..];
        if rest.starts_with("//") {
            let end = rest.find('\n').unwrap_or(rest.len());
            i += end;
        } else if rest.starts_with("/*") {
            let end = rest.find("*/").map_or(rest.len(), |e| e + 2);
            out.extend(rest[..end].chars().filter(|c| *c == '\n'));
            i += end;
        } else if let Some(len) = raw_string_len(rest) {
            out.extend(rest[..len].chars().filter(|c| *c == '\n'));
            i += len;
        } else if b[i] == b'"' {
            let len = quoted_len(rest, '"');
            out.extend(rest[..len].chars().filter(|c| *c == '\n'));
            i += len;
        } else if let Some(len) = char_literal_len(rest) {
            i += len;
        } else {
            let c = rest.chars().next().expect("non-empty");
            out.push(c);
            i += c.len_utf8();
        }
    }
    out
}

/// Length of `r"..."` / `r#"..."#` / `br"..."` at the start, if it is one.
fn raw_string_len(s: &str) -> Option<usize> {
    let body = s.strip_prefix("br").or_else(|| s.strip_prefix('r'))?;
    let hashes = body.len() - body.trim_start_matches('#').len();
    if !body[hashes..].starts_with('"') {
        return None;
    }
    let close = format!("\"{}", "#".repeat(hashes));
    let open = s.len() - body.len() + hashes + 1;
    let end = s[open..].find(&close)?;
    Some(open + end + close.len())
}

/// Length of a quoted literal starting at `s[0] == q`, escapes honoured.
fn quoted_len(s: &str, q: char) -> usize {
    let mut escaped = false;
    for (i, c) in s.char_indices().skip(1) {
        match c {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            c if c == q => return i + 1,
            _ => {}
        }
    }
    s.len()
}

/// A char literal (`'x'`, `'\n'`, `'"'`), not a lifetime (`'a`).
fn char_literal_len(s: &str) -> Option<usize> {
    if !s.starts_with('\'') {
        return None;
    }
    let len = quoted_len(s, '\'');
    let inner = &s[1..len.saturating_sub(1)];
    let is_char = len >= 3
        && s[..len].ends_with('\'')
        && (inner.chars().count() == 1 || inner.starts_with('\\'));
    is_char.then_some(len)
}

/// The top-level module a file under `src/` belongs to.
fn module_of(rel: &Path) -> String {
    let first = rel.components().next().expect("relative path");
    let name = first.as_os_str().to_string_lossy();
    name.strip_suffix(".rs").unwrap_or(&name).to_owned()
}

/// The module path of a file below its top-level module: `mcp/handler/post.rs`
/// is `[mcp, handler, post]`, `mcp/mod.rs` is `[mcp]`.
fn module_path(rel: &Path) -> Vec<String> {
    let mut parts: Vec<String> = rel
        .iter()
        .map(|c| c.to_string_lossy().into_owned())
        .collect();
    let last = parts.pop().expect("file name");
    let stem = last.strip_suffix(".rs").unwrap_or(&last).to_owned();
    if stem != "mod" && stem != "lib" && stem != "main" {
        parts.push(stem);
    }
    parts
}

/// First identifier of each top-level item in a `{...}` group body.
fn group_heads(body: &str) -> Vec<&str> {
    let mut heads = Vec::new();
    let (mut depth, mut start) = (0usize, 0usize);
    for (i, c) in body.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                heads.push(&body[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    heads.push(&body[start..]);
    heads
        .into_iter()
        .filter_map(|h| ident_at(h.trim_start()))
        .collect()
}

fn ident_at(s: &str) -> Option<&str> {
    let end = s
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(s.len());
    (end > 0).then_some(&s[..end])
}

/// The body of the brace group opening at `s[0] == '{'`.
fn brace_body(s: &str) -> &str {
    let mut depth = 0usize;
    for (i, c) in s.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    return &s[1..i];
                }
            }
            _ => {}
        }
    }
    &s[1..]
}

/// Every top-level module named by a crate-rooted path in `text`.
fn targets(text: &str, here: &[String], root: &Path) -> Vec<(String, usize)> {
    let mut found = Vec::new();
    let bytes = text.as_bytes();
    for (pos, _) in text.match_indices("crate::") {
        let word_start =
            pos == 0 || !(bytes[pos - 1].is_ascii_alphanumeric() || bytes[pos - 1] == b'_');
        if !word_start {
            continue;
        }
        let rest = &text[pos + "crate::".len()..];
        let line = text[..pos].matches('\n').count() + 1;
        if rest.starts_with('{') {
            found.extend(
                group_heads(brace_body(rest))
                    .into_iter()
                    .map(|h| (h.to_owned(), line)),
            );
        } else if let Some(id) = ident_at(rest) {
            found.push((id.to_owned(), line));
        }
    }
    found.extend(super_targets(text, here, root));
    found
}

/// `super::super::x` paths that climb out of the top-level module to the
/// crate root name `x` as the module they import.
fn super_targets(text: &str, here: &[String], root: &Path) -> Vec<(String, usize)> {
    let mut found = Vec::new();
    let bytes = text.as_bytes();
    for (pos, _) in text.match_indices("super::") {
        if pos > 0
            && (bytes[pos - 1].is_ascii_alphanumeric()
                || bytes[pos - 1] == b'_'
                || bytes[pos - 1] == b':')
        {
            continue;
        }
        let mut rest = &text[pos..];
        let mut ups = 0;
        while let Some(r) = rest.strip_prefix("super::") {
            ups += 1;
            rest = r;
        }
        if ups < here.len() {
            continue;
        }
        let line = text[..pos].matches('\n').count() + 1;
        // An inline `mod tests` adds a level the file path does not show,
        // so only names of top-level modules count as reaching the root.
        let heads = if rest.starts_with('{') {
            group_heads(brace_body(rest))
        } else {
            ident_at(rest).into_iter().collect()
        };
        let top = |h: &&&str| root.join(h).is_dir() || root.join(format!("{h}.rs")).is_file();
        found.extend(heads.iter().filter(top).map(|h| ((*h).to_owned(), line)));
    }
    found
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).expect("read src dir") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Every import between two different top-level library modules.
fn arrows(src: &Path) -> Vec<Arrow> {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    let mut out = BTreeSet::new();
    for file in files {
        let rel = file.strip_prefix(src).expect("under src").to_owned();
        let from = module_of(&rel);
        let text = strip(&fs::read_to_string(&file).expect("read source"));
        for (to, line) in targets(&text, &module_path(&rel), src) {
            if to != from && to != "self" && to != "super" {
                let at = format!("{}:{line}", rel.display());
                out.insert(Arrow {
                    from: from.clone(),
                    to,
                    at,
                });
            }
        }
    }
    out.into_iter().collect()
}

fn is_binary_file(module: &str) -> bool {
    module == "main" || module == "lib" || module.starts_with("cli") || module.ends_with("_cmd")
}

/// Why `a` is a backward arrow, or `None` when it points the allowed way.
fn backward(a: &Arrow) -> Option<String> {
    let rank = |m: &str| -> Option<(u8, usize)> {
        LEAVES
            .iter()
            .position(|l| *l == m)
            .map(|p| (0, p))
            .or_else(|| CHAIN.iter().position(|c| *c == m).map(|p| (1, p)))
    };
    if WIRING.contains(&a.from.as_str()) || is_binary_file(&a.from) {
        return None;
    }
    if WIRING.contains(&a.to.as_str()) {
        return Some(format!("{} imports wiring module {}", a.from, a.to));
    }
    let Some(from) = rank(&a.from) else {
        return Some(format!(
            "module {} is in neither LEAVES, CHAIN nor WIRING",
            a.from
        ));
    };
    let Some(to) = rank(&a.to) else {
        return Some(format!(
            "{} imports {}, which is in neither LEAVES, CHAIN nor WIRING",
            a.from, a.to
        ));
    };
    (to >= from).then(|| format!("{} imports {}, listed after it", a.from, a.to))
}

/// Backward arrows under `src`, one line each, naming the import's place.
fn violations(src: &Path) -> Vec<String> {
    arrows(src)
        .iter()
        .filter_map(|a| backward(a).map(|why| format!("{}: {why}", a.at)))
        .collect()
}

#[test]
fn no_backward_arrow_in_the_module_map() {
    let bad = violations(&src_dir());
    let pairs: BTreeSet<&str> = bad.iter().filter_map(|l| l.split(": ").nth(1)).collect();
    assert!(
        bad.is_empty(),
        "{} backward imports ({} module pairs); move the shared type to a leaf or \
         emit through the pipeline instead:\n{}",
        bad.len(),
        pairs.len(),
        bad.join("\n")
    );
}

/// Every top-level module under `src/` has a place in the map, so a new
/// one cannot slip past the rule; every placed stage or leaf exists.
#[test]
fn every_top_level_module_has_a_place() {
    let src = src_dir();
    let mut found = BTreeSet::new();
    for entry in fs::read_dir(&src).expect("read src dir") {
        let name = entry.expect("dir entry").file_name();
        let name = name.to_string_lossy();
        found.insert(name.strip_suffix(".rs").unwrap_or(&name).to_owned());
    }
    for m in &found {
        let placed = LEAVES.contains(&m.as_str())
            || CHAIN.contains(&m.as_str())
            || WIRING.contains(&m.as_str())
            || is_binary_file(m);
        assert!(placed, "src/{m} is not placed in LEAVES, CHAIN or WIRING");
    }
    // Wiring may name a module still to come (`cli`); a leaf or stage may not.
    for m in LEAVES.iter().chain(CHAIN) {
        assert!(
            found.contains(*m),
            "`{m}` is placed but src/ has no such module"
        );
    }
}

/// The checker itself: a backward import written into a scratch tree is
/// found, both as a plain path and inside a grouped `use`.
#[test]
fn a_backward_import_is_caught() {
    let dir = std::env::temp_dir().join(format!("mcpi-imports-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(dir.join("policy")).expect("mkdir");
    fs::create_dir_all(dir.join("audit/sub")).expect("mkdir");
    let write = |p: &str, s: &str| fs::write(dir.join(p), s).expect("write");
    write(
        "policy/mod.rs",
        "use crate::jsonrpc::Message;\nuse crate::pipeline::Phase;\n",
    );
    write(
        "audit/sub/x.rs",
        "// crate::mcp in a comment\nconst S: &str = \"crate::mcp\";\nuse crate::{conn::ConnInfo, proxy::{tls, Upstream}};\n",
    );
    write("config.rs", "fn f() { super::audit::x(); }\n");
    write(
        "jsonrpc.rs",
        "pub fn g() -> crate::policy::Decision { todo!() }\n",
    );
    let bad = violations(&dir);
    let _ = fs::remove_dir_all(&dir);
    assert_eq!(
        bad,
        vec![
            "audit/sub/x.rs:3: audit imports proxy, listed after it".to_owned(),
            "config.rs:1: config imports audit, listed after it".to_owned(),
            "jsonrpc.rs:1: jsonrpc imports policy, listed after it".to_owned(),
        ],
        "{bad:#?}"
    );
}
