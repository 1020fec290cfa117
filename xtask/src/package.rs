//! `cargo xtask package [--dev] [--out DIR]`: the agent as a Debian package.
//!
//! Builds the release binary (`--dev`: packages target/debug's as it is,
//! without building, so tests need no release build), lays out the tree in
//! `DIR/mcp-interceptor_<version>_<arch>/` (default DIR: target/package)
//! and runs `dpkg-deb --root-owner-group --build`. Prints the .deb's path
//! on stdout, progress on stderr.
//!
//! The maintainer scripts never enable or start the agent for the shipped
//! example config: it names port 8080 only because a config without ports
//! is invalid. See [`POSTINST`].

use std::{
    fmt::Write as _,
    fs,
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use anyhow::{Context, Result, bail, ensure};

use crate::{bin_dir, cargo, root, run};

const NAME: &str = "mcp-interceptor";
const MAINTAINER: &str = "mcp-interceptor developers <dev@mcp-interceptor.invalid>";
/// The shipped example, beside the conffile: postinst compares with it.
const EXAMPLE: &str = "usr/share/mcp-interceptor/config.example.toml";

pub fn package(args: &[String]) -> Result<()> {
    let mut dev = false;
    let mut out = root().join("target/package");
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--dev" => dev = true,
            "--out" => out = it.next().context("--out needs a directory")?.into(),
            _ => bail!("cargo xtask package [--dev] [--out DIR]: unknown argument {a:?}"),
        }
    }
    let bin = if dev {
        let b = bin_dir().join(NAME);
        ensure!(
            b.is_file(),
            "{} is missing: `cargo build -p mcp-interceptor` first (--dev packages it as it is)",
            b.display()
        );
        b
    } else {
        // No setup here (it installs the test peers too): build.rs names
        // `cargo xtask setup` if the eBPF toolchain is missing.
        run(cargo().args(["build", "--release", "--locked", "-p", NAME, "--bin", NAME]))?;
        bin_dir().with_file_name("release").join(NAME)
    };
    let deb = build(&bin, &out, dev)?;
    println!("{}", deb.display());
    Ok(())
}

fn build(bin: &Path, out: &Path, dev: bool) -> Result<PathBuf> {
    let repo = root();
    let version = workspace_key(&repo, "version")?;
    let license = workspace_key(&repo, "license")?;
    let shown = stdout(Command::new(bin).arg("--version"))?;
    ensure!(
        shown.trim() == format!("{NAME} {version}"),
        "{} says {shown:?}, the workspace is at {version}",
        bin.display()
    );
    let arch = stdout(Command::new("dpkg").arg("--print-architecture"))?;
    let arch = arch.trim();
    let tree = out.join(format!("{NAME}_{version}_{arch}"));
    if tree.exists() {
        fs::remove_dir_all(&tree).with_context(|| format!("removing {}", tree.display()))?;
    }
    eprintln!("==> laying out {}", tree.display());

    let service = repo.join("deploy/systemd/mcp-interceptor.service");
    ensure!(
        service.is_file(),
        "{} is missing: the package needs the systemd unit",
        service.display()
    );
    let example = repo.join("deploy/config.example.toml");
    install(bin, &tree.join("usr/bin").join(NAME), 0o755)?;
    install(
        &service,
        &tree.join("lib/systemd/system/mcp-interceptor.service"),
        0o644,
    )?;
    install(
        &example,
        &tree.join("etc/mcp-interceptor/config.toml"),
        0o644,
    )?;
    install(&example, &tree.join(EXAMPLE), 0o644)?;
    install_dir(
        &repo.join("deploy/policy"),
        &tree.join("usr/share/mcp-interceptor/policy"),
    )?;
    install_dir(
        &repo.join("deploy/athena"),
        &tree.join("usr/share/mcp-interceptor/athena"),
    )?;
    let doc = tree.join("usr/share/doc").join(NAME);
    install(&repo.join("README.md"), &doc.join("README.md"), 0o644)?;
    write(&doc.join("copyright"), &copyright(&license), 0o644)?;
    let man = tree.join("usr/share/man/man8/mcp-interceptor.8.gz");
    write_gz(&man, &man_page(bin, &version)?)?;

    let debian = tree.join("DEBIAN");
    write(
        &debian.join("conffiles"),
        "/etc/mcp-interceptor/config.toml\n",
        0o644,
    )?;
    for (name, text) in [("postinst", POSTINST), ("prerm", PRERM), ("postrm", POSTRM)] {
        write(&debian.join(name), text, 0o755)?;
    }
    shellcheck(&debian)?;
    let control = format!(
        "Package: {NAME}\n\
         Version: {version}\n\
         Architecture: {arch}\n\
         Maintainer: {MAINTAINER}\n\
         Installed-Size: {}\n\
         Depends: {}\n\
         Section: net\n\
         Priority: optional\n\
         Description: transparent security boundary for MCP servers\n{DESCRIPTION}",
        installed_size_kib(&tree)?,
        depends(bin)?,
    );
    write(&debian.join("control"), &control, 0o644)?;

    let deb = out.join(format!("{NAME}_{version}_{arch}.deb"));
    let mut cmd = Command::new("dpkg-deb");
    cmd.arg("--root-owner-group");
    // A dev binary is ~120 MB of line tables: xz would take most of a test's
    // time budget on two cores.
    if dev {
        cmd.args(["-Zgzip", "-z1"]);
    } else {
        cmd.arg("-Zxz");
    }
    // stdout is the .deb's path alone: dpkg-deb's chatter goes to stderr.
    run(cmd
        .arg("--build")
        .arg(&tree)
        .arg(&deb)
        .stdout(std::io::stderr()))?;
    Ok(deb)
}

