//! What steering leaves uncovered: server sockets bound wider than their
//! rule, and steered ports other users listen on too.

use super::{Check, Status, ok};
use crate::{config::Config, steer::listeners};

/// One check per uncovered listener, or one `ok`.
pub fn listeners(cfg: &Config) -> Vec<Check> {
    let all = match listeners::read() {
        Ok(l) => l,
        Err(e) => {
            return vec![Check {
                name: "listeners",
                status: Status::Warn,
                detail: format!("cannot read /proc/thread-self/net/tcp: {e}"),
                hint: Some("is /proc mounted?".into()),
            }];
        }
    };
    let mut out = Vec::new();
    for w in listeners::wider(&cfg.intercept, &all) {
        out.push(Check {
            name: "listeners",
            status: Status::Fail,
            detail: format!("{} is wider than its rule", w.listener),
            hint: Some(w.to_string()),
        });
    }
    for (port, on) in listeners::shared_ports(&cfg.intercept, &all) {
        let socks: Vec<String> = on
            .iter()
            .map(|l| format!("{} (uid {})", l.addr, l.uid))
            .collect();
        out.push(Check {
            name: "listeners",
            status: Status::Fail,
            detail: format!(
                "a second listener on steered port {port}: {}",
                socks.join(", ")
            ),
            hint: Some(
                "calls to each address are forwarded there with the upstream credential; set \
                 the rule's `upstream` to the server's address, or stop the other socket"
                    .into(),
            ),
        });
    }
    if out.is_empty() {
        out.push(ok(
            "listeners",
            "every server socket on a steered port is covered by its rule",
        ));
    }
    out
}
