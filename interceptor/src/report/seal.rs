//! The controls on the trail's seal: AU-9 (protection of audit
//! information) and AU-10 (non-repudiation). Both rest on the manifest
//! chain, and on how it was checked: a chain checked with the public key
//! stored beside it proves consistency, not origin, since whoever can
//! rewrite the files can rewrite that key too.

use super::{
    Loaded,
    judge::{Tally, by_rows, setting_gap, worse},
    nist::*,
};
use crate::audit::schema::AuditRow;

/// AU-9's rule, as printed under its status.
pub const AU9_RULE: &str = "Met when `audit verify` finds the chain intact under a pinned public key (--public-key), every data file of the period is closed to other users, and the trail is not on S3 (whose Object Lock the report cannot check); partial when intact but any of these falls short; not met when the chain breaks.";
/// AU-10's rule.
pub const AU10_RULE: &str = "Met when every exchange row (refusals before identification aside) binds a verified subject and a credential id (token_id or cert_fingerprint) and the chain is intact under a pinned key, off S3; not met when the chain breaks or no row carries both; partial in between, or when the chain's key is not pinned.";

const PIN_KEY: &str = "pass --public-key with the key recorded at deployment (the agent logs it at start: \"audit trail open ... public_key=\")";

/// How the chain was checked.
pub struct Seal<'a> {
    /// `audit verify`'s outcome.
    pub verify: &'a Verify,
    /// Whether the key was pinned (`--public-key`).
    pub pinned: bool,
    /// Whether the trail is shipped to S3.
    pub s3: bool,
}

impl Seal<'_> {
    /// The status the seal alone allows, and its gaps.
    fn judge(&self) -> (Status, Vec<Gap>) {
        if let Verify::Broken(b) = self.verify {
            let gap = setting_gap(
                format!("audit verify: FAIL: {b}"),
                &b.path,
                "treat the trail as tampered from that point: restore the file from an independent copy (the S3 bucket) and find who changed it",
            );
            return (Status::NotMet, vec![gap]);
        }
        let mut gaps = Vec::new();
        if !self.pinned {
            gaps.push(setting_gap(
                "the chain was checked with the public key stored beside the manifest: whoever can rewrite the files can rewrite that key too",
                "manifest/<host>/public-key.hex",
                PIN_KEY,
            ));
        }
        if self.s3 {
            gaps.push(setting_gap(
                "the trail is shipped to S3, and the report cannot check that the bucket holds it under Object Lock",
                "[audit.s3], or an outbox/ in the audit directory",
                "enable S3 Object Lock (compliance mode, with a retention period) on the bucket, and keep `aws s3api get-object-lock-configuration` output with this report",
            ));
        }
        let status = if gaps.is_empty() {
            Status::Met
        } else {
            Status::Partial
        };
        (status, gaps)
    }
}

pub(super) fn au9(
    seal: &Seal<'_>,
    keys: &[Key],
    (private, files): (usize, usize),
    loaded: &Loaded,
) -> Control {
    let (mut status, mut gaps) = seal.judge();
    if private < files {
        status = worse(status, Status::Partial);
        gaps.push(setting_gap(
            format!(
                "{} data files of the period are readable by other users",
                of(files - private, files)
            ),
            "files under events/ whose mode gives others any access",
            "chmod o-rwx them (the agent writes 0640 files in 0750 directories; a copy or restore widened them)",
        ));
    }
    if let Verify::Intact(r) = seal.verify
        && r.entries == 0
    {
        status = Status::NotAssessed;
    }
    let verdict = match seal.verify {
        Verify::Intact(r) => format!(
            "chain intact ({} entries) under {}; {} files of the period private",
            r.entries,
            if seal.pinned {
                "the pinned key"
            } else {
                "the stored key"
            },
            of(private, files)
        ),
        Verify::Broken(_) => "chain broken".into(),
    };
    let mut facts = match seal.verify {
        Verify::Intact(r) => vec![
            fact(
                "audit verify",
                "ok: chain and signatures intact, every file matches its entry",
            ),
            fact("Hosts", r.hosts.join(", ")),
            fact("Signed manifest entries", r.entries),
            fact("Data files covered", r.files),
            fact("Rows in signed files (whole directory)", r.rows),
        ],
        Verify::Broken(b) => vec![fact("audit verify", format!("FAIL: {b}"))],
    };
    facts.push(fact(
        "Files of the period not readable by other users",
        of(private, files),
    ));
    facts.push(fact(
        "WAL segments not yet in signed files",
        loaded.sources.pending_wal_segments,
    ));
    Control {
        id: "AU-9",
        title: "Protection of audit information",
        asks: "Audit records and tools are protected from unauthorized reading, change and deletion.",
        how: "Files are written once (0640 in 0750 directories) and each closed file gets an Ed25519-signed manifest entry that chains the previous entry's hash; `audit verify` names any changed, added, deleted or reordered file or entry.",
        status,
        rule: AU9_RULE,
        verdict,
        gaps,
        facts,
        tables: vec![Table {
            caption: "Signing keys (Ed25519)".into(),
            head: vec!["host", "public key", "SHA-256 fingerprint"],
            rows: keys
                .iter()
                .map(|k| vec![k.host.clone(), k.public_key.clone(), k.fingerprint.clone()])
                .collect(),
        }],
        samples_caption: "The evidence is the manifest chain, not rows".into(),
        samples: Vec::new(),
        note: Some("`audit verify` checks the whole directory, not only the period.".into()),
    }
}