/// The control file's extended description (each line starts with a space).
const DESCRIPTION: &str = " \
An agent for hosts that serve MCP (Model Context Protocol) servers. An
 eBPF sk_lookup program hands every new TCP connection for the configured
 MCP ports to the agent's proxy, with no change to clients or servers. The
 proxy binds each request to a verified identity (mTLS, OIDC bearer
 tokens), decides it with Cedar policies (tools, resources, arguments, both
 directions, human approvals), masks sensitive values, and records every
 exchange in a signed, crash-safe Parquet audit trail (optional S3 upload).
 .
 The agent is not enabled at install: configure the MCP ports in
 /etc/mcp-interceptor/config.toml, then systemctl enable --now
 mcp-interceptor.
";

/// `key = "value"` of `[workspace.package]` in the root Cargo.toml.
fn workspace_key(repo: &Path, key: &str) -> Result<String> {
    let path = repo.join("Cargo.toml");
    let text = fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    text.lines()
        .skip_while(|l| l.trim() != "[workspace.package]")
        .skip(1)
        .take_while(|l| !l.trim_start().starts_with('['))
        .find_map(|l| {
            let (k, v) = l.split_once('=')?;
            (k.trim() == key).then(|| v.trim().trim_matches('"').to_string())
        })
        .with_context(|| format!("no {key} in [workspace.package] of {}", path.display()))
}

/// Runs `cmd` and returns its stdout; fails with its stderr.
fn stdout(cmd: &mut Command) -> Result<String> {
    let shown = format!("{cmd:?}").replace('"', "");
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("starting {shown}"))?;
    ensure!(
        out.status.success(),
        "{shown} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr).trim()
    );
    String::from_utf8(out.stdout).with_context(|| format!("{shown} printed non-UTF-8"))
}

fn mkdir_for(to: &Path) -> Result<()> {
    let dir = to.parent().expect("a file in the tree has a parent");
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))
}

fn chmod(path: &Path, mode: u32) -> Result<()> {
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .with_context(|| format!("chmod {mode:o} {}", path.display()))
}

fn install(from: &Path, to: &Path, mode: u32) -> Result<()> {
    mkdir_for(to)?;
    fs::copy(from, to)
        .with_context(|| format!("copying {} to {}", from.display(), to.display()))?;
    chmod(to, mode)
}

