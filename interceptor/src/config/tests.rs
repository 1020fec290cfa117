use std::path::Path;

use super::*;

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::parse(text, Path::new("test.toml"))
}

const MIN: &str = "[identity]\nallow_anonymous = true\n[[intercept.ports]]\nport = 8080\n";
const PORT: &str = "[[intercept.ports]]\nport = 8080\n";

#[test]
fn no_identity_source_is_an_error_not_an_open_door() {
    let err = parse(PORT).expect_err("must fail").to_string();
    assert!(err.contains("no way to identify callers"), "{err}");
    let cfg = parse(&format!(
        "{PORT}[[identity.oidc]]\nissuer = \"https://idp.example\"\naudiences = [\"https://mcp.example/mcp\"]\n"
    ))
    .expect("oidc is a way");
    assert!(!cfg.identity.allow_anonymous);
    assert_eq!(cfg.identity.oidc[0].groups_claim, "groups");
    assert_eq!(cfg.identity.oidc[0].leeway_seconds, 30);
}

#[test]
fn identity_and_tls_mistakes_name_the_key() {
    let oidc = |extra: &str| {
        format!("{PORT}[[identity.oidc]]\nissuer = \"https://i\"\naudiences = [\"a\"]\n{extra}")
    };
    let cases = [
        (oidc("algorithms = [\"HS256\"]\n"), "not allowed"),
        (oidc("algorithms = [\"none\"]\n"), "not allowed"),
        (
            format!("{PORT}[[identity.oidc]]\nissuer = \"https://i\"\naudiences = []\n"),
            "audiences is empty",
        ),
        (
            format!("{PORT}[[identity.oidc]]\nissuer = \"ftp://i\"\naudiences = [\"a\"]\n"),
            "http(s) URL",
        ),
        (format!("{MIN}[tls]\ncert = \"/c.pem\"\n"), "both `cert` and `key`"),
        (format!("{MIN}[tls]\nrequire_tls = true\n"), "need a server"),
        (
            format!("{MIN}[tls]\ncert = \"/c\"\nkey = \"/k\"\nclient_auth = \"required\"\n"),
            "needs tls.client_ca",
        ),
        (
            format!("{MIN}[tls]\nmax_connection_age_seconds = 0\n"),
            "max_connection_age_seconds must be",
        ),
        (
            format!("{MIN}[tls]\nmax_connection_age_seconds = 86401\n"),
            "max_connection_age_seconds must be",
        ),
        (
            format!("{MIN}[identity.upstream_credential]\nvalue_file = \"/f\"\ncommand = [\"x\"]\n"),
            "exactly one",
        ),
        (
            "[identity]\nallow_anonymous = true\n[[intercept.ports]]\nport = 1\nupstream_server_name = \"x\"\n".to_string(),
            "needs upstream_tls",
        ),
    ];
    for (text, want) in cases {
        let err = parse(&text).expect_err(&text).to_string();
        assert!(err.contains(want), "{text:?}: {err}");
    }
}

#[test]
fn minimal_config_gets_safe_defaults() {
    let cfg = parse(MIN).expect("valid");
    assert_eq!(cfg.intercept.mode, Mode::Ebpf);
    assert_eq!(cfg.intercept.fail, FailMode::Closed);
    assert_eq!(
        cfg.intercept.bypass_ports,
        PortRange {
            start: 700,
            end: 1023
        }
    );
    assert_eq!(cfg.intercept.proxy_listen.len(), 2);
    assert_eq!(cfg.rule(8080).map(|r| r.upstream), Some(None));
    assert!(cfg.rule(8081).is_none());
}

#[test]
fn unknown_keys_are_errors_at_every_level() {
    for text in [
        "bogus = 1\n[[intercept.ports]]\nport = 8080\n",
        "[intercept]\nfial = \"open\"\n[[intercept.ports]]\nport = 8080\n",
        "[[intercept.ports]]\nport = 8080\nupstrem = \"127.0.0.1:1\"\n",
        "[log]\nlevle = \"debug\"\n[[intercept.ports]]\nport = 8080\n",
    ] {
        let err = parse(text).expect_err(text).to_string();
        assert!(err.contains("unknown field"), "{text}: {err}");
    }
}

