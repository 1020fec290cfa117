//! The report as Markdown. Values from the audit are escaped: a subject or
//! tool name cannot add markup, links or HTML to the document.

use std::fmt::Write as _;

use crate::escape;

use super::{
    fmt_time,
    nist::{Control, NistReport, Sample, Verify},
};

/// Markdown text: `|`, `<`, `>`, `&`, backslashes and emphasis characters
/// escaped, newlines flattened, other controls and bidi overrides written
/// as escapes (see `crate::escape`).
pub fn md(s: &str) -> String {
    super::entities(s, |out, c| match c {
        '\n' | '\r' => out.push(' '),
        '\\' | '|' | '`' | '*' | '_' | '[' | ']' | '#' | '~' => {
            out.push('\\');
            out.push(c);
        }
        // Controls and bidi overrides in their escaped form, its
        // backslash escaped so the document shows it as written.
        c if escape::is_unsafe(c) => {
            out.push('\\');
            out.push_str(&escape::text(c.encode_utf8(&mut [0; 4])));
        }
        c => out.push(c),
    })
}

fn md_table(out: &mut String, head: &[&str], rows: &[Vec<String>]) {
    let _ = writeln!(out, "| {} |", head.join(" | "));
    let _ = writeln!(out, "|{}", " --- |".repeat(head.len()));
    for r in rows {
        let cells: Vec<String> = r.iter().map(|c| md(c)).collect();
        let _ = writeln!(out, "| {} |", cells.join(" | "));
    }
    out.push('\n');
}

/// The verify line shown at the top of both renderings.
pub fn verify_line(v: &Verify) -> String {
    match v {
        Verify::Intact(r) => format!(
            "ok: {} host(s), {} manifest entries, {} files, {} rows; chain and signatures intact",
            r.hosts.len(),
            r.entries,
            r.files,
            r.rows
        ),
        Verify::Broken(b) => format!("FAIL: {b}"),
    }
}

/// Renders the report as Markdown.
pub fn markdown(r: &NistReport) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "# NIST SP 800-53 evidence: MCP interceptor audit trail\n"
    );
    let summary = vec![
        vec![
            "Period (UTC)".into(),
            format!(
                "{} to {} (end excluded)",
                fmt_time(r.period.from_us),
                fmt_time(r.period.to_us)
            ),
        ],
        vec!["Audit directory".into(), r.dir.clone()],
        vec!["Generated".into(), fmt_time(r.generated_us)],
        vec!["Rows in the period".into(), r.rows.to_string()],
        vec![
            "Files read / outside the period (not opened)".into(),
            format!("{} / {}", r.sources.files_read, r.sources.files_skipped),
        ],
        vec!["audit verify".into(), verify_line(&r.verify)],
    ];
    md_table(&mut o, &["item", "value"], &summary);
    if r.sources.pending_wal_segments > 0 {
        let _ = writeln!(
            o,
            "> {} WAL segment(s) are not yet in signed files; their rows are not counted.\n",
            r.sources.pending_wal_segments
        );
    }
    let _ = writeln!(
        o,
        "| control | title | status | found |\n| --- | --- | --- | --- |"
    );
    for c in &r.controls {
        let _ = writeln!(
            o,
            "| {} | {} | {} | {} |",
            c.id,
            c.title,
            c.status.label(),
            md(&c.verdict)
        );
    }
    o.push('\n');
    gaps(&mut o, r);
    for c in &r.controls {
        control(&mut o, c);
    }
    o
}

/// One control's section: its status, rule, figures, tables and samples.
fn control(o: &mut String, c: &Control) {
    let _ = writeln!(o, "## {} {}\n", c.id, c.title);
    let _ = writeln!(o, "**Status:** {}\n", c.status.label());
    let _ = writeln!(o, "**Rule:** {}\n", md(c.rule));
    let _ = writeln!(o, "**Found:** {}\n", md(&c.verdict));
    let _ = writeln!(o, "**What it asks.** {}\n", c.asks);
    let _ = writeln!(o, "**How the agent meets it.** {}\n", c.how);
    let facts: Vec<Vec<String>> = c
        .facts
        .iter()
        .map(|(k, v)| vec![k.clone(), v.clone()])
        .collect();
    md_table(o, &["measure", "value"], &facts);
    for t in &c.tables {
        let _ = writeln!(o, "**{}**\n", md(&t.caption));
        if t.rows.is_empty() {
            o.push_str("(none in the period)\n\n");
        } else {
            md_table(o, &t.head, &t.rows);
        }
    }
    let _ = writeln!(o, "**Evidence: {}**\n", md(&c.samples_caption));
    if c.samples.is_empty() {
        o.push_str("(no rows)\n\n");
    } else {
        let rows: Vec<Vec<String>> = c.samples.iter().map(sample_cells).collect();
        md_table(o, &SAMPLE_HEAD, &rows);
    }
    if let Some(n) = &c.note {
        let _ = writeln!(o, "_Note:_ {n}\n");
    }
}

/// The Gaps section: every control short of met, each gap with its
/// cause, the rows or setting concerned, the fix, and some of the rows.
fn gaps(o: &mut String, r: &NistReport) {
    o.push_str("## Gaps\n\n");
    let short: Vec<&Control> = r.short_of_met().collect();
    if short.is_empty() {
        o.push_str("Every control is met.\n\n");
        return;
    }
    for c in short {
        let _ = writeln!(o, "### {} {}: {}\n", c.id, c.title, c.status.label());
        for g in &c.gaps {
            let _ = writeln!(o, "- **Gap:** {}", md(&g.cause));
            let _ = writeln!(o, "  - **Which:** {}", md(&g.which));
            let _ = writeln!(o, "  - **Fix:** {}", md(&g.fix));
        }
        o.push('\n');
        let rows = gap_rows(c);
        if !rows.is_empty() {
            let _ = writeln!(o, "Rows that fall short (first of each gap):\n");
            md_table(o, &GAP_ROW_HEAD, &rows);
        }
    }
}

/// The column headings of the tables of rows that fall short.
pub const GAP_ROW_HEAD: [&str; 6] = [
    "event_time",
    "event_id",
    "kind",
    "method",
    "subject",
    "tool_name",
];

/// The cells of the rows that fall short of control `c`, gap by gap.
pub fn gap_rows(c: &Control) -> Vec<Vec<String>> {
    c.gaps
        .iter()
        .flat_map(|g| g.rows.iter().map(|s| cells(s, &GAP_ROW_HEAD)))
        .collect()
}

/// The column headings of sample tables.
pub const SAMPLE_HEAD: [&str; 6] = [
    "event_time",
    "kind",
    "subject",
    "tool_name",
    "decision",
    "rule_ids",
];

/// The cells of a sample table row.
pub fn sample_cells(s: &Sample) -> Vec<String> {
    cells(s, &SAMPLE_HEAD)
}

/// The cells of `s` under the column headings `head`.
fn cells(s: &Sample, head: &[&str]) -> Vec<String> {
    head.iter()
        .map(|h| match *h {
            "event_time" => &s.event_time,
            "event_id" => &s.event_id,
            "kind" => &s.kind,
            "method" => &s.method,
            "subject" => &s.subject,
            "tool_name" => &s.tool_name,
            "decision" => &s.decision,
            "rule_ids" => &s.rule_ids,
            other => unreachable!("no sample column {other}"),
        })
        .cloned()
        .collect()
}