fn write(to: &Path, text: &str, mode: u32) -> Result<()> {
    mkdir_for(to)?;
    fs::write(to, text).with_context(|| format!("writing {}", to.display()))?;
    chmod(to, mode)
}

/// Copies the files below `from` (not hidden ones, not editor backups).
fn install_dir(from: &Path, to: &Path) -> Result<()> {
    let entries = fs::read_dir(from).with_context(|| format!("reading {}", from.display()))?;
    let mut any = false;
    for e in entries {
        let e = e?;
        let name = e.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('.') || name.ends_with('~') {
            continue;
        }
        any = true;
        if e.file_type()?.is_dir() {
            install_dir(&e.path(), &to.join(&*name))?;
        } else {
            install(&e.path(), &to.join(&*name), 0o644)?;
        }
    }
    ensure!(any, "{} is empty", from.display());
    Ok(())
}

/// `gzip -9n`: no name or time stamp in the header, so the page is
/// reproducible.
fn write_gz(to: &Path, text: &str) -> Result<()> {
    use std::io::Write;
    mkdir_for(to)?;
    let file = fs::File::create(to).with_context(|| format!("creating {}", to.display()))?;
    let mut gz = Command::new("gzip")
        .args(["-9", "-n", "-c"])
        .stdin(Stdio::piped())
        .stdout(file)
        .spawn()
        .context("starting gzip")?;
    gz.stdin
        .take()
        .expect("piped stdin")
        .write_all(text.as_bytes())
        .context("writing to gzip")?;
    let status = gz.wait()?;
    ensure!(status.success(), "gzip failed: {status}");
    chmod(to, 0o644)
}

/// Installed-Size: KiB of everything but DEBIAN/, each file rounded up.
fn installed_size_kib(tree: &Path) -> Result<u64> {
    fn walk(dir: &Path, total: &mut u64) -> Result<()> {
        for e in fs::read_dir(dir)? {
            let e = e?;
            if e.file_name() == "DEBIAN" {
                continue;
            }
            if e.file_type()?.is_dir() {
                *total += 1;
                walk(&e.path(), total)?;
            } else {
                *total += e.metadata()?.len().div_ceil(1024);
            }
        }
        Ok(())
    }
    let mut total = 0;
    walk(tree, &mut total)?;
    Ok(total)
}

/// Depends: the packages of the libraries `ldd` lists, with the minimum
/// versions dpkg-shlibdeps derives from the symbols used (when dpkg-dev is
/// installed; otherwise unversioned).
fn depends(bin: &Path) -> Result<String> {
    let ldd = stdout(Command::new("ldd").arg(bin))?;
    let mut packages: Vec<String> = Vec::new();
    for line in ldd.lines() {
        // "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)" or
        // "/lib64/ld-linux-x86-64.so.2 (0x...)"; the vDSO has no file.
        let path = line
            .split_once("=>")
            .map_or(line, |(_, p)| p)
            .split_whitespace()
            .next()
            .unwrap_or("");
        if !path.starts_with('/') {
            continue;
        }
        let owner = stdout(Command::new("dpkg").args(["-S", path]))
            .with_context(|| format!("which package ships {path} (from ldd)"))?;
        let pkg = owner
            .split([':', ','])
            .next()
            .unwrap_or_default()
            .trim()
            .to_string();
        if !packages.contains(&pkg) {
            packages.push(pkg);
        }
    }
    ensure!(
        packages.iter().any(|p| p == "libc6"),
        "ldd names no libc6 library:\n{ldd}"
    );
    packages.sort();
    let Some(versioned) = shlibdeps(bin)? else {
        eprintln!("==> dpkg-shlibdeps not found (dpkg-dev): Depends without versions");
        return Ok(packages.join(", "));
    };
    // Each ldd package, as dpkg-shlibdeps versions it.
    let all: Vec<&str> = versioned.split(',').map(str::trim).collect();
    packages
        .iter()
        .map(|p| {
            all.iter()
                .find(|d| d.split_whitespace().next() == Some(p))
                .map(|d| d.to_string())
                .with_context(|| format!("dpkg-shlibdeps gave {versioned:?}, without {p}"))
        })
        .collect::<Result<Vec<_>>>()
        .map(|v| v.join(", "))
}

