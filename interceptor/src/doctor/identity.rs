//! Doctor checks for `[tls]`, `[identity]` and `[policy]`: the files load,
//! the server certificate is not about to expire, every issuer answers with
//! keys, the policy validates.

use super::{Check, Status, fail, ok};
use crate::{config::Config, identity::oidc::Issuer, proxy::tls};

pub fn checks(cfg: &Config) -> Vec<Check> {
    let mut out = Vec::new();
    match tls::server(&cfg.tls) {
        Ok(None) => out.push(ok("tls", "off: plaintext only (no tls.cert)")),
        Ok(Some(t)) => {
            out.push(expiry(cfg));
            out.push(ok("tls", tls::plaintext_policy(&cfg.tls)));
            if t.verifier.is_some() {
                out.push(ok(
                    "mtls",
                    format!(
                        "client certificates re-verified per request; no session resumption; \
                         connections closed after {} s",
                        cfg.tls.max_connection_age_seconds
                    ),
                ));
            }
        }
        Err(e) => out.push(fail(
            "tls",
            e.to_string(),
            "fix the [tls] files, then SIGHUP the agent",
        )),
    }
    if !cfg.identity.oidc.is_empty() {
        // The probes run in the agent's namespace (doctor entered it), so
        // they reach the issuer the way the agent does.
        match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(rt) => {
                for o in &cfg.identity.oidc {
                    let issuer = Issuer::new(o.clone());
                    out.push(match rt.block_on(issuer.probe()) {
                        Ok(n) => ok("oidc", format!("{}: {n} signing key(s)", o.issuer)),
                        Err(e) => fail(
                            "oidc",
                            format!("{}: {e}", o.issuer),
                            "check the issuer URL and that this host can reach it",
                        ),
                    });
                }
            }
            Err(e) => out.push(fail("oidc", format!("no runtime: {e}"), "report a bug")),
        }
    }
    if !cfg.identity.allow_anonymous && cfg.identity.oidc.is_empty() {
        out.push(ok("identity", "mTLS only: clients need a certificate"));
    } else if cfg.identity.allow_anonymous {
        out.push(Check {
            name: "identity",
            status: Status::Warn,
            detail: "allow_anonymous = true: requests without credentials are served".into(),
            hint: Some(
                "configure [[identity.oidc]] or tls.client_ca and set identity.allow_anonymous = false"
                    .into(),
            ),
        });
    }
    out.push(policy(cfg));
    out
}

fn policy(cfg: &Config) -> Check {
    if let Some(src) = &cfg.policy.source {
        return ok(
            "policy",
            format!("signed policy bundle from {src}, checked by the agent at start and each poll"),
        );
    }
    if cfg.policy.files.is_empty() {
        return Check {
            name: "policy",
            status: Status::Warn,
            detail: "no [policy] files: every identified caller may call anything".into(),
            hint: Some(
                "write Cedar policies (examples: /usr/share/mcp-interceptor/policy/examples) and list them in [policy] files"
                    .into(),
            ),
        };
    }
    match crate::policy::Policies::load(&cfg.policy.files) {
        Ok(p) if p.count == 0 => Check {
            name: "policy",
            status: Status::Warn,
            detail: "no policies in [policy] files: every call is denied".into(),
            hint: Some(
                "write a first policy (examples: /usr/share/mcp-interceptor/policy/examples)"
                    .into(),
            ),
        },
        Ok(p) => ok(
            "policy",
            format!("{} policies, version {}", p.count, &p.version[..12]),
        ),
        Err(e) => fail(
            "policy",
            e.to_string(),
            "fix the policy, then `mcp-interceptor check-config -c FILE`",
        ),
    }
}

/// Warns 14 days before the server certificate expires.
fn expiry(cfg: &Config) -> Check {
    let Some(path) = &cfg.tls.cert else {
        return ok("tls", "off");
    };
    let leaf = tls::read_certs(path)
        .ok()
        .and_then(|c| c.into_iter().next())
        .and_then(|der| tls::parse_peer(der.as_ref()).ok());
    let Some(leaf) = leaf else {
        return fail(
            "tls",
            format!("{}: unreadable leaf", path.display()),
            "fix tls.cert",
        );
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let days = (leaf.not_after - now) / 86_400;
    let detail = format!(
        "{} ({}), expires in {days} day(s)",
        path.display(),
        leaf.subject
    );
    if leaf.not_after <= now {
        fail(
            "tls",
            detail,
            "renew the server certificate, then SIGHUP the agent",
        )
    } else if days < 14 {
        Check {
            name: "tls",
            status: Status::Warn,
            detail,
            hint: Some("renew the server certificate soon".into()),
        }
    } else {
        ok("tls", detail)
    }
}
