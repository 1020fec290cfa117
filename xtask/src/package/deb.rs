//! The .deb: control (Depends from the binary's dynamic section), md5sums,
//! changelog, and maintainer scripts that leave systemd to Debian's
//! helpers (deb-systemd-helper, deb-systemd-invoke), as
//! `dh_installsystemd --no-enable --no-start` would write them.

use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Result, ensure};

use super::{
    Common, DESCRIPTION, Generated, MAINTAINER_MAIL, MAINTAINER_NAME, NAME, Target, man::man_date,
    stdout, workspace_key, write, write_gz,
};
use crate::run;

/// Lays out `stage` and builds `out/<name>_<version>_<arch>.deb`.
pub fn build(
    t: &Target,
    generated: &Generated,
    stage: &Path,
    out: &Path,
    dev: bool,
) -> Result<PathBuf> {
    let version = generated.version.as_str();
    Common {
        target: t,
        generated,
        unit_dir: "lib/systemd/system",
        zsh_dir: "usr/share/zsh/vendor-completions",
    }
    .lay_out(stage)?;
    let doc = stage.join("usr/share/doc").join(NAME);
    let year = man_date()?.chars().take(4).collect::<String>();
    write(
        &doc.join("copyright"),
        &copyright(&workspace_key("license")?, &year),
        0o644,
    )?;
    // A native package (no Debian revision): changelog.gz, not
    // changelog.Debian.gz.
    write_gz(&doc.join("changelog.gz"), &changelog(version)?)?;

    let debian = stage.join("DEBIAN");
    for (name, text) in [("postinst", POSTINST), ("prerm", PRERM), ("postrm", POSTRM)] {
        write(&debian.join(name), text, 0o755)?;
    }
    shellcheck(&debian)?;
    write(&debian.join("md5sums"), &md5sums(stage)?, 0o644)?;
    let control = format!(
        "Package: {NAME}\n\
         Version: {version}\n\
         Architecture: {}\n\
         Maintainer: {MAINTAINER_NAME} <{MAINTAINER_MAIL}>\n\
         Installed-Size: {}\n\
         Depends: {}\n\
         Section: net\n\
         Priority: optional\n\
         Description: transparent security boundary for MCP servers\n{DESCRIPTION}",
        t.arch.deb(),
        installed_size_kib(stage)?,
        depends(t)?,
    );
    write(&debian.join("control"), &control, 0o644)?;

    let deb = out.join(format!("{NAME}_{version}_{}.deb", t.arch.deb()));
    let mut cmd = Command::new("dpkg-deb");
    cmd.arg("--root-owner-group");
    // A dev binary is ~120 MB of line tables: xz would take most of a test's
    // time budget on two cores.
    if dev {
        cmd.args(["-Zgzip", "-z1"]);
    } else {
        cmd.arg("-Zxz");
    }
    // stdout is the packages' paths alone: dpkg-deb's chatter goes to stderr.
    run(cmd
        .arg("--build")
        .arg(stage)
        .arg(&deb)
        .stdout(std::io::stderr()))?;
    Ok(deb)
}

