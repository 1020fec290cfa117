use std::net::IpAddr;

use super::*;
use crate::config::{Config, PortRule};

#[test]
fn dest_key_matches_kernel_byte_order() {
    // bpf_sk_lookup.local_ip4 holds the address in network byte order; read
    // as a native u32 on this host, 127.0.0.1 is bytes 7f 00 00 01.
    let k = dest_key("127.0.0.1".parse().unwrap(), 8080);
    assert_eq!(k.addr[0].to_ne_bytes(), [127, 0, 0, 1]);
    assert_eq!(k.family, FAMILY_V4);
    let v6: IpAddr = "2001:db8::1".parse().unwrap();
    let k6 = dest_key(v6, 9);
    assert_eq!(k6.addr[0].to_ne_bytes(), [0x20, 0x01, 0x0d, 0xb8]);
    assert_eq!(k6.addr[3].to_ne_bytes(), [0, 0, 0, 1]);
    assert_eq!(key_addr(&k6), Some(v6));
    assert_eq!(key_addr(&DestKey::any(9)), None);
}

#[test]
fn desired_keys_expand_addresses_or_wildcard() {
    let mut cfg = Config::default().intercept;
    cfg.ports = vec![
        PortRule {
            port: 1,
            addresses: vec![],
            upstream: None,
            listen: vec![],
            mcp_paths: vec![],
            ..Default::default()
        },
        PortRule {
            port: 2,
            addresses: vec!["10.0.0.1".parse().unwrap(), "::1".parse().unwrap()],
            upstream: None,
            listen: vec![],
            mcp_paths: vec![],
            ..Default::default()
        },
    ];
    let keys: Vec<_> = desired_keys(&cfg)
        .into_iter()
        .map(|k| (k.0.port, key_addr(&k.0)))
        .collect();
    assert_eq!(
        keys,
        vec![
            (1, None),
            (2, Some("10.0.0.1".parse().unwrap())),
            (2, Some("::1".parse().unwrap())),
        ]
    );
}

#[test]
fn settings_carry_fail_mode_and_bypass() {
    let mut cfg = Config::default().intercept;
    assert_eq!(settings_for(&cfg).fail_open, 0);
    cfg.fail = FailMode::Open;
    cfg.bypass_ports = crate::config::PortRange {
        start: 800,
        end: 810,
    };
    let s = settings_for(&cfg);
    assert_eq!(
        (s.fail_open, s.bypass_port_lo, s.bypass_port_hi),
        (1, 800, 810)
    );
    assert_eq!(s.agent_pid, std::process::id());
}