/// `dpkg-shlibdeps -O`, run where it finds the debian/control it insists on.
fn shlibdeps(bin: &Path) -> Result<Option<String>> {
    if Command::new("dpkg-shlibdeps")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_err()
    {
        return Ok(None);
    }
    let scratch = std::env::temp_dir().join(format!("xtask-shlibdeps-{}", std::process::id()));
    fs::create_dir_all(scratch.join("debian"))?;
    fs::write(
        scratch.join("debian/control"),
        format!("Source: {NAME}\n\nPackage: {NAME}\nArchitecture: any\n"),
    )?;
    let out = stdout(
        Command::new("dpkg-shlibdeps")
            .arg("-O")
            .arg(bin.canonicalize()?)
            .current_dir(&scratch),
    );
    let _ = fs::remove_dir_all(&scratch);
    let out = out?;
    let line = out
        .lines()
        .find_map(|l| l.strip_prefix("shlibs:Depends="))
        .with_context(|| format!("dpkg-shlibdeps printed no shlibs:Depends: {out:?}"))?;
    Ok(Some(line.trim().to_string()))
}

fn copyright(license: &str) -> String {
    format!(
        "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n\
         Upstream-Name: {NAME}\n\
         \n\
         Files: *\n\
         Copyright: the mcp-interceptor developers\n\
         License: {license}\n\
         \n\
         License: {license}\n \
         On Debian systems, the complete text of this license can be found in\n \
         /usr/share/common-licenses/{license}.\n"
    )
}

fn shellcheck(debian: &Path) -> Result<()> {
    if Command::new("shellcheck")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_err()
    {
        eprintln!("==> shellcheck not installed: maintainer scripts not linted");
        return Ok(());
    }
    let mut cmd = Command::new("shellcheck");
    cmd.args(["--shell=sh", "--severity=style"]);
    for s in ["postinst", "prerm", "postrm"] {
        cmd.arg(debian.join(s));
    }
    run(cmd.stdout(std::io::stderr()))
}

// ---- man page ------------------------------------------------------------

/// One `--help` page, split into its parts.
#[derive(Default)]
struct Help {
    /// The text above `Usage:` (blank lines separate paragraphs).
    about: Vec<String>,
    usage: String,
    /// `Commands:`, `Arguments:`, `Options:` and their (term, text) items.
    sections: Vec<(String, Vec<(String, String)>)>,
}

fn parse_help(text: &str) -> Help {
    let mut h = Help::default();
    let mut above_usage = true;
    for line in text.lines() {
        if let Some(u) = line.strip_prefix("Usage: ") {
            h.usage = u.trim().to_string();
            above_usage = false;
            continue;
        }
        if above_usage {
            h.about.push(line.trim().to_string());
            continue;
        }
        let indent = line.len() - line.trim_start().len();
        if line.trim().is_empty() {
            continue;
        }
        if indent == 0 {
            if let Some(name) = line.strip_suffix(':') {
                h.sections.push((name.to_string(), Vec::new()));
            }
            continue;
        }
        let Some((_, items)) = h.sections.last_mut() else {
            continue;
        };
        // clap puts terms at 2 (or 6: a long option without a short one)
        // and the text after two spaces, or on the next lines indented
        // further (long help).
        if indent <= 6 {
            let t = line.trim();
            let (term, text) = t.split_once("  ").unwrap_or((t, ""));
            items.push((term.to_string(), text.trim().to_string()));
        } else if let Some((_, text)) = items.last_mut() {
            if !text.is_empty() {
                text.push(' ');
            }
            text.push_str(line.trim());
        }
    }
    h
}