pub(super) fn au10(seal: &Seal<'_>, ex: &[&AuditRow]) -> Control {
    let verify = seal.verify;
    let identified: Vec<&&AuditRow> = ex.iter().filter(|r| !before_identity(r)).collect();
    let verified = |r: &AuditRow| {
        r.subject.is_some() && matches!(r.auth_method.as_deref(), Some("oidc" | "mtls"))
    };
    let anonymous = Tally::of(identified.iter().map(|r| **r), verified);
    let no_id = Tally::of(
        identified.iter().map(|r| **r).filter(|r| verified(r)),
        |r| r.token_id.is_some() || r.cert_fingerprint.is_some(),
    );
    let short = anonymous.short.len() + no_id.short.len();
    let (sealed, seal_gaps) = seal.judge();
    let status = match sealed {
        Status::NotMet => Status::NotMet,
        s => worse(by_rows(identified.len(), short), s),
    };
    let mut gaps: Vec<Gap> = anonymous
        .gap(
            "exchange rows",
            "bind no verified subject (anonymous): nobody can be held to them",
            "auth_method = 'anonymous' OR auth_method IS NULL",
            "add [[identity.oidc]] (or [identity.mtls]) and set [identity] allow_anonymous = false",
        )
        .into_iter()
        .collect();
    gaps.extend(no_id.gap(
        "identified exchange rows",
        "carry no credential id (token_id or cert_fingerprint)",
        "token_id IS NULL AND cert_fingerprint IS NULL",
        "have the issuer put a jti claim in its tokens, or identify callers by mTLS certificate",
    ));
    gaps.extend(seal_gaps);
    Control {
        id: "AU-10",
        title: "Non-repudiation",
        asks: "It can be shown who performed an action, so that the actor cannot credibly deny it.",
        how: "Each row is bound to the verified identity behind the request (OIDC token or client certificate, with token id or certificate fingerprint), and the rows are sealed by an Ed25519-signed hash chain.",
        status,
        rule: AU10_RULE,
        verdict: format!(
            "{} of {} exchange rows bind a verified subject and a credential id; chain {}",
            identified.len() - short,
            identified.len(),
            match (verify, seal.pinned) {
                (Verify::Broken(_), _) => "broken",
                (_, true) => "intact under the pinned key",
                (_, false) => "intact under the stored key only",
            }
        ),
        gaps,
        facts: au10_facts(verify, ex, &identified),
        tables: Vec::new(),
        samples_caption: "Rows bound to an identity".into(),
        samples: samples(
            identified
                .iter()
                .map(|r| **r)
                .filter(|r| r.subject.is_some() && r.tool_name.is_some()),
        ),
        note: None,
    }
}

/// AU-10's figures: the chain, and how many rows bind whom and what.
fn au10_facts(
    verify: &Verify,
    ex: &[&AuditRow],
    identified: &[&&AuditRow],
) -> Vec<(String, String)> {
    let bound = identified
        .iter()
        .filter(|r| r.subject.is_some() && r.auth_method.is_some())
        .count();
    let credential = identified
        .iter()
        .filter(|r| r.token_id.is_some() || r.cert_fingerprint.is_some())
        .count();
    let versioned = ex
        .iter()
        .filter(|r| r.decision.is_some() && r.policy_version.is_some())
        .count();
    let decided = ex.iter().filter(|r| r.decision.is_some()).count();
    let chain = match verify {
        Verify::Intact(r) => format!(
            "intact ({} signed manifest entr{})",
            r.entries,
            if r.entries == 1 { "y" } else { "ies" }
        ),
        Verify::Broken(b) => format!("BROKEN: {b}"),
    };
    vec![
        fact("Signed manifest chain", chain),
        fact(
            "Exchange rows with subject and auth_method",
            of(bound, identified.len()),
        ),
        fact(
            "… with a credential id (token_id or cert_fingerprint)",
            of(credential, identified.len()),
        ),
        fact("Decisions tied to a policy version", of(versioned, decided)),
        fact(
            "Refusals before identification (not counted above)",
            ex.len() - identified.len(),
        ),
    ]
}
