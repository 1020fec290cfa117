//! mcp-interceptor(8), from `--help` of every command, for both packages.

use std::fmt::Write as _;

use anyhow::{Result, ensure};

use super::{DESCRIPTION, NAME, Target, root, stdout};
use std::process::Command;

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
fn helps(bin: &Target, path: &[String], out: &mut Vec<(Vec<String>, Help)>) -> Result<()> {
    let text = stdout(bin.command().args(path).arg("--help"))?;
    let help = parse_help(&text);
    ensure!(
        !help.usage.is_empty(),
        "`{} {} --help` printed no Usage line:\n{text}",
        bin.bin.display(),
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
pub(super) fn man_page(bin: &Target, version: &str) -> Result<String> {
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
         The packages install the agent as the systemd unit\n\
         .BR mcp\\-interceptor.service ,\n\
         not enabled, and no live config: the unit starts only once\n\
         .I /etc/mcp\\-interceptor/config.toml\n\
         exists. Write it with\n\
         .B mcp\\-interceptor init\n\
         or by copying the example, check it with\n\
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
The configuration the systemd unit reads, written by the operator (no
package installs it); the unit does not start without it.
.TP
.I /usr/share/mcp\-interceptor/config.example.toml
The shipped example, every key with its default and what it does.
.TP
.I /var/lib/mcp\-interceptor
The agent's state: audit trail (with the outbox of files not yet
uploaded), signing and masking keys, tool pins, approvals. Kept when the
package is removed or purged; see
.I /usr/share/doc/mcp\-interceptor/systemd.md
for deleting it.
.TP
.I /usr/share/mcp\-interceptor/policy
The Cedar schema and example policies
.RB ( "mcp\-interceptor policy test" " runs their cases)."
.TP
.I /usr/share/mcp\-interceptor/athena
Athena table definitions and queries over the audit trail.
.TP
.I mcp\-interceptor.service
The unit (in /lib/systemd/system or /usr/lib/systemd/system); change it
with
.BR "systemctl edit mcp\-interceptor" .
.SH SEE ALSO
.BR systemctl (1),
.BR journalctl (1),
.I /usr/share/doc/mcp\-interceptor/README.md
"#;

/// The page's date: SOURCE_DATE_EPOCH, else the last commit's, else today.
pub(super) fn man_date() -> Result<String> {
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