/// `--help` of `bin` and, depth first, of each subcommand: (path, help).
fn helps(bin: &Path, path: &[String], out: &mut Vec<(Vec<String>, Help)>) -> Result<()> {
    let text = stdout(Command::new(bin).args(path).arg("--help"))?;
    let help = parse_help(&text);
    ensure!(
        !help.usage.is_empty(),
        "`{} {} --help` printed no Usage line:\n{text}",
        bin.display(),
        path.join(" ")
    );
    let subs: Vec<String> = help
        .sections
        .iter()
        .filter(|(s, _)| s == "Commands")
        .flat_map(|(_, items)| items.iter().map(|(t, _)| t.clone()))
        .filter(|t| t != "help")
        .collect();
    out.push((path.to_vec(), help));
    for s in subs {
        let mut p = path.to_vec();
        p.push(s);
        helps(bin, &p, out)?;
    }
    Ok(())
}

/// Text for a roff line: backslashes and hyphens escaped, no leading
/// control character.
fn roff(s: &str) -> String {
    let e = s.replace('\\', "\\e").replace('-', "\\-");
    if e.starts_with(['.', '\'']) {
        format!("\\&{e}")
    } else {
        e
    }
}

/// "Transparent security ..." -> "transparent security ...", for NAME.
fn lower_first(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_lowercase().chain(c).collect())
        .unwrap_or_default()
}

/// Paragraphs of `about` (blank lines between them) as filled text.
fn paragraphs(page: &mut String, about: &[String]) {
    let mut first = true;
    for para in about.split(|l| l.is_empty()).filter(|p| !p.is_empty()) {
        if !first {
            page.push_str(".PP\n");
        }
        first = false;
        for l in para {
            page.push_str(&roff(l));
            page.push('\n');
        }
    }
}

fn items(page: &mut String, items: &[(String, String)]) {
    for (term, text) in items {
        let _ = writeln!(page, ".TP\n\\fB{}\\fR", roff(term));
        if !text.is_empty() {
            let _ = writeln!(page, "{}", roff(text));
        }
    }
}

/// mcp-interceptor(8), from `--help` of every command.
fn man_page(bin: &Path, version: &str) -> Result<String> {
    let mut all = Vec::new();
    helps(bin, &[], &mut all)?;
    let (_, top) = &all[0];
    let summary = top
        .about
        .iter()
        .find(|l| !l.is_empty())
        .cloned()
        .unwrap_or_default();
    let mut page = format!(
        ".TH MCP\\-INTERCEPTOR 8 \"{}\" \"{NAME} {version}\" \"System Administration\"\n\
         .SH NAME\n{NAME} \\- {}\n\
         .SH SYNOPSIS\n.B {NAME}\n.I COMMAND\n.RI [ OPTIONS ]\n\
         .SH DESCRIPTION\n",
        man_date()?,
        roff(&lower_first(&summary)),
    );
    // The control file's first paragraph says more than the one-line about.
    let intro: Vec<String> = DESCRIPTION
        .lines()
        .map(|l| l.trim().to_string())
        .take_while(|l| l != ".")
        .collect();
    paragraphs(&mut page, &intro);
    page.push_str(
        ".PP\n\
         The package installs the agent as the systemd unit\n\
         .BR mcp\\-interceptor.service ,\n\
         not enabled: name the MCP ports in\n\
         .IR /etc/mcp\\-interceptor/config.toml ,\n\
         check it with\n\
         .B mcp\\-interceptor check\\-config\n\
         and\n\
         .BR \"mcp\\-interceptor doctor\" ,\n\
         then run\n\
         .BR \"systemctl enable \\-\\-now mcp\\-interceptor\" .\n",
    );
    for (name, list) in &top.sections {
        if name != "Commands" {
            let _ = writeln!(page, ".SH {}", roff(&name.to_uppercase()));
            items(&mut page, list);
        }
    }
    page.push_str(".SH COMMANDS\n");
    for (path, help) in &all[1..] {
        let _ = writeln!(
            page,
            ".SS \"{}\"",
            roff(&format!("{NAME} {}", path.join(" ")))
        );
        paragraphs(&mut page, &help.about);
        let _ = writeln!(page, ".PP\nUsage: \\fB{}\\fR", roff(&help.usage));
        for (name, list) in &help.sections {
            // Every command has -h; the OPTIONS section says so once.
            let list: Vec<_> = list
                .iter()
                .filter(|(t, _)| t != "-h, --help")
                .cloned()
                .collect();
            if !list.is_empty() {
                let _ = writeln!(page, ".PP\n\\fI{}:\\fR", roff(name));
                items(&mut page, &list);
            }
        }
    }
    page.push_str(FILES);
    Ok(page)
}

