use std::path::Path;

use crate::config::{Config, ConfigError};

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::parse(
        &format!("[identity]\nallow_anonymous = true\n{text}"),
        Path::new("t.toml"),
    )
}

#[test]
fn fail_open_needs_a_proxy_socket_for_every_family_a_rule_steers() {
    let v4_only = "[intercept]\nfail = \"open\"\nproxy_listen = [\"127.0.0.1:15001\"]\n";
    let err = parse(&format!("{v4_only}[[intercept.ports]]\nport = 8080\n"))
        .expect_err("IPv6 would pass unguarded")
        .to_string();
    assert!(
        err.contains("no IPv6 address while fail = \"open\""),
        "{err}"
    );
    assert!(err.contains("[::1]:15001"), "names the fix: {err}");
    // Fail closed drops what has no socket: allowed.
    parse("[intercept]\nproxy_listen = [\"127.0.0.1:15001\"]\n[[intercept.ports]]\nport = 8080\n")
        .expect("closed is safe");
    // A rule that steers IPv4 addresses only needs no IPv6 socket.
    parse(&format!(
        "{v4_only}[[intercept.ports]]\nport = 8080\naddresses = [\"127.0.0.1\"]\n"
    ))
    .expect("IPv4-only rule");
    let v6_only = "[intercept]\nfail = \"open\"\nproxy_listen = [\"[::1]:15001\"]\n";
    let err = parse(&format!(
        "{v6_only}[[intercept.ports]]\nport = 8080\naddresses = [\"::1\", \"10.0.0.1\"]\n"
    ))
    .expect_err("IPv4 would pass")
    .to_string();
    assert!(err.contains("no IPv4 address"), "{err}");
}

#[test]
fn upstream_budgets_default_from_the_bypass_range_and_must_fit_it() {
    let cfg = parse("[[intercept.ports]]\nport = 8080\n").expect("defaults");
    let l = cfg.upstream_limits();
    assert_eq!((l.streams, l.requests), (129, 195));
    assert_eq!((l.streams_per_caller, l.requests_per_caller), (16, 64));
    let narrow = "[intercept]\nbypass_ports = { start = 1000, end = 1009 }\n\
                  [[intercept.ports]]\nport = 8080\n";
    let l = parse(narrow).expect("derived").upstream_limits();
    assert_eq!((l.streams, l.requests), (4, 6));
    assert_eq!((l.streams_per_caller, l.requests_per_caller), (4, 6));
    parse(&format!("{narrow}[http]\nmax_upstream_streams = 8\n")).expect("8 + derived 2 fit");
    let err = parse(&format!(
        "{narrow}[http]\nmax_upstream_streams = 8\nmax_upstream_requests = 4\n"
    ))
    .expect_err("8 + 4 do not")
    .to_string();
    assert!(err.contains("exceed the 10 ports"), "{err}");
    let err =
        parse("[[intercept.ports]]\nport = 8080\n[http]\nmax_upstream_streams_per_caller = 0\n")
            .expect_err("zero")
            .to_string();
    assert!(
        err.contains("max_upstream_streams_per_caller must be"),
        "{err}"
    );
}
