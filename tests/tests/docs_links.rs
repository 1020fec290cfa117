//! Every relative link in the Markdown the project ships (README.md,
//! docs/**, deploy/**) resolves: the file or directory exists, and a
//! `#fragment` names a heading of the target page by GitHub's anchor slug.
//! Links are read as CommonMark reads them (pulldown-cmark), so a `[x](y)`
//! inside a code span or block is not a link.

use std::{
    collections::{BTreeSet, HashMap},
    path::{Path, PathBuf},
};

use mcp_interceptor_tests::{TempDir, everything::repo};
use pulldown_cmark::{Event, Options, Parser, Tag, TagEnd};

/// One page's links (destination, line) and its heading anchors.
struct Page {
    links: Vec<(String, usize)>,
    anchors: BTreeSet<String>,
}

/// GitHub's heading anchor: lowercase, letters, digits, `-` and `_` kept,
/// spaces become `-`, everything else dropped; a repeated slug gets `-1`,
/// `-2`, ... in document order.
fn slug(text: &str, seen: &mut HashMap<String, usize>) -> String {
    let base: String = text
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect();
    let n = seen.entry(base.clone()).or_insert(0);
    let s = if *n == 0 {
        base.clone()
    } else {
        format!("{base}-{n}")
    };
    *n += 1;
    s
}

fn read_page(text: &str) -> Page {
    let line_of = |offset: usize| text[..offset].matches('\n').count() + 1;
    let mut page = Page {
        links: Vec::new(),
        anchors: BTreeSet::new(),
    };
    let mut seen = HashMap::new();
    let mut heading: Option<String> = None;
    for (event, range) in Parser::new_ext(text, Options::ENABLE_TABLES).into_offset_iter() {
        match event {
            Event::Start(Tag::Heading { .. }) => heading = Some(String::new()),
            Event::End(TagEnd::Heading(_)) => {
                let h = heading.take().unwrap_or_default();
                page.anchors.insert(slug(&h, &mut seen));
            }
            Event::Text(t) | Event::Code(t) => {
                if let Some(h) = heading.as_mut() {
                    h.push_str(&t);
                }
            }
            Event::Start(Tag::Link { dest_url, .. } | Tag::Image { dest_url, .. }) => {
                page.links
                    .push((dest_url.to_string(), line_of(range.start)));
            }
            _ => {}
        }
    }
    page
}

/// The Markdown files whose links are checked, relative to `root`.
fn pages(root: &Path) -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        let Ok(rd) = std::fs::read_dir(dir) else {
            return;
        };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|x| x == "md") {
                out.push(p);
            }
        }
    }
    let mut out = vec![root.join("README.md")];
    walk(&root.join("docs"), &mut out);
    walk(&root.join("deploy"), &mut out);
    out.retain(|p| p.is_file());
    out.sort();
    out
}

/// Every broken link of every page under `root`, as `file:line: why`.
fn broken_links(root: &Path) -> Vec<String> {
    let files = pages(root);
    let mut read: HashMap<PathBuf, Page> = HashMap::new();
    for f in &files {
        let text = std::fs::read_to_string(f).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        read.insert(f.clone(), read_page(&text));
    }
    let mut broken = Vec::new();
    for f in &files {
        let shown = f.strip_prefix(root).unwrap_or(f).display().to_string();
        for (dest, line) in &read[f].links {
            if dest.contains("://") || dest.starts_with("mailto:") {
                continue;
            }
            let (path, fragment) = match dest.split_once('#') {
                Some((p, frag)) => (p, Some(frag)),
                None => (dest.as_str(), None),
            };
            let target = if path.is_empty() {
                f.clone()
            } else if path.starts_with('/') {
                broken.push(format!("{shown}:{line}: {dest}: absolute path"));
                continue;
            } else {
                normalize(&f.parent().unwrap_or(root).join(path))
            };
            if !target.exists() {
                broken.push(format!("{shown}:{line}: {dest}: no such file"));
                continue;
            }
            let Some(fragment) = fragment else { continue };
            let anchors = match read.get(&target) {
                Some(p) => p.anchors.clone(),
                None if target.extension().is_some_and(|x| x == "md") => {
                    read_page(&std::fs::read_to_string(&target).unwrap_or_default()).anchors
                }
                None => {
                    broken.push(format!(
                        "{shown}:{line}: {dest}: an anchor into a file that is not Markdown"
                    ));
                    continue;
                }
            };
            if !anchors.contains(fragment) {
                broken.push(format!(
                    "{shown}:{line}: {dest}: no heading with anchor #{fragment} (it has: {})",
                    anchors.iter().cloned().collect::<Vec<_>>().join(", ")
                ));
            }
        }
    }
    broken
}

/// `a/b/../c` as `a/c`, without touching the file system.
fn normalize(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            std::path::Component::ParentDir => {
                out.pop();
            }
            std::path::Component::CurDir => {}
            c => out.push(c),
        }
    }
    out
}

#[test]
fn every_relative_link_and_anchor_in_the_docs_resolves() {
    let root = repo();
    let files = pages(&root);
    assert!(
        files.len() > 15,
        "README.md, docs/ and deploy/ pages: {files:?}"
    );
    let broken = broken_links(&root);
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}

#[test]
fn the_readme_stays_short_and_starts_with_the_two_commands() {
    let text = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let lines = text.lines().count();
    assert!(
        lines < 200,
        "README.md has {lines} lines; move detail to docs/"
    );
    let first_block = text
        .split("```")
        .nth(1)
        .expect("README.md opens with a code block");
    assert!(
        first_block.contains("cargo xtask demo") && first_block.contains("cargo xtask test"),
        "{first_block}"
    );
}

#[test]
fn the_checker_finds_missing_files_and_anchors() {
    let dir = TempDir::new("doclinks");
    let root = dir.path();
    std::fs::create_dir_all(root.join("docs")).unwrap();
    std::fs::write(
        root.join("README.md"),
        "# Top\n\n## What `x` does: it, twice\n\n## What `x` does: it, twice\n\n\
         [ok](docs/a.md#section-one) [self](#what-x-does-it-twice-1) [dir](docs/)\n\
         [gone](docs/missing.md) [bad anchor](docs/a.md#section-two)\n\
         `[not a link](nowhere.md)`\n\n```\n[nor this](nowhere.md)\n```\n\
         [web](https://example.com/x#y)\n",
    )
    .unwrap();
    std::fs::write(
        root.join("docs/a.md"),
        "# A\n\n## Section one\n\n[back](../README.md#top) [up](../README.md#nope)\n",
    )
    .unwrap();
    let broken = broken_links(root);
    assert_eq!(broken.len(), 3, "{broken:#?}");
    assert!(broken[0].starts_with("README.md:8: docs/missing.md: no such file"));
    assert!(broken[1].starts_with("README.md:8: docs/a.md#section-two: no heading"));
    assert!(broken[2].starts_with("docs/a.md:5: ../README.md#nope: no heading"));
}

#[test]
fn slugs_are_githubs() {
    let mut seen = HashMap::new();
    for (heading, want) in [
        ("What `audit verify` refuses", "what-audit-verify-refuses"),
        (
            "A request's path through the modules",
            "a-requests-path-through-the-modules",
        ),
        (
            "Reliability: hostile input, faults, load",
            "reliability-hostile-input-faults-load",
        ),
        (
            "Containers, ECS and Kubernetes",
            "containers-ecs-and-kubernetes",
        ),
        (
            "Containers, ECS and Kubernetes",
            "containers-ecs-and-kubernetes-1",
        ),
    ] {
        assert_eq!(slug(heading, &mut seen), want);
    }
}