const FILES: &str = r#".SH FILES
.TP
.I /etc/mcp\-interceptor/config.toml
The configuration read by the systemd unit (a conffile).
.TP
.I /usr/share/mcp\-interceptor/config.example.toml
The shipped example, every key with its default and what it does.
.TP
.I /var/lib/mcp\-interceptor
The agent's state: audit trail, signing and masking keys, tool pins,
approvals. Removed when the package is purged.
.TP
.I /usr/share/mcp\-interceptor/policy
The Cedar schema and example policies
.RB ( "mcp\-interceptor policy test" " runs their cases)."
.TP
.I /usr/share/mcp\-interceptor/athena
Athena table definitions and queries over the audit trail.
.TP
.I /lib/systemd/system/mcp\-interceptor.service
The unit; change it with
.BR "systemctl edit mcp\-interceptor" .
.SH SEE ALSO
.BR systemctl (1),
.BR journalctl (1),
.I /usr/share/doc/mcp\-interceptor/README.md
"#;

/// The page's date: SOURCE_DATE_EPOCH, else the last commit's, else today.
fn man_date() -> Result<String> {
    let mut date = Command::new("date");
    date.args(["-u", "+%Y-%m-%d"]);
    if let Ok(epoch) = std::env::var("SOURCE_DATE_EPOCH") {
        date.arg(format!("--date=@{epoch}"));
    } else if let Ok(d) = stdout(Command::new("git").args([
        "-C",
        &root().display().to_string(),
        "log",
        "-1",
        "--format=%cs",
    ])) && !d.trim().is_empty()
    {
        return Ok(d.trim().to_string());
    }
    Ok(stdout(&mut date)?.trim().to_string())
}

// ---- maintainer scripts --------------------------------------------------

/// Creates the state directory, reloads systemd, and starts the agent only
/// when the config names a port and is not the shipped example: that one
/// has a `[[intercept.ports]]` entry (port 8080) because a config without
/// ports does not validate, and starting it would put a fail-closed
/// boundary on port 8080 of whatever host installs the package.
const POSTINST: &str = r#"#!/bin/sh
# mcp-interceptor postinst: state directory, systemd reload. The agent is
# enabled and started only on a first install whose config already names
# MCP ports (not the shipped example); an upgrade restarts it if it runs.
set -e

CONFIG=/etc/mcp-interceptor/config.toml
EXAMPLE=/usr/share/mcp-interceptor/config.example.toml
STATE=/var/lib/mcp-interceptor
UNIT=mcp-interceptor.service

systemd_running() {
    [ -d /run/systemd/system ]
}

# An uncommented [[intercept.ports]] table, in a config that is not the
# shipped example unchanged (its port 8080 is only an illustration).
configured() {
    [ -f "$CONFIG" ] &&
        grep -Eq '^[[:space:]]*\[\[[[:space:]]*intercept\.ports[[:space:]]*\]\]' "$CONFIG" &&
        ! cmp -s "$CONFIG" "$EXAMPLE"
}

how_to_start() {
    cat <<EOF
mcp-interceptor: the agent is installed but not started. To protect MCP servers:
  1. name their ports in $CONFIG ([[intercept.ports]]; every key is
     explained in $EXAMPLE),
  2. check it: mcp-interceptor check-config $CONFIG
               mcp-interceptor doctor --config $CONFIG
  3. start it: systemctl enable --now mcp-interceptor
     (without systemd: mcp-interceptor run --config $CONFIG)
EOF
}

case "$1" in
configure)
    # Audit trail, signing and masking keys, tool pins, approvals: root only.
    mkdir -p "$STATE"
    chown root:root "$STATE"
    chmod 0700 "$STATE"
    if systemd_running; then
        systemctl daemon-reload || true
    fi
    if ! configured; then
        how_to_start
    elif ! /usr/bin/mcp-interceptor check-config "$CONFIG" >/dev/null; then
        echo "mcp-interceptor: $CONFIG does not validate (above): the agent is not started" >&2
    elif ! systemd_running; then
        echo "mcp-interceptor: systemd is not running; start the agent with: mcp-interceptor run --config $CONFIG"
    elif [ -z "$2" ]; then
        systemctl enable --now "$UNIT" ||
            echo "mcp-interceptor: the agent did not start: journalctl -u mcp-interceptor says why" >&2
    elif systemctl is-enabled --quiet "$UNIT"; then
        # An upgrade: the running agent moves to the new binary.
        systemctl try-restart "$UNIT" ||
            echo "mcp-interceptor: the agent did not restart: journalctl -u mcp-interceptor says why" >&2
    else
        how_to_start
    fi
    ;;
