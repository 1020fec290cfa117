//! The bench's Cedar policy set: what the load generator does (the
//! `bench` group calls `lookup_customer` on the `crm` server) among about
//! a hundred policies a deployment with a dozen servers and teams might
//! carry, so a decision costs what it would in production rather than
//! what a one-line policy costs. The same text is written for the agent
//! and measured in-process (`policy_time`), so the two cannot drift.
//!
//! Hand-written rules are in `bench/policy/*.cedar`; the families that
//! grow by one rule per team, database or pattern are generated here from
//! tables. Almost everything is about `tools/call`, as in practice, and
//! the agent skips only policies whose scope names other actions: the
//! bench request is evaluated against nearly the whole set.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

/// The port rule's name for the steered server (`Mcp::Server::"crm"`).
pub const SERVER: &str = "crm";

const CALL: &str = r#"action == Mcp::Action::"tools/call""#;

const STATIC: &[(&str, &str)] = &[
    ("00-base.cedar", include_str!("../policy/00-base.cedar")),
    ("10-crm.cedar", include_str!("../policy/10-crm.cedar")),
    ("20-files.cedar", include_str!("../policy/20-files.cedar")),
    ("30-db.cedar", include_str!("../policy/30-db.cedar")),
    ("40-shell.cedar", include_str!("../policy/40-shell.cedar")),
];

/// (file name, Cedar text), in load order.
pub fn sources() -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = STATIC
        .iter()
        .map(|(n, t)| (n.to_string(), t.to_string()))
        .collect();
    out.push(("21-files-teams.cedar".into(), team_dirs()));
    out.push(("31-db-owners.cedar".into(), db_owners()));
    out.push(("41-shell-patterns.cedar".into(), shell_patterns()));
    out.push(("50-teams.cedar".into(), teams()));
    out.sort();
    out
}

/// A set of exactly `n` policies built the same way: below the full set,
/// its files' policies in load order (the CRM file, with the bench's own
/// permit, first: the call must still be allowed); above it, the
/// generated families again for further tenants (`tenant`), each with
/// its own servers and groups, as a deployment with more teams grows.
pub fn sources_sized(n: usize) -> Vec<(String, String)> {
    let full = sources();
    let have = action_lines(&full).count();
    if n >= have {
        let mut out = full;
        let extra: String = (0..).flat_map(tenant).take(n - have).collect();
        out.push(("60-tenants.cedar".into(), extra));
        return out;
    }
    // The CRM file first, so a small set still permits the bench's call.
    let mut ordered = full;
    ordered.sort_by_key(|(name, _)| name != "10-crm.cedar");
    let mut left = n;
    let mut out = Vec::new();
    for (name, text) in ordered {
        let policies = split(&text);
        let take = policies.len().min(left);
        left -= take;
        if take > 0 {
            out.push((name, policies[..take].concat()));
        }
    }
    out
}

/// A file's policies, one text each (with the comments above them), split
/// at the `@id` (or other annotation) that opens each one.
fn split(text: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut cur = String::new();
    let mut open = false;
    for line in text.lines() {
        if line.starts_with('@') && !open {
            if ends_a_policy(&cur) {
                out.push(std::mem::take(&mut cur));
            }
            open = true;
        } else if !line.starts_with('@') {
            open = false;
        }
        cur.push_str(line);
        cur.push('\n');
    }
    if ends_a_policy(&cur) {
        out.push(cur);
    }
    out
}

/// Whether `text` holds a whole policy (a `;` ending a line of code),
/// not only comments.
fn ends_a_policy(text: &str) -> bool {
    text.lines()
        .any(|l| !l.trim_start().starts_with("//") && l.trim_end().ends_with(';'))
}

