//! The report's verdicts as JSON, for a compliance pipeline: each
//! control's status, rule, finding and gaps (the evidence tables stay in
//! the Markdown and HTML renderings).

use serde_json::{Value, json};

use super::{fmt_time, markdown::verify_line, nist::NistReport};

/// Renders the verdicts as one JSON document.
pub fn render(r: &NistReport) -> Value {
    let controls: Vec<Value> = r
        .controls
        .iter()
        .map(|c| {
            json!({
                "id": c.id,
                "title": c.title,
                "status": c.status,
                "rule": c.rule,
                "found": c.verdict,
                "gaps": c.gaps,
            })
        })
        .collect();
    json!({
        "period": {
            "from": fmt_time(r.period.from_us),
            "to": fmt_time(r.period.to_us),
        },
        "generated": fmt_time(r.generated_us),
        "audit_dir": r.dir,
        "rows": r.rows,
        "audit_verify": verify_line(&r.verify),
        "public_key_pinned": r.pinned,
        "worst": r.worst(),
        "controls": controls,
    })
}
