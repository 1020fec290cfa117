//! [`gaps`] on configurations parsed from TOML as an operator writes them.

use std::path::Path;

use super::*;

/// The TOML `text` as the agent would load it.
fn parse(text: &str) -> Config {
    Config::parse(text, Path::new("test.toml")).expect("a valid config")
}

fn controls(cfg: &Config) -> Vec<&'static str> {
    gaps(cfg).iter().map(|g| g.control).collect()
}

/// Well configured: OIDC, no anonymous callers, a policy, TLS required,
/// the audit blocking on failure and shipped to S3.
const GOOD: &str = r#"
[[intercept.ports]]
port = 8080
[tls]
cert = "/etc/mcp/server.pem"
key = "/etc/mcp/server.key"
require_tls = true
[identity]
allow_anonymous = false
[[identity.oidc]]
issuer = "https://idp.example.com"
audiences = ["https://mcp.example.com"]
[policy]
files = ["/etc/mcp/policy"]
[audit.s3]
bucket = "trail"
"#;

#[test]
fn a_well_configured_agent_lacks_only_the_lock_it_cannot_see() {
    let g = gaps(&parse(GOOD));
    assert_eq!(g.len(), 1, "{g:#?}");
    assert_eq!(g[0].control, "AU-9");
    assert!(g[0].problem.contains("\"trail\""), "{}", g[0]);
    assert!(g[0].fix.contains("Object Lock"), "{}", g[0]);
}

#[test]
fn anonymous_callers_and_no_policy_name_ia2_au10_ac3_ac6() {
    let cfg = parse(
        &GOOD
            .replace("allow_anonymous = false", "allow_anonymous = true")
            .replace("files = [\"/etc/mcp/policy\"]", ""),
    );
    assert_eq!(controls(&cfg), ["IA-2", "AU-10", "AC-3", "AC-6", "AU-9"]);
    let text: Vec<String> = gaps(&cfg).iter().map(ToString::to_string).collect();
    assert!(
        text[0].starts_with("IA-2: identity.allow_anonymous = true"),
        "{text:?}"
    );
    assert!(
        text[0].contains("fix: configure [[identity.oidc]]"),
        "{text:?}"
    );
    assert!(text[2].contains("fix: write Cedar policies"), "{text:?}");
}

#[test]
fn the_defaults_name_every_gap_a_fresh_install_has() {
    // The shipped defaults refuse to load without an identity, so the
    // smallest config an operator can run is the anonymous one.
    let cfg = parse("[identity]\nallow_anonymous = true\n[[intercept.ports]]\nport = 8080\n");
    assert_eq!(
        controls(&cfg),
        ["IA-2", "AU-10", "AC-3", "AC-6", "AU-9", "SC-8"]
    );
    let au9 = &gaps(&cfg)[4];
    assert!(au9.problem.starts_with("no [audit.s3]"), "{au9}");
    let sc8 = &gaps(&cfg)[5];
    assert!(sc8.problem.starts_with("no tls.cert"), "{sc8}");
}

#[test]
fn tls_beside_plaintext_is_an_sc8_gap_until_required() {
    let optional = parse(&GOOD.replace("require_tls = true", ""));
    let sc8: Vec<_> = gaps(&optional)
        .into_iter()
        .filter(|g| g.control == "SC-8")
        .collect();
    assert_eq!(sc8.len(), 1);
    assert!(sc8[0].problem.contains("require_tls = false"), "{}", sc8[0]);
    // Required client certificates imply TLS: no plaintext way in.
    let mtls = parse(&GOOD.replace(
        "require_tls = true",
        "client_ca = [\"/etc/mcp/ca.pem\"]\nclient_auth = \"required\"",
    ));
    assert!(!controls(&mtls).contains(&"SC-8"), "{:?}", gaps(&mtls));
}

#[test]
fn the_audit_settings_name_au2_au12_au5() {
    let off = parse(
        &format!("{GOOD}\n[audit]\nenabled = false\n")
            .replace("[audit.s3]\nbucket = \"trail\"\n", ""),
    );
    assert_eq!(controls(&off), ["AU-2", "AU-12"]);
    let cont = parse(&GOOD.replace(
        "[audit.s3]",
        "[audit]\non_audit_failure = \"continue\"\n[audit.s3]",
    ));
    assert_eq!(controls(&cont), ["AU-5", "AU-9"]);
    let local = parse(&GOOD.replace("[audit.s3]\nbucket = \"trail\"\n", ""));
    let au9 = &gaps(&local)[0];
    assert_eq!(au9.control, "AU-9");
    assert!(au9.fix.contains("--public-key"), "{au9}");
}
