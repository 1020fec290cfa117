//! `mcp-interceptor completions <SHELL>`: the shell completion script,
//! generated from the command tree itself so it never lags behind it. The
//! packages install its output at each distribution's completion path.

use std::{io::Write, process::ExitCode};

use clap::CommandFactory;
use clap_complete::Shell;

/// Writes the completion script for `shell` to stdout.
pub fn run(shell: Shell) -> anyhow::Result<ExitCode> {
    let mut cmd = super::Cli::command();
    let name = cmd.get_name().to_string();
    // Into memory first: clap_complete panics on a failed write.
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut cmd, &name, &mut script);
    if shell == Shell::Bash {
        script = bash_hyphen_fix(&script, &name).into_bytes();
    }
    let mut out = std::io::stdout().lock();
    match out.write_all(&script).and_then(|()| out.flush()) {
        // `| head`: the reader had enough.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(ExitCode::SUCCESS),
        r => r.map(|()| ExitCode::SUCCESS).map_err(Into::into),
    }
}

/// clap_complete's bash script spells a hyphenated name two ways: the loop
/// over the words sets `mcp__interceptor__subcmd__doctor`, the case arms
/// test `mcp__subcmd__interceptor__subcmd__doctor`, so nothing past the
/// first word completes (clap-rs/clap#6421, open). The arms are rewritten
/// to the loop's spelling.
fn bash_hyphen_fix(script: &[u8], name: &str) -> String {
    let text = String::from_utf8_lossy(script);
    let loop_spelling = name.replace('-', "__");
    let arm_spelling = name.replace('-', "__subcmd__");
    text.replace(&arm_spelling, &loop_spelling)
}
