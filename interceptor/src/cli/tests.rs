//! The command tree's conventions, checked on clap's own description of
//! it (what `--help` prints is built from the same), and the one-cause
//! error line.

use clap::{Command, CommandFactory};
use interceptor::config::DEFAULT_PATH;

use super::{Cli, error_message};

/// Leaf commands that read no config: `completions` prints a script,
/// `policy keygen` makes a key pair (it runs where bundles are signed, not
/// on agents).
const NO_CONFIG: &[&str] = &["completions", "keygen"];

/// Leaf commands that report nothing to parse: `run` is the agent (its
/// log is JSON with `[log] format = "json"`), `init` writes a config
/// (TOML), `completions` prints a shell script.
const NOT_REPORTING: &[&str] = &["run", "init", "completions"];

/// Every command with its path (`audit verify`), parents included.
fn walk(cmd: &Command, path: &str, out: &mut Vec<(String, Command)>) {
    for sub in cmd.get_subcommands() {
        let p = if path.is_empty() {
            sub.get_name().to_string()
        } else {
            format!("{path} {}", sub.get_name())
        };
        out.push((p.clone(), sub.clone()));
        walk(sub, &p, out);
    }
}

/// What is wrong with one command, by the rules in `cli/mod.rs`.
fn problems(path: &str, cmd: &Command) -> Vec<String> {
    let mut out = Vec::new();
    let leaf = !cmd.has_subcommands();
    let name = cmd.get_name();
    if cmd
        .get_about()
        .is_none_or(|a| a.to_string().trim().is_empty())
    {
        out.push(format!("{path}: no help text"));
    }
    let after = cmd.get_after_help().map(ToString::to_string);
    if !after.is_some_and(|a| a.contains("EXIT STATUS:")) {
        out.push(format!("{path}: no EXIT STATUS section"));
    }
    for arg in cmd.get_arguments() {
        let help = arg
            .get_help()
            .or(arg.get_long_help())
            .map(ToString::to_string);
        if help.is_none_or(|h| h.trim().is_empty()) {
            out.push(format!("{path}: {} has no help", arg.get_id()));
        }
    }
    if !leaf {
        return out;
    }
    let config = cmd.get_arguments().find(|a| a.get_long() == Some("config"));
    match config {
        None if !NO_CONFIG.contains(&name) => out.push(format!("{path}: no -c/--config")),
        Some(c) => {
            let default: Vec<String> = c
                .get_default_values()
                .iter()
                .map(|v| v.to_string_lossy().into_owned())
                .collect();
            if c.get_short() != Some('c') || default != [DEFAULT_PATH] {
                out.push(format!(
                    "{path}: --config is not `-c/--config` with default {DEFAULT_PATH}"
                ));
            }
        }
        None => {}
    }
    let json = cmd.get_arguments().any(|a| a.get_long() == Some("json"));
    if !json && !NOT_REPORTING.contains(&name) {
        out.push(format!("{path}: reports without --json"));
    }
    // An audit directory is `--dir`, whatever else the command calls it.
    for a in cmd.get_arguments() {
        if let Some(l) = a.get_long()
            && l != "dir"
            && (l.ends_with("-dir") && l.contains("audit") || l == "directory")
        {
            out.push(format!("{path}: --{l} where the convention is --dir"));
        }
    }
    out
}

#[test]
fn every_command_has_help_exit_status_config_and_json() {
    let root = Cli::command();
    root.clone().debug_assert();
    let mut all = Vec::new();
    walk(&root, "", &mut all);
    assert!(all.len() > 20, "the walk found {} commands", all.len());
    let mut failures = problems("mcp-interceptor", &root)
        .into_iter()
        .filter(|p| !p.contains("no -c/--config") && !p.contains("without --json"))
        .collect::<Vec<_>>();
    for (path, cmd) in &all {
        let found = problems(path, cmd);
        failures.extend(found);
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn the_rules_catch_a_command_that_breaks_them() {
    // The same rules on a command made to break each one.
    let bad = Command::new("bad")
        .about("a reporting command")
        .arg(clap::Arg::new("x").long("x"))
        .arg(
            clap::Arg::new("config")
                .long("config")
                .default_value("/tmp/c.toml"),
        );
    let found = problems("bad", &bad).join("\n");
    for want in [
        "no EXIT STATUS",
        "x has no help",
        "--config is not `-c/--config`",
        "without --json",
    ] {
        assert!(found.contains(want), "{want} not caught:\n{found}");
    }
    let good = Command::new("good")
        .about("a reporting command")
        .after_help(super::exit::PLAIN)
        .arg(
            clap::Arg::new("config")
                .long("config")
                .short('c')
                .help("The config file.")
                .default_value(DEFAULT_PATH),
        )
        .arg(
            clap::Arg::new("json")
                .long("json")
                .help("JSON.")
                .action(clap::ArgAction::SetTrue),
        );
    assert_eq!(problems("good", &good), Vec::<String>::new());
}

/// An error whose message names its source, which it also returns from
/// `source()`: the shape of most library errors (`thiserror`'s
/// `#[error("... {source}")]`).
#[derive(Debug)]
struct Read(std::io::Error);

impl std::fmt::Display for Read {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "cannot read /etc/x.toml: {}", self.0)
    }
}

impl std::error::Error for Read {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.0)
    }
}

#[test]
fn an_error_says_its_cause_once() {
    let io = std::io::Error::new(std::io::ErrorKind::NotFound, "No such file or directory");
    let e = anyhow::Error::new(Read(io)).context("loading the config");
    let msg = error_message(&e);
    assert_eq!(
        msg,
        "loading the config: cannot read /etc/x.toml: No such file or directory"
    );
    // What anyhow's own `{:#}` said.
    assert_eq!(format!("{e:#}").matches("No such file").count(), 2);
    // A cause not yet in the message is kept.
    let plain = anyhow::anyhow!("disk full").context("writing the WAL");
    assert_eq!(error_message(&plain), "writing the WAL: disk full");
}