/// Depends from the binary's NEEDED libraries, each at the newest symbol
/// version the binary uses (readelf works for any architecture, where
/// dpkg-shlibdeps needs the target's libc6 installed).
fn depends(t: &Target) -> Result<String> {
    let readelf = t.arch.tool("readelf");
    let dynamic = stdout(Command::new(&readelf).args(["-d", "-W"]).arg(&t.bin))?;
    let symbols = stdout(
        Command::new(&readelf)
            .args(["--dyn-syms", "-W"])
            .arg(&t.bin),
    )?;
    let mut deps: Vec<String> = Vec::new();
    for lib in dynamic
        .lines()
        .filter(|l| l.contains("(NEEDED)"))
        .filter_map(|l| l.split_once("[")?.1.split_once(']').map(|(n, _)| n))
    {
        let (pkg, tag) = match lib {
            "libc.so.6" | "libm.so.6" | "libdl.so.2" | "libpthread.so.0" | "librt.so.1"
            | "libutil.so.1" => ("libc6", "GLIBC_"),
            l if l.starts_with("ld-linux") => ("libc6", "GLIBC_"),
            "libgcc_s.so.1" => ("libgcc-s1", "GCC_"),
            other => anyhow::bail!("{} needs {other}: which package ships it?", t.bin.display()),
        };
        let dep = match newest_version(&symbols, tag) {
            Some(v) => format!("{pkg} (>= {v})"),
            None => pkg.to_string(),
        };
        if !deps
            .iter()
            .any(|d| d.split_whitespace().next() == Some(pkg))
        {
            deps.push(dep);
        }
    }
    ensure!(
        deps.iter().any(|d| d.starts_with("libc6")),
        "readelf shows no libc among the NEEDED libraries:\n{dynamic}"
    );
    deps.sort();
    Ok(deps.join(", "))
}

/// The highest `TAG<version>` among undefined symbols (`memcpy@GLIBC_2.14`).
fn newest_version(symbols: &str, tag: &str) -> Option<String> {
    symbols
        .lines()
        .filter(|l| l.contains(" UND "))
        .filter_map(|l| {
            l.split_once(&format!("@{tag}"))?
                .1
                .split_whitespace()
                .next()
        })
        .map(|v| v.trim_start_matches('@').to_string())
        .filter_map(|v| {
            let key: Vec<u32> = v
                .split('.')
                .map(|n| n.parse().ok())
                .collect::<Option<_>>()?;
            Some((key, v))
        })
        .max()
        .map(|(_, v)| v)
}

/// DEBIAN/md5sums: `md5sum` of every file below the root, relative paths.
fn md5sums(stage: &Path) -> Result<String> {
    fn walk(dir: &Path, root: &Path, out: &mut Vec<String>) -> Result<()> {
        for e in fs::read_dir(dir)? {
            let e = e?;
            let rel = e.path().strip_prefix(root)?.to_path_buf();
            if rel.starts_with("DEBIAN") {
                continue;
            }
            if e.file_type()?.is_dir() {
                walk(&e.path(), root, out)?;
            } else {
                out.push(rel.display().to_string());
            }
        }
        Ok(())
    }
    let mut files = Vec::new();
    walk(stage, stage, &mut files)?;
    files.sort();
    let mut cmd = Command::new("md5sum");
    cmd.arg("--").args(&files).current_dir(stage);
    stdout(&mut cmd)
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

/// One entry: this version, dated like the man page (the last commit).
fn changelog(version: &str) -> Result<String> {
    let day = man_date()?;
    let date = stdout(Command::new("date").args(["-u", "-R", "--date", &day]))?;
    Ok(format!(
        "{NAME} ({version}) unstable; urgency=medium\n\n  \
         * Release {version}; see /usr/share/doc/{NAME}/README.md.\n\n \
         -- {MAINTAINER_NAME} <{MAINTAINER_MAIL}>  {}\n",
        date.trim()
    ))
}

fn copyright(license: &str, year: &str) -> String {
    format!(
        "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n\
         Upstream-Name: {NAME}\n\
         \n\
         Files: *\n\
         Copyright: {year} {MAINTAINER_NAME}\n\
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
        .stdout(std::process::Stdio::null())
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

/// What `dh_installsystemd --no-enable --no-start` writes (unmask, keep an
/// operator's enablement across upgrades, restart a running agent on
/// upgrade), plus the state directory and how to start.
const POSTINST: &str = include_str!("postinst.sh");

/// Stops the agent on removal and removes its pinned steering: with
/// `fail = "closed"` the pinned program would otherwise keep refusing
/// connections to the MCP ports after the package is gone.
const PRERM: &str = include_str!("prerm.sh");

/// Purge keeps the audit trail and keys unless asked (see the script).
const POSTRM: &str = include_str!("postrm.sh");
