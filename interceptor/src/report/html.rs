//! The report as one self-contained HTML page: inline CSS, no script, no
//! external resource (it opens the same offline, attached to a ticket or in
//! a browser that blocks everything). Every value is escaped: audit rows
//! hold what callers sent (subjects, tool names), which must not become
//! markup.

use std::fmt::Write as _;

use super::{
    fmt_time,
    markdown::{GAP_ROW_HEAD, SAMPLE_HEAD, gap_rows, sample_cells, verify_line},
    nist::{Control, NistReport, Status, Table, Verify},
};

/// HTML text and attribute escaping.
pub fn esc(s: &str) -> String {
    super::entities(s, |out, c| match c {
        '"' => out.push_str("&quot;"),
        '\'' => out.push_str("&#39;"),
        c if crate::escape::is_unsafe(c) && c != '\n' && c != '\t' => out.push('\u{fffd}'),
        c => out.push(c),
    })
}

/// Text of our own with `code` spans (backticks), escaped.
fn prose(s: &str) -> String {
    let mut out = String::new();
    for (i, part) in s.split('`').enumerate() {
        if i % 2 == 1 {
            let _ = write!(out, "<code>{}</code>", esc(part));
        } else {
            out.push_str(&esc(part));
        }
    }
    out
}

const CSS: &str = r#"
*{box-sizing:border-box}
body{margin:0;background:#eef1f5;color:#1c2733;font:14px/1.5 "DejaVu Sans","Liberation Sans",Helvetica,Arial,sans-serif}
header{background:#14324f;color:#fff;padding:28px 40px 24px}
header h1{margin:0 0 4px;font-size:24px;font-weight:600}
header p{margin:0;color:#c4d3e3}
header code{background:rgba(255,255,255,.14);color:#fff}
main{max-width:1200px;margin:0 auto;padding:24px 40px 48px}
.cards{display:flex;flex-wrap:wrap;gap:14px;margin-bottom:22px}
.card{flex:1 1 200px;background:#fff;border:1px solid #d5dde6;border-radius:8px;padding:12px 16px}
.card .k{color:#5b6b7c;font-size:12px;text-transform:uppercase;letter-spacing:.04em}
.card .v{font-size:20px;font-weight:600;margin-top:2px;overflow-wrap:anywhere}
.card.ok{border-left:6px solid #2e8540}.card.bad{border-left:6px solid #c0392b}
.card .small{font-size:13px;font-weight:400}
section{background:#fff;border:1px solid #d5dde6;border-radius:8px;padding:18px 22px;margin:0 0 18px}
h2{margin:0 0 10px;font-size:19px;display:flex;align-items:center;gap:10px}
h2 .id{background:#14324f;color:#fff;border-radius:4px;padding:1px 8px;font-size:15px}
h3{font-size:14px;margin:16px 0 6px;color:#33475b}
.badge{border-radius:10px;padding:1px 10px;font-size:12px;font-weight:600;text-transform:uppercase}
.s-met{background:#dff3e4;color:#1e6b30}.s-partial{background:#fdf1d6;color:#8a5a00}
.s-not-met{background:#fadbd8;color:#922b21}.s-not-assessed{background:#e3e8ee;color:#33475b}
.rule{margin:0 0 10px;padding:8px 12px;background:#f6f8fa;border-radius:6px}
.rule p{margin:2px 0}.rule b{color:#33475b}
section.gaps{border-left:6px solid #c0392b}
.gaps h3{display:flex;align-items:center;gap:8px}
.gaps ul{margin:4px 0 10px;padding-left:20px}.gaps li{margin:6px 0}
.gaps dl{display:grid;grid-template-columns:max-content 1fr;gap:2px 10px;margin:0}
.gaps dt{font-weight:600;color:#33475b}.gaps dd{margin:0;overflow-wrap:anywhere}
.allmet{color:#1e6b30;font-weight:600}
.why{display:grid;grid-template-columns:1fr 1fr;gap:16px;margin-bottom:6px}
.why div{background:#f6f8fa;border-radius:6px;padding:8px 12px}
.why b{display:block;font-size:12px;color:#5b6b7c;text-transform:uppercase;letter-spacing:.04em}
table{border-collapse:collapse;width:100%;margin:4px 0 8px;font-size:13px}
th,td{border-bottom:1px solid #e3e8ee;padding:5px 8px;text-align:left;vertical-align:top;overflow-wrap:anywhere}
th{background:#f0f3f7;color:#33475b;font-weight:600;white-space:nowrap}
th.n,td.n{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
table.facts td:first-child{width:45%;color:#33475b}
table.facts td:last-child{font-weight:600}
td.hex{font-family:"DejaVu Sans Mono","Liberation Mono",monospace;font-size:11px}
.samples td{font-family:"DejaVu Sans Mono","Liberation Mono",monospace;font-size:12px}
.none{color:#7a8896;font-style:italic;margin:2px 0 8px}
.note{color:#5b6b7c;font-size:13px;border-left:3px solid #d5dde6;padding-left:10px}
code{font-family:"DejaVu Sans Mono","Liberation Mono",monospace;font-size:12px;background:#eef1f5;border-radius:3px;padding:0 3px}
nav table td a{color:#14324f}
footer{color:#7a8896;font-size:12px;text-align:center;padding-bottom:24px}
"#;

/// A key or hash (hex): set in a smaller monospace, so it fits a line.
fn is_digest(s: &str) -> bool {
    s.len() >= 32 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

fn is_number(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_digit() || b == b'.' || b == b'%')
}

/// A table; columns whose every cell is a number are right-aligned,
/// heading included.
fn table(out: &mut String, class: &str, head: &[&str], rows: &[Vec<String>]) {
    let numeric: Vec<bool> = (0..head.len())
        .map(|i| !rows.is_empty() && rows.iter().all(|r| r.get(i).is_some_and(|c| is_number(c))))
        .collect();
    let align = |i: usize| if numeric[i] { " class=\"n\"" } else { "" };
    let _ = write!(out, "<table class=\"{class}\"><thead><tr>");
    for (i, h) in head.iter().enumerate() {
        let _ = write!(out, "<th{}>{}</th>", align(i), esc(h));
    }
    out.push_str("</tr></thead><tbody>");
    for r in rows {
        out.push_str("<tr>");
        for (i, c) in r.iter().enumerate() {
            let a = if i < numeric.len() { align(i) } else { "" };
            let a = if is_digest(c) { " class=\"hex\"" } else { a };
            let _ = write!(out, "<td{a}>{}</td>", esc(c));
        }
        out.push_str("</tr>");
    }
    out.push_str("</tbody></table>");
}

fn status_class(s: Status) -> &'static str {
    match s {
        Status::Met => "s-met",
        Status::Partial => "s-partial",
        Status::NotAssessed => "s-not-assessed",
        Status::NotMet => "s-not-met",
    }
}

fn badge(s: Status) -> String {
    format!(
        "<span class=\"badge {}\">{}</span>",
        status_class(s),
        esc(s.label())
    )
}

/// The Gaps section: every control short of met, each gap's cause, rows
/// or setting, fix, and some of the rows.
fn gaps(out: &mut String, r: &NistReport) {
    out.push_str("<section class=\"gaps\" id=\"gaps\"><h2>Gaps</h2>");
    let mut any = false;
    for c in r.short_of_met() {
        any = true;
        let _ = write!(
            out,
            "<h3><a href=\"#{}\">{}</a> {}{}</h3><ul>",
            esc(c.id),
            esc(c.id),
            esc(c.title),
            badge(c.status)
        );
        for g in &c.gaps {
            let _ = write!(
                out,
                "<li><dl><dt>Gap</dt><dd>{}</dd><dt>Which</dt><dd>{}</dd><dt>Fix</dt><dd>{}</dd></dl></li>",
                esc(&g.cause),
                esc(&g.which),
                esc(&g.fix)
            );
        }
        out.push_str("</ul>");
        let rows = gap_rows(c);
        if !rows.is_empty() {
            table(out, "samples", &GAP_ROW_HEAD, &rows);
        }
    }
    if !any {
        out.push_str("<p class=\"allmet\">Every control is met.</p>");
    }
    out.push_str("</section>");
}

fn card(out: &mut String, class: &str, key: &str, value: &str) {
    let _ = write!(
        out,
        "<div class=\"card {class}\"><div class=\"k\">{}</div><div class=\"v\">{value}</div></div>",
        esc(key)
    );
}

fn sub_table(out: &mut String, t: &Table) {
    let _ = write!(out, "<h3>{}</h3>", esc(&t.caption));
    if t.rows.is_empty() {
        out.push_str("<p class=\"none\">none in the period</p>");
    } else {
        table(out, "data", &t.head, &t.rows);
    }
}

fn control(out: &mut String, c: &Control) {
    let _ = write!(
        out,
        "<section id=\"{}\"><h2><span class=\"id\">{}</span>{}{}</h2>",
        esc(c.id),
        esc(c.id),
        esc(c.title),
        badge(c.status)
    );
    let _ = write!(
        out,
        "<div class=\"rule\"><p><b>Rule:</b> {}</p><p><b>Found:</b> {}</p></div>",
        prose(c.rule),
        esc(&c.verdict)
    );
    let _ = write!(
        out,
        "<div class=\"why\"><div><b>What it asks</b>{}</div><div><b>How the agent meets it</b>{}</div></div>",
        prose(c.asks),
        prose(c.how)
    );
    out.push_str("<h3>Measures</h3><table class=\"facts\"><tbody>");
    for (k, v) in &c.facts {
        let _ = write!(out, "<tr><td>{}</td><td>{}</td></tr>", esc(k), esc(v));
    }
    out.push_str("</tbody></table>");
    for t in &c.tables {
        sub_table(out, t);
    }
    let _ = write!(out, "<h3>Evidence: {}</h3>", esc(&c.samples_caption));
    if c.samples.is_empty() {
        out.push_str("<p class=\"none\">no rows</p>");
    } else {
        let rows: Vec<Vec<String>> = c.samples.iter().map(sample_cells).collect();
        table(out, "samples", &SAMPLE_HEAD, &rows);
    }
    if let Some(n) = &c.note {
        let _ = write!(out, "<p class=\"note\">{}</p>", prose(n));
    }
    out.push_str("</section>");
}

/// Renders the report as HTML.
pub fn render(r: &NistReport) -> String {
    let mut o = String::with_capacity(64 * 1024);
    let period = format!(
        "{} to {} (UTC, end excluded)",
        fmt_time(r.period.from_us),
        fmt_time(r.period.to_us)
    );
    let _ = write!(
        o,
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'\">\
         <title>NIST SP 800-53 evidence: {}</title><style>{CSS}</style></head><body>",
        esc(&period)
    );
    let _ = write!(
        o,
        "<header><h1>NIST SP 800-53 evidence: MCP interceptor audit trail</h1>\
         <p>{} &middot; audit directory <code>{}</code> &middot; generated {}</p></header><main>",
        esc(&period),
        esc(&r.dir),
        esc(&fmt_time(r.generated_us))
    );
    o.push_str("<div class=\"cards\">");
    card(&mut o, "", "rows in the period", &r.rows.to_string());
    card(
        &mut o,
        "",
        "files read / not opened",
        &format!("{} / {}", r.sources.files_read, r.sources.files_skipped),
    );
    let (class, verdict) = match &r.verify {
        Verify::Intact(_) => ("ok", "intact"),
        Verify::Broken(_) => ("bad", "BROKEN"),
    };
    card(
        &mut o,
        class,
        "audit verify",
        &format!(
            "{verdict}<div class=\"small\">{}</div>",
            esc(&verify_line(&r.verify))
        ),
    );
    o.push_str("</div>");
    if r.sources.pending_wal_segments > 0 {
        let _ = write!(
            o,
            "<p class=\"note\">{} WAL segment(s) are not yet in signed files; their rows are not counted.</p>",
            r.sources.pending_wal_segments
        );
    }
    o.push_str("<section><h2>Controls</h2><nav><table><thead><tr><th>control</th><th>title</th><th>status</th><th>found</th></tr></thead><tbody>");
    for c in &r.controls {
        let _ = write!(
            o,
            "<tr><td><a href=\"#{}\">{}</a></td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(c.id),
            esc(c.id),
            esc(c.title),
            badge(c.status),
            esc(&c.verdict)
        );
    }
    o.push_str("</tbody></table></nav></section>");
    gaps(&mut o, r);
    for c in &r.controls {
        control(&mut o, c);
    }
    o.push_str(
        "</main><footer>Generated by <code>mcp-interceptor report nist</code> from the signed Parquet audit files.</footer></body></html>\n",
    );
    o
}
