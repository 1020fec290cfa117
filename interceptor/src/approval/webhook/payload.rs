//! The bodies the webhook posts. They name the request (id, caller,
//! server, method and target, policy, approvers, where to approve) and
//! carry argument values only when the operator opted in, masked. Never
//! the argument digests: a SHA-256 of short unmasked values is a guess
//! away from them.
//!
//! Slack renders `text` and `mrkdwn` fields: `<...>` makes links and
//! mentions (`<!channel>`), `&` starts entities, backticks and `*_~`
//! format. Every caller-controlled value (subject, issuer, method, target,
//! server, policies, arguments) goes through [`code`]: escaped and shown as
//! inline code, where Slack neither formats nor links. The only link is
//! the agent's own approve URL.

use serde_json::{Value, json};

use super::limit::Summary;
use crate::approval::Approval;

/// Longest caller value shown (characters); Slack cuts a section at 3000.
const MAX_VALUE: usize = 200;
const MAX_ARGUMENTS: usize = 1500;
/// Callers named in a summary; the rest are counted together.
const MAX_CALLERS: usize = 20;

/// The request as JSON: named fields only, so a new `Approval` field never
/// leaks into the channel by default.
pub fn json_request(a: &Approval, approve_at: &str, include_arguments: bool) -> Value {
    let mut approval = json!({
        "id": a.id,
        "status": a.status,
        "mode": a.rule.mode,
        "subject": a.call.subject,
        "issuer": a.call.issuer,
        "groups": a.call.groups,
        "server": a.call.server,
        "method": a.call.method,
        "target": a.call.target,
        "policy_version": a.call.policy_version,
        "policies": a.policies,
        "approver_groups": a.rule.groups,
        "quorum": a.rule.quorum,
        "created_us": a.created_us,
        "expires_us": a.expires_us,
    });
    if include_arguments {
        approval["arguments"] = a.arguments.clone().unwrap_or(Value::Null);
    }
    json!({ "type": "approval_requested", "approval": approval, "approve": approve_at })
}

/// The summary as JSON.
pub fn json_summary(s: &Summary, list_at: &str) -> Value {
    let by_caller: Vec<Value> = s
        .by_caller
        .iter()
        .take(MAX_CALLERS)
        .map(|(w, n)| json!({"subject": w.subject, "issuer": w.issuer, "count": n}))
        .collect();
    let rest = s.by_caller.get(MAX_CALLERS..).unwrap_or_default();
    json!({
        "type": "approvals_summarized",
        "count": s.total,
        "interval_seconds": s.interval_seconds,
        "by_caller": by_caller,
        "other_callers": rest.len(),
        "other_callers_count": rest.iter().map(|(_, n)| n).sum::<u64>(),
        "list": list_at,
    })
}

/// A Slack incoming-webhook payload for one request.
pub fn slack_request(a: &Approval, approve_at: &str, include_arguments: bool) -> Value {
    let target = a.call.target.as_deref().map(code).unwrap_or_default();
    let text = format!(
        "Approval {} requested: {} asks for {} {} on server {}.",
        code(&a.id),
        code(&a.call.subject),
        code(&a.call.method),
        target,
        code(&a.call.server)
    );
    let details = format!(
        "*Approval requested* {}\n*Caller:* {} of {}\n*Call:* {} {}\n*Server:* {}\n\
         *Policy:* {} {}\n*Needs:* {} approver(s) from {}",
        code(&a.id),
        code(&a.call.subject),
        code(&a.call.issuer),
        code(&a.call.method),
        target,
        code(&a.call.server),
        code(&a.policies.join(", ")),
        code(&a.call.policy_version),
        a.rule.quorum,
        code(&a.rule.groups.join(", ")),
    );
    let mut blocks = vec![section(&details)];
    if include_arguments {
        let args = a.arguments.as_ref().map(Value::to_string);
        let shown = args.as_deref().map(code_long).unwrap_or("(none)".into());
        blocks.push(section(&format!("*Arguments* (masked): {shown}")));
    }
    blocks.push(section(&action("Approve or deny", approve_at)));
    json!({ "text": text, "blocks": blocks })
}

/// A Slack incoming-webhook payload for a summary.
pub fn slack_summary(s: &Summary, list_at: &str) -> Value {
    let mut parts: Vec<String> = s
        .by_caller
        .iter()
        .take(MAX_CALLERS)
        .map(|(w, n)| format!("{n} from {} of {}", code(&w.subject), code(&w.issuer)))
        .collect();
    if s.by_caller.len() > MAX_CALLERS {
        let rest = &s.by_caller[MAX_CALLERS..];
        let n: u64 = rest.iter().map(|(_, n)| n).sum();
        parts.push(format!("{n} from {} other callers", rest.len()));
    }
    let text = format!(
        "{} more approval requests in the last {} s were not announced one by one: {}.",
        s.total,
        s.interval_seconds,
        parts.join(", ")
    );
    json!({
        "text": text,
        "blocks": [section(&text), section(&action("Review them", list_at))],
    })
}