abort-upgrade | abort-remove | abort-deconfigure) ;;
*)
    echo "postinst called with unknown argument '$1'" >&2
    exit 1
    ;;
esac
exit 0
"#;

/// Stops the agent on removal and removes its pinned steering: with
/// `fail = "closed"` the pinned program would otherwise keep refusing
/// connections to the MCP ports after the package is gone.
const PRERM: &str = r#"#!/bin/sh
# mcp-interceptor prerm: on removal, stop and disable the agent and remove
# its pinned eBPF program (fail = "closed" would keep refusing connections
# to the MCP ports without it). An upgrade leaves both: postinst restarts
# the agent on the new binary.
set -e

CONFIG=/etc/mcp-interceptor/config.toml
UNIT=mcp-interceptor.service

case "$1" in
remove | deconfigure)
    if [ -d /run/systemd/system ]; then
        systemctl stop "$UNIT" || true
    fi
    if command -v systemctl >/dev/null 2>&1; then
        systemctl disable --quiet "$UNIT" || true
    fi
    if [ -f "$CONFIG" ]; then
        if /usr/bin/mcp-interceptor status --config "$CONFIG" 2>/dev/null |
            grep -q '"agent_alive": true'; then
            echo "mcp-interceptor: an agent started outside systemd still runs: its steering stays pinned until it is stopped and the pin_dir removed" >&2
        else
            /usr/bin/mcp-interceptor detach --config "$CONFIG" >/dev/null ||
                echo "mcp-interceptor: could not remove the pinned steering (above)" >&2
        fi
    fi
    ;;
upgrade | failed-upgrade) ;;
*)
    echo "prerm called with unknown argument '$1'" >&2
    exit 1
    ;;
esac
exit 0
"#;

/// Purge removes the state (audit trail included) and the logs.
const POSTRM: &str = r#"#!/bin/sh
# mcp-interceptor postrm: purge removes the agent's state (audit trail,
# keys, tool pins, approvals) and its logs; remove keeps them.
set -e

case "$1" in
purge)
    rm -rf /var/lib/mcp-interceptor /var/log/mcp-interceptor
    if [ -d /run/systemd/system ]; then
        systemctl daemon-reload || true
    fi
    ;;
remove)
    if [ -d /run/systemd/system ]; then
        systemctl daemon-reload || true
    fi
    ;;
upgrade | failed-upgrade | abort-install | abort-upgrade | disappear) ;;
*)
    echo "postrm called with unknown argument '$1'" >&2
    exit 1
    ;;
esac
exit 0
"#;
