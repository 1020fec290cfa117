use std::net::IpAddr;

use super::*;
use crate::config::{Config, PortRule};
use capacity::{check, needs};

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

fn rule(port: u16, addresses: usize) -> PortRule {
    PortRule {
        port,
        addresses: (0..addresses)
            .map(|i| std::net::Ipv4Addr::from(0x0a00_0000 + i as u32).into())
            .collect(),
        ..Default::default()
    }
}

#[test]
fn needs_count_address_pairs_and_distinct_ports() {
    let mut cfg = Config::default().intercept;
    cfg.ports = vec![rule(1, 0), rule(2, 3), rule(3, 1)];
    assert_eq!(needs(&cfg), [(MAP_PORTS, 5), (MAP_COUNTERS, 3)]);
}

#[test]
fn a_config_that_fits_exactly_passes_and_one_more_is_refused() {
    let mut cfg = Config::default().intercept;
    cfg.ports = vec![rule(8080, 1023), rule(8081, 0)];
    check(&cfg, |_| Ok(1024)).expect("1024 rules fit in 1024");
    cfg.ports.push(rule(8082, 0));
    let err = check(&cfg, |_| Ok(1024)).unwrap_err();
    let text = err.to_string();
    assert!(
        matches!(
            err,
            SteerError::Capacity {
                map: MAP_PORTS,
                need: 1025,
                capacity: 1024,
                ..
            }
        ),
        "{text}"
    );
    assert!(
        text.contains("MCPI_PORTS") && text.contains("1024") && text.contains("addresses"),
        "names the map, its size and the fix: {text}"
    );
}

#[test]
fn the_counters_map_is_checked_against_distinct_ports() {
    let mut cfg = Config::default().intercept;
    cfg.ports = (1..=3).map(|p| rule(p, 0)).collect();
    let cap = |m: &'static str| Ok(if m == MAP_COUNTERS { 2 } else { 10 });
    let err = check(&cfg, cap).unwrap_err();
    assert!(
        matches!(
            err,
            SteerError::Capacity {
                map: MAP_COUNTERS,
                need: 3,
                capacity: 2,
                ..
            }
        ),
        "{err}"
    );
}