fn section(mrkdwn: &str) -> Value {
    json!({ "type": "section", "text": { "type": "mrkdwn", "text": mrkdwn } })
}

/// A link to the agent's approve URL (operator configured), or the CLI
/// command as code when no URL is set.
fn action(label: &str, at: &str) -> String {
    let is_url = (at.starts_with("https://") || at.starts_with("http://"))
        && !at.chars().any(|c| c.is_whitespace() || c.is_control());
    if !is_url {
        return format!("{label}: {}", code(at));
    }
    let url: String = at
        .chars()
        .map(|c| match c {
            '&' => "&amp;".into(),
            '<' => "%3C".into(),
            '>' => "%3E".into(),
            '|' => "%7C".into(),
            c => c.to_string(),
        })
        .collect();
    format!("<{url}|{label}>")
}

/// `value` as Slack inline code that cannot end early, link or mention.
pub fn code(value: &str) -> String {
    inline(value, MAX_VALUE)
}

fn code_long(value: &str) -> String {
    inline(value, MAX_ARGUMENTS)
}

fn inline(value: &str, max: usize) -> String {
    if value.is_empty() {
        return "(empty)".into();
    }
    let mut out = String::with_capacity(value.len() + 2);
    out.push('`');
    for (i, c) in value.chars().enumerate() {
        if i == max {
            out.push('…');
            break;
        }
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            // A backtick would close the code span; U+02CB looks alike.
            '`' => out.push('ˋ'),
            // Line breaks end inline code; bidi and zero-width controls
            // make the text read other than it is.
            c if c.is_control() || is_invisible(c) => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out.push('`');
    out
}

fn is_invisible(c: char) -> bool {
    matches!(c, '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{2069}' | '\u{FEFF}')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caller_text_cannot_close_the_span_link_or_mention() {
        let c = code("x` <!channel> <https://evil|Approve> & ``` *b*\nnew");
        assert_eq!(c.matches('`').count(), 2, "{c}");
        assert!(
            !c.contains('<') && !c.contains('>') && !c.contains('\n'),
            "{c}"
        );
        assert!(
            c.contains("&lt;!channel&gt;") && c.contains("&amp; "),
            "{c}"
        );
        assert_eq!(code(""), "(empty)");
        assert_eq!(code(&"a".repeat(500)).chars().count(), MAX_VALUE + 3);
    }

    #[test]
    fn a_summary_names_callers_escaped_and_counts_the_rest() {
        use super::super::limit::Asker;
        let who = |s: &str| Asker {
            subject: s.into(),
            issuer: "https://idp".into(),
        };
        let mut by_caller = vec![(who("<!channel>"), 280), (who("bob"), 7)];
        by_caller.extend((0..30).map(|i| (who(&format!("u{i}")), 1)));
        let s = Summary {
            total: 317,
            by_caller,
            interval_seconds: 60,
        };
        let v = slack_summary(&s, "https://h/v1/approvals");
        let text = v["text"].as_str().unwrap();
        assert!(
            text.starts_with("317 more approval requests")
                && text.contains("280 from `&lt;!channel&gt;`")
                && text.contains("7 from `bob`")
                && text.contains("12 from 12 other callers"),
            "{text}"
        );
        assert!(!v.to_string().contains("<!"), "{v}");
        assert_eq!(
            v["blocks"][1]["text"]["text"],
            "<https://h/v1/approvals|Review them>"
        );
        let j = json_summary(&s, "https://h/v1/approvals");
        assert_eq!(j["by_caller"].as_array().unwrap().len(), MAX_CALLERS);
        assert_eq!(
            (j["other_callers"].as_u64(), j["count"].as_u64()),
            (Some(12), Some(317))
        );
    }

    #[test]
    fn only_the_approve_url_is_a_link() {
        assert_eq!(
            action("Approve", "https://h/v1/approvals/apr-1"),
            "<https://h/v1/approvals/apr-1|Approve>"
        );
        assert_eq!(
            action("Approve", "https://h/a?x=1&y=<b>|c"),
            "<https://h/a?x=1&amp;y=%3Cb%3E%7Cc|Approve>"
        );
        assert_eq!(
            action(
                "Approve",
                "mcp-interceptor approvals approve apr-1 --reason ..."
            ),
            "Approve: `mcp-interceptor approvals approve apr-1 --reason ...`"
        );
    }
}