#[test]
fn invalid_values_name_the_key() {
    let cases = [
        ("", "intercept.ports is empty"),
        ("[[intercept.ports]]\nport = 0\n", "port 0"),
        (
            "[[intercept.ports]]\nport = 1\n[[intercept.ports]]\nport = 1\n",
            "listed twice",
        ),
        (
            "[intercept]\nmode = \"listen\"\n[[intercept.ports]]\nport = 1\n",
            "needs `upstream`",
        ),
        (
            "[intercept]\nbypass_ports = { start = 1000, end = 2000 }\n[[intercept.ports]]\nport = 1\n",
            "below 1024",
        ),
        (
            "[intercept]\nbypass_ports = { start = 900, end = 800 }\n[[intercept.ports]]\nport = 1\n",
            "is empty",
        ),
        (
            "[intercept]\nproxy_listen = [\"127.0.0.1:8080\"]\n[[intercept.ports]]\nport = 8080\n",
            "loop",
        ),
        (
            "[intercept]\nproxy_listen = [\"127.0.0.1:1\", \"127.0.0.2:2\"]\n[[intercept.ports]]\nport = 8080\n",
            "at most one IPv4",
        ),
        (
            "[[intercept.ports]]\nport = 8080\nlisten = [\"0.0.0.0:1\"]\n",
            "listen mode only",
        ),
        ("[intercept]\nmode = \"sideways\"\n", "unknown variant"),
        (
            "[log]\nlevel = \"info,[\"\n[[intercept.ports]]\nport = 1\n",
            "log.level",
        ),
    ];
    for (text, want) in cases {
        // Valid identity, so the error is the one under test.
        let text = &format!("[identity]\nallow_anonymous = true\n{text}");
        let err = parse(text).expect_err(text).to_string();
        assert!(err.contains(want), "{text:?}: {err}");
    }
}

#[test]
fn example_config_in_deploy_is_valid() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/config.example.toml");
    let cfg = Config::load(&path).expect("deploy/config.example.toml must stay valid");
    assert!(!cfg.intercept.ports.is_empty());
}

#[test]
fn effective_config_round_trips() {
    let cfg = parse(MIN).expect("valid");
    let text = toml::to_string(&cfg).expect("serializes");
    assert_eq!(parse(&text).expect("reparses"), cfg);
}

/// `pass_through` and `mcp_paths` entries have one reading; only a final
/// `/*` of `pass_through` is a pattern. Nothing passes through by default.
#[test]
fn path_lists_are_checked_and_pass_through_is_empty_by_default() {
    let cfg = parse(MIN).unwrap();
    assert!(cfg.intercept.ports[0].pass_through.is_empty());
    let ok = parse(&format!(
        "{MIN}pass_through = [\"/healthz\", \"/api/*\", \"/*\"]\nmcp_paths = [\"/\", \"/MCP/\"]\n"
    ));
    assert!(ok.is_ok(), "{ok:?}");
    for (line, want) in [
        ("pass_through = [\"healthz\"]", "absolute path"),
        ("pass_through = [\"/a*\"]", "only a final"),
        ("pass_through = [\"/a/*/b\"]", "only a final"),
        ("pass_through = [\"/a/../b\"]", "dot segment"),
        ("pass_through = [\"/a?x=1\"]", "only a final"),
        ("mcp_paths = [\"/mcp/*\"]", "only a final"),
        ("mcp_paths = [\"/m%2fcp\"]", "escapes a delimiter"),
        ("mcp_paths = [\"mcp\"]", "absolute path"),
    ] {
        let err = parse(&format!("{MIN}{line}\n"))
            .expect_err(line)
            .to_string();
        assert!(err.contains(want), "{line}: {err}");
    }
}

#[test]
fn tls_connections_have_a_maximum_age_by_default() {
    let cfg = parse(MIN).expect("minimal config");
    assert_eq!(cfg.tls.max_connection_age_seconds, 3600);
    let cfg = parse(&format!("{MIN}[tls]\nmax_connection_age_seconds = 60\n")).expect("60 s");
    assert_eq!(cfg.tls.max_connection_age_seconds, 60);
}

#[test]
fn validation_errors_say_whether_a_value_or_a_combination_is_wrong() {
    let invalid = |text: &str| match parse(text) {
        Err(ConfigError::Invalid { path, error }) => {
            assert_eq!(path, Path::new("test.toml"));
            error
        }
        other => panic!("{text}: {other:?}"),
    };
    let e = invalid(&format!("{MIN}[http]\nmax_connections = 0\n"));
    assert_eq!(
        e,
        ValidationError::Invalid("http.max_connections must be greater than 0".into())
    );
    let e = invalid(&format!("{MIN}[tls]\ncert = \"/c.pem\"\n"));
    assert_eq!(
        e,
        ValidationError::Conflict("tls: set both `cert` and `key`, or neither".into())
    );
    // The file name is added once, in front of the unchanged text.
    let shown = parse(&format!("{MIN}[tls]\ncert = \"/c.pem\"\n"))
        .expect_err("half a key pair")
        .to_string();
    assert_eq!(
        shown,
        "test.toml: tls: set both `cert` and `key`, or neither"
    );
    assert!(matches!(
        parse("intercept = 3\n"),
        Err(ConfigError::Parse { .. })
    ));
}

#[test]
fn audit_host_is_a_plain_name_or_a_fleet_user_id() {
    // The fleet role of deploy/aws scopes keys by ${aws:userid}.
    for ok in [
        "ip-10-0-0-12",
        "web_1.prod",
        "AROAEXAMPLEROLEID0001:i-0123456789abcdef0",
    ] {
        let text = format!("{MIN}[audit]\nhost = \"{ok}\"\n");
        let cfg = parse(&text).unwrap_or_else(|e| panic!("{ok}: {e}"));
        assert_eq!(cfg.audit.host.as_deref(), Some(ok));
    }
    for bad in ["", ".hidden", "a/b", "../up", "a b", "x*"] {
        let text = format!("{MIN}[audit]\nhost = \"{bad}\"\n");
        let err = parse(&text).expect_err(bad).to_string();
        assert!(err.contains("audit.host"), "{bad:?}: {err}");
    }
}

