//! The controls a configuration cannot produce evidence for.
//!
//! `report nist` judges each NIST SP 800-53 control from the audit rows of
//! a period. Some settings guarantee that those rows will show a control
//! short of met, whatever traffic comes: anonymous callers leave rows that
//! identify no one, no policy leaves every call allowed by default. This
//! lists them up front, each with the control and the fix, so the agent
//! logs them at start-up and `doctor` prints them, before the evidence is
//! missing rather than after. Pure: it reads the configuration only.

use std::fmt;

use super::{Config, OnAuditFailure};

/// One control the configuration leaves without evidence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EvidenceGap {
    /// The NIST SP 800-53 control, e.g. `IA-2`.
    pub control: &'static str,
    /// What in the configuration leaves it without evidence.
    pub problem: String,
    /// The change that gives it evidence.
    pub fix: String,
}

impl fmt::Display for EvidenceGap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {} (fix: {})", self.control, self.problem, self.fix)
    }
}

fn gap(control: &'static str, problem: impl Into<String>, fix: impl Into<String>) -> EvidenceGap {
    EvidenceGap {
        control,
        problem: problem.into(),
        fix: fix.into(),
    }
}

/// Every control `cfg` cannot produce evidence for, in control order
/// within each area (identity, access, audit, transport).
pub fn gaps(cfg: &Config) -> Vec<EvidenceGap> {
    let mut out = identity(cfg);
    out.extend(access(cfg));
    out.extend(audit(cfg));
    out.extend(transport(cfg));
    out
}

/// IA-2 and AU-10: anonymous callers are served.
fn identity(cfg: &Config) -> Vec<EvidenceGap> {
    if !cfg.identity.allow_anonymous {
        return Vec::new();
    }
    let fix = "configure [[identity.oidc]] or tls.client_ca, then set \
               identity.allow_anonymous = false";
    vec![
        gap(
            "IA-2",
            "identity.allow_anonymous = true: requests without credentials are served as \
             `anonymous`, and their rows identify no one",
            fix,
        ),
        gap(
            "AU-10",
            "identity.allow_anonymous = true: anonymous rows carry no credential (token id or \
             certificate) to bind the call to whoever made it",
            fix,
        ),
    ]
}

/// AC-3 and AC-6: no policy judges the calls.
fn access(cfg: &Config) -> Vec<EvidenceGap> {
    if cfg.policy.enforced() {
        return Vec::new();
    }
    let fix = "write Cedar policies (deploy/policy/examples) and list them in [policy] files";
    vec![
        gap(
            "AC-3",
            "no [policy] files: calls are allowed by default, with no policy_version on their \
             rows, instead of judged by a policy",
            fix,
        ),
        gap(
            "AC-6",
            "no [policy] files: every caller may call every tool, so nothing limits a caller \
             to the tools it needs",
            fix,
        ),
    ]
}

/// AU-2, AU-12, AU-5 and AU-9: whether rows are written, kept through
/// failures, and kept out of reach of whoever controls this host.
fn audit(cfg: &Config) -> Vec<EvidenceGap> {
    let a = &cfg.audit;
    if !a.enabled {
        let fix = "set audit.enabled = true";
        return vec![
            gap("AU-2", "audit.enabled = false: no event is recorded", fix),
            gap(
                "AU-12",
                "audit.enabled = false: no audit record is generated",
                fix,
            ),
        ];
    }
    let mut out = Vec::new();
    if a.on_audit_failure == OnAuditFailure::Continue {
        out.push(gap(
            "AU-5",
            "audit.on_audit_failure = \"continue\": calls are served while the audit cannot \
             be written, so some leave no row",
            "set audit.on_audit_failure = \"block\"",
        ));
    }
    out.push(match &a.s3 {
        None => gap(
            "AU-9",
            "no [audit.s3]: the audit stays on this host only, where whoever can rewrite the \
             files can rewrite the signing key beside them",
            "ship it to a bucket with S3 Object Lock ([audit.s3]; deploy/aws with \
             EnableObjectLock=true) and keep the manifest's public key elsewhere for \
             `report --public-key`",
        ),
        // The configuration has no setting that proves a lock: whether the
        // bucket has one is the bucket's, and the agent cannot see it.
        Some(s3) => gap(
            "AU-9",
            format!(
                "[audit.s3] bucket {:?}: nothing in the configuration shows it has S3 Object \
                 Lock; without it, whoever holds the upload credentials can overwrite or \
                 delete the trail",
                s3.bucket
            ),
            "create the bucket with Object Lock in COMPLIANCE mode (deploy/aws: \
             EnableObjectLock=true) and check it with `aws s3api \
             get-object-lock-configuration`",
        ),
    });
    out
}

/// SC-8: clients may reach the servers in plaintext.
fn transport(cfg: &Config) -> Vec<EvidenceGap> {
    let t = &cfg.tls;
    if !t.enabled() {
        return vec![gap(
            "SC-8",
            "no tls.cert: clients connect in plaintext, and every row's tls_version is null",
            "set tls.cert and tls.key, and tls.require_tls = true",
        )];
    }
    let required = t.require_tls || t.client_auth == super::ClientAuth::Required;
    if required {
        return Vec::new();
    }
    vec![gap(
        "SC-8",
        "tls.require_tls = false: plaintext clients are still served beside TLS ones",
        "set tls.require_tls = true",
    )]
}

#[cfg(test)]
mod tests;