/// Tenant `k`'s policies, in the shapes of the generated families: a
/// team directory, a database owner, a refused command, a team's permit
/// with named tools and an argument guard, all on `tools/call`.
fn tenant(k: usize) -> Vec<String> {
    let (team, srv) = (format!("team-{k}"), format!("svc-{k}"));
    vec![
        rule(
            &format!("t{k}-dir"),
            "forbid",
            ["principal", CALL, &server(&format!("files-{k}"))],
            &format!(
                "resource.hasTag(\"path\") && resource.getTag(\"path\") like \"/srv/{team}/*\""
            ),
            &format!("principal in Mcp::Group::\"{team}\""),
        ),
        rule(
            &format!("t{k}-db"),
            "forbid",
            ["principal", CALL, &server(&format!("db-{k}"))],
            &format!(
                "resource.hasTag(\"database\") && resource.getTag(\"database\") == \"{team}\""
            ),
            &format!("principal in Mcp::Group::\"{team}\""),
        ),
        rule(
            &format!("t{k}-shell"),
            "forbid",
            ["principal", CALL, &server(&format!("shell-{k}"))],
            &format!(
                "resource.hasTag(\"command\") && resource.getTag(\"command\") like \"*{team}-reset*\""
            ),
            "",
        ),
        rule(
            &format!("t{k}-permit"),
            "permit",
            [&group(&team), CALL, &server(&srv)],
            &named(&["get_item", "list_items", "update_item"]),
            "",
        ),
        rule(
            &format!("t{k}-guard"),
            "forbid",
            ["principal", CALL, &server(&srv)],
            r#"resource.name == "update_item" && resource.hasTag("id") && resource.getTag("id") like "*admin*""#,
            &format!("principal in Mcp::Group::\"{team}-leads\""),
        ),
    ]
}

