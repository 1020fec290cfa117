use super::*;
use crate::config::PortRule;

const TCP: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 100 1 0 100 0 0 10 0
   1: 0200007F:1F91 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 101 1 0 100 0 0 10 0
   2: 0100007F:1F90 0100007F:9C40 01 00000000:00000000 00:00000000 00000000     0        0 102 1 0 100 0 0 10 0
";
const TCP6: &str = "  sl  local_address                         remote_address                        st
   0: 00000000000000000000000001000000:1F90 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 103 1
";

fn all() -> Vec<Listener> {
    TCP.lines()
        .chain(TCP6.lines())
        .skip(1)
        .filter_map(parse)
        .collect()
}

#[test]
fn listening_sockets_parse_from_proc_net() {
    let l = all();
    let addrs: Vec<String> = l.iter().map(|l| l.addr.to_string()).collect();
    assert_eq!(addrs, ["0.0.0.0:8080", "127.0.0.2:8081", "[::1]:8080"]);
    assert_eq!(l[1].uid, 1000);
}

fn cfg(rules: Vec<PortRule>) -> Intercept {
    Intercept {
        ports: rules,
        ..Intercept::default()
    }
}

#[test]
fn a_wildcard_or_other_address_is_wider_than_a_rule_with_addresses() {
    let rule = |port, addresses: &[&str]| PortRule {
        port,
        addresses: addresses.iter().map(|a| a.parse().unwrap()).collect(),
        ..PortRule::default()
    };
    let w = wider(&cfg(vec![rule(8080, &["127.0.0.2"])]), &all());
    let found: Vec<String> = w.iter().map(|w| w.listener.to_string()).collect();
    assert_eq!(found, ["0.0.0.0:8080", "[::1]:8080"]);
    assert!(w[0].to_string().contains("remove `addresses`"), "{}", w[0]);
    assert!(wider(&cfg(vec![rule(8081, &["127.0.0.2"])]), &all()).is_empty());
    assert!(
        wider(&cfg(vec![rule(8080, &[])]), &all()).is_empty(),
        "every address steered"
    );
}

#[test]
fn listeners_of_two_owners_on_a_steered_port_are_named() {
    let mut l = all();
    l.push(Listener {
        addr: "127.0.0.2:8080".parse().unwrap(),
        uid: 1000,
    });
    let rule = PortRule {
        port: 8080,
        ..PortRule::default()
    };
    let shared = shared_ports(&cfg(vec![rule.clone()]), &l);
    assert_eq!(shared.len(), 1);
    assert_eq!(shared[0].1.len(), 3);
    let pinned = PortRule {
        upstream: Some("127.0.0.1:8080".parse().unwrap()),
        ..rule
    };
    assert!(shared_ports(&cfg(vec![pinned]), &l).is_empty());
}