#[test]
fn a_bundle_source_needs_pinned_keys_and_excludes_files() {
    let key = "ab".repeat(32);
    let cfg = parse(&format!(
        "{MIN}[policy]\nsource = \"s3://pol/fleet/a//\"\nbundle_keys = [\"{key}\"]\n"
    ))
    .expect("valid");
    assert!(cfg.policy.enforced());
    assert_eq!(
        cfg.policy.source_location(),
        Some(("pol".into(), "fleet/a/".into()))
    );
    assert_eq!(s3_location("s3://pol"), Some(("pol".into(), String::new())));
    let cases = [
        (
            "source = \"s3://pol/\"\n".to_string(),
            "needs policy.bundle_keys",
        ),
        (
            format!("source = \"https://pol/\"\nbundle_keys = [\"{key}\"]\n"),
            "s3://bucket",
        ),
        (
            format!("source = \"s3:///x\"\nbundle_keys = [\"{key}\"]\n"),
            "s3://bucket",
        ),
        (
            "source = \"s3://pol/\"\nbundle_keys = [\"abcd\"]\n".to_string(),
            "64 hex digits",
        ),
        (
            format!("source = \"s3://pol/\"\nbundle_keys = [\"{key}\"]\nfiles = [\"/p\"]\n"),
            "exclusive",
        ),
    ];
    for (keys, want) in cases {
        let err = parse(&format!("{MIN}[policy]\n{keys}"))
            .expect_err(&keys)
            .to_string();
        assert!(err.contains(want), "{keys}: {err}");
    }
}

#[test]
fn bundle_settings_replace_only_policy_keys() {
    let local = parse(&format!(
        "{MIN}[approvals]\nvalid_seconds = 100\npending_seconds = 200\ndb = \"/var/a.db\"\n"
    ))
    .expect("valid");
    let s = BundleSettings::parse(
        "[approvals]\nvalid_seconds = 60\ngrant_groups = [\"leads\"]\n\
         [mask]\ndefault_profile = \"strict\"\n[mask.profiles.strict]\ndetectors = [\"email\"]\n",
    )
    .expect("parses");
    let eff = s.apply(&local).expect("applies");
    assert_eq!(eff.approvals.valid_seconds, 60);
    assert_eq!(eff.approvals.pending_seconds, 200, "unset keys stay local");
    assert_eq!(eff.approvals.grant_groups, ["leads"]);
    assert_eq!(
        eff.approvals.db, local.approvals.db,
        "where things live stays local"
    );
    assert_eq!(eff.mask.default_profile, "strict");
    assert!(eff.mask.profiles.contains_key("strict"));
    // Host keys are not a bundle's to set, and a bad value fails as a whole.
    for text in [
        "[approvals]\ndb = \"/tmp/x.db\"\n",
        "[mask]\nhash_key = \"/tmp/k\"\n",
        "[policy]\nfiles = []\n",
    ] {
        assert!(BundleSettings::parse(text).is_err(), "{text}");
    }
}

#[test]
fn process_rules_are_a_way_to_identify_callers_and_are_checked() {
    let cfg = parse(&format!(
        "{PORT}[[identity.process.rules]]\nunit = \"ai-agent.service\"\nsubject = \"svc:ai-agent\"\n"
    ))
    .expect("three lines admit a systemd service");
    let r = &cfg.identity.process.rules[0];
    assert_eq!(
        (r.unit.as_deref(), r.groups.len()),
        (Some("ai-agent.service"), 0)
    );
    assert_eq!(cfg.identity.process.user_cache_seconds, 300);
    let rule = |body: &str| format!("{PORT}[[identity.process.rules]]\n{body}\n");
    for (body, says) in [
        ("subject = \"x\"", "no condition"),
        ("subject = \" \"\nuid = 1", "subject is empty"),
        (
            "subject = \"x\"\nunit = \"ai-agent\"",
            "ending in .service or .scope",
        ),
        (
            "subject = \"x\"\nunit = \"/system.slice/a.service\"",
            "unit name",
        ),
        (
            "subject = \"x\"\ncgroup = \"system.slice/*\"",
            "starting with /",
        ),
        ("subject = \"x\"\nexe = \"python3\"", "absolute path"),
        ("subject = \"x\"\nexe_sha256 = \"abc\"", "64 hex digits"),
        (
            "subject = \"x\"\nuid = 1\ngroups = [\"\"]",
            "a group is empty",
        ),
        ("subject = \"x\"\nuid = 1\ncomm = \"sh\"", "unknown field"),
    ] {
        let err = parse(&rule(body)).expect_err(body).to_string();
        assert!(err.contains(says), "{body}: {err}");
    }
    let err = parse(&format!(
        "{MIN}[identity.process]\nuser_cache_seconds = 0\n"
    ))
    .expect_err("zero")
    .to_string();
    assert!(err.contains("user_cache_seconds"), "{err}");
}