/// Policies whose scope can match a `tools/call`: what the bench request
/// is evaluated against. Relies on the layout every file here keeps (the
/// action of a scope on a line of its own; the test checks it).
pub fn on_call(sources: &[(String, String)]) -> usize {
    action_lines(sources)
        .filter(|a| *a == "action," || a.contains(r#""tools/call""#))
        .count()
}

fn action_lines(sources: &[(String, String)]) -> impl Iterator<Item = &str> {
    sources
        .iter()
        .flat_map(|(_, t)| t.lines())
        .map(str::trim)
        .filter(|l| *l == "action," || l.starts_with("action ==") || l.starts_with("action in"))
}

/// Writes the set of `n` policies (`sources_sized`) as
/// `<dir>/policy-<n>/*.cedar`; the directory is what `[policy] files`
/// names.
pub fn write(dir: &Path, n: usize) -> Result<PathBuf> {
    let out = dir.join(format!("policy-{n}"));
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    for (name, text) in sources_sized(n) {
        std::fs::write(out.join(&name), text).with_context(|| format!("writing {name}"))?;
    }
    Ok(out)
}

/// One policy in the layout `on_call` reads; empty conditions are left out.
fn rule(id: &str, effect: &str, scope: [&str; 3], when: &str, unless: &str) -> String {
    let mut t = format!(
        "@id(\"{id}\")\n{effect} (\n  {},\n  {},\n  {}\n)",
        scope[0], scope[1], scope[2]
    );
    if !when.is_empty() {
        t.push_str(&format!("\nwhen {{ {when} }}"));
    }
    if !unless.is_empty() {
        t.push_str(&format!("\nunless {{ {unless} }}"));
    }
    t.push_str(";\n\n");
    t
}

fn group(g: &str) -> String {
    format!("principal in Mcp::Group::\"{g}\"")
}

fn server(s: &str) -> String {
    format!("resource in Mcp::Server::\"{s}\"")
}

fn named(tools: &[&str]) -> String {
    let list: Vec<String> = tools.iter().map(|t| format!("\"{t}\"")).collect();
    format!("[{}].contains(resource.name)", list.join(", "))
}

/// Each team's directory on the file server is its own.
fn team_dirs() -> String {
    let files = server("files");
    [
        "finance", "hr", "legal", "security", "sales", "support", "data-eng", "research",
    ]
    .iter()
    .map(|team| {
        rule(
            &format!("fs-team-dir-{team}"),
            "forbid",
            ["principal", CALL, &files],
            &format!(
                "resource.hasTag(\"path\") && resource.getTag(\"path\") like \"/srv/data/{team}/*\""
            ),
            &format!("principal in Mcp::Group::\"{team}\""),
        )
    })
    .collect()
}

/// Databases that belong to one team.
fn db_owners() -> String {
    let db = server("db");
    [
        ("payroll", "hr"),
        ("ledger", "finance"),
        ("audit", "security"),
        ("customers", "support"),
        ("events", "data-eng"),
        ("experiments", "research"),
    ]
    .iter()
    .map(|(database, team)| {
        rule(
            &format!("db-owner-{database}"),
            "forbid",
            ["principal", CALL, &db],
            &format!(
                "resource.hasTag(\"database\") && resource.getTag(\"database\") == \"{database}\""
            ),
            &format!("principal in Mcp::Group::\"{team}\""),
        )
    })
    .collect()
}

/// One rule per refused command pattern, as teams tend to add them, each
/// with its own id for the audit trail.
fn shell_patterns() -> String {
    let shell = server("shell");
    [
        ("rm-root", "*rm -rf /*"),
        ("pipe-sh", "*| sh*"),
        ("pipe-bash", "*| bash*"),
        ("shadow", "*/etc/shadow*"),
        ("curl", "*curl *"),
        ("wget", "*wget *"),
        ("chmod-777", "*chmod 777*"),
        ("mkfs", "*mkfs*"),
        ("dd", "*dd if=*"),
        ("fork-bomb", "*:(){*"),
        ("netcat", "*nc -e*"),
        ("base64", "*base64 -d*"),
        ("sudo", "*sudo *"),
        ("shutdown", "*shutdown*"),
        ("raw-disk", "*> /dev/sd*"),
        ("crontab", "*crontab*"),
    ]
    .iter()
    .map(|(name, pattern)| {
        rule(
            &format!("shell-never-{name}"),
            "forbid",
            ["principal", CALL, &shell],
            &format!(
                "resource.hasTag(\"command\") && resource.getTag(\"command\") like \"{pattern}\""
            ),
            "",
        )
    })
    .collect()
}

/// Who may call what on the other servers, and their argument guards.
fn teams() -> String {
    let permits: &[(&str, &str, &[&str])] = &[
        (
            "dev",
            "git",
            &[
                "clone",
                "log",
                "diff",
                "blame",
                "create_branch",
                "open_pull_request",
                "push",
            ],
        ),
        ("sre", "git", &["log", "diff", "blame", "revert", "push"]),
        ("contractors", "git", &["log", "diff"]),
        (
            "support",
            "tickets",
            &["get_ticket", "search_tickets", "comment", "update_status"],
        ),
        (
            "dev",
            "tickets",
            &["get_ticket", "search_tickets", "comment"],
        ),
        ("sales", "tickets", &["get_ticket"]),
        ("editors", "wiki", &["edit_page", "create_page"]),
        (
            "sre",
            "k8s",
            &["get_pods", "logs", "describe", "rollout_restart", "scale"],
        ),
        ("dev", "k8s", &["get_pods", "logs", "describe"]),
        (
            "finance",
            "billing",
            &["get_invoice", "list_invoices", "refund"],
        ),
        ("support", "billing", &["get_invoice"]),
        (
            "hr",
            "hr",
            &["get_employee", "list_employees", "update_employee"],
        ),
        (
            "security",
            "siem",
            &["search_events", "get_alert", "close_alert"],
        ),
        (
            "data-eng",
            "warehouse",
            &["run_job", "list_jobs", "get_job"],
        ),
    ];
    let mut t = String::new();
    for (g, s, tools) in permits {
        t += &rule(
            &format!("{s}-{g}"),
            "permit",
            [&group(g), CALL, &server(s)],
            &named(tools),
            "",
        );
    }
    for (s, tools) in [
        ("wiki", ["search_pages", "read_page"]),
        ("search", ["web_search", "fetch_url"]),
    ] {
        let when = format!(
            "{} && principal.auth_method != \"anonymous\"",
            named(&tools)
        );
        t += &rule(
            &format!("{s}-everyone"),
            "permit",
            ["principal", CALL, &server(s)],
            &when,
            "",
        );
    }
    // (id, server, when, unless)
    let guards: &[(&str, &str, &str, &str)] = &[
        (
            "git-no-force-push",
            "git",
            r#"resource.name == "push" && resource.hasTag("force") && resource.getTag("force") == "true""#,
            "",
        ),
        (
            "git-protected-branches",
            "git",
            r#"resource.name == "push" && resource.hasTag("branch") && (resource.getTag("branch") == "main" || resource.getTag("branch") like "release/*")"#,
            r#"principal in Mcp::Group::"release-managers""#,
        ),
        (
            "k8s-prod-namespaces",
            "k8s",
            r#"resource.hasTag("namespace") && resource.getTag("namespace") like "prod*""#,
            r#"principal in Mcp::Group::"sre""#,
        ),
        (
            "k8s-no-exec",
            "k8s",
            r#"["exec", "port_forward", "cp"].contains(resource.name)"#,
            r#"principal in Mcp::Group::"sre-leads""#,
        ),
        (
            "k8s-scale-bounds",
            "k8s",
            r#"resource.name == "scale" && resource.hasTag("replicas") && !(["0", "1", "2", "3", "4", "5", "6", "8", "10"].contains(resource.getTag("replicas")))"#,
            "",
        ),
        (
            "billing-refund-currency",
            "billing",
            r#"resource.name == "refund" && resource.hasTag("currency") && !(["EUR", "USD", "GBP"].contains(resource.getTag("currency")))"#,
            "",
        ),
        (
            "hr-salary-fields",
            "hr",
            r#"context.arguments_json like "*salary*" || context.arguments_json like "*bank_account*""#,
            r#"principal in Mcp::Group::"payroll""#,
        ),
        (
            "wiki-private-spaces",
            "wiki",
            r#"resource.hasTag("space") && resource.getTag("space") like "private-*""#,
            r#"principal in Mcp::Group::"leadership""#,
        ),
        (
            "search-no-internal-urls",
            "search",
            r#"resource.hasTag("url") && (resource.getTag("url") like "http://10.*" || resource.getTag("url") like "*169.254.169.254*" || resource.getTag("url") like "http://localhost*" || resource.getTag("url") like "file:*")"#,
            "",
        ),
        (
            "tickets-no-bulk-update",
            "tickets",
            r#"resource.name == "update_status" && resource.hasTag("ids.20")"#,
            "",
        ),
        (
            "siem-close-needs-reason",
            "siem",
            r#"resource.name == "close_alert" && !resource.hasTag("reason")"#,
            "",
        ),
        (
            "warehouse-no-prod-jobs",
            "warehouse",
            r#"resource.name == "run_job" && resource.hasTag("target") && resource.getTag("target") == "prod""#,
            r#"principal in Mcp::Group::"data-eng-leads""#,
        ),
    ];
    for (id, s, when, unless) in guards {
        t += &rule(id, "forbid", ["principal", CALL, &server(s)], when, unless);
    }
    // Annotations go before the generated `@id`.
    t += "@approval(\"finance-leads\")\n";
    t += &rule(
        "billing-refund-enterprise",
        "permit",
        [
            &group("finance"),
            CALL,
            r#"resource == Mcp::Tool::"refund""#,
        ],
        r#"resource.hasTag("account") && resource.getTag("account") like "ent-*""#,
        "",
    );
    t += &rule(
        "k8s-sre-subscribe",
        "permit",
        [
            &group("sre"),
            r#"action == Mcp::Action::"resources/subscribe""#,
            "resource",
        ],
        r#"resource.uri like "k8s://*""#,
        "",
    );
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_set_loads_with_about_a_hundred_policies_mostly_on_calls() {
        let s = sources();
        let p = interceptor::policy::Policies::from_sources(&s)
            .unwrap_or_else(|e| panic!("the bench policy set must load: {e}"));
        assert!((95..=110).contains(&p.count), "{}", p.count);
        // Every policy keeps its action on a line of its own, so on_call
        // counts what it says.
        assert_eq!(action_lines(&s).count(), p.count);
        assert!(
            on_call(&s) * 10 >= p.count * 8,
            "{} of {}",
            on_call(&s),
            p.count
        );
    }

    /// The curve's sets hold exactly the number asked for, load, and the
    /// bench's own permit is in every one of them.
    #[test]
    fn sized_sets_have_that_many_policies_and_the_bench_permit() {
        let full = action_lines(&sources()).count();
        for n in [10, full, 1000] {
            let s = sources_sized(n);
            let p = interceptor::policy::Policies::from_sources(&s)
                .unwrap_or_else(|e| panic!("the {n}-policy set must load: {e}"));
            assert_eq!(p.count, n);
            assert!(
                s.iter()
                    .any(|(_, t)| t.contains("@id(\"crm-bench-lookup\")")),
                "{n}"
            );
        }
    }
}
