//! The `[audit.s3]` check: can this host, with the credentials the agent
//! would use (the usual AWS chain: `AWS_*` variables, web identity, the
//! instance profile), reach the bucket and this host's keys in it?
//!
//! Doctor writes nothing: the agent role may only add its own audit files,
//! and a probe object under `events/` would break `audit verify` ("every
//! object listed"). It asks what the uploader needs besides the write
//! itself, under the same IAM statements the write is granted by:
//! - LIST `<prefix>/manifest/<host>/`: the bucket exists, the credentials
//!   work, `s3:ListBucket` (without it a missing key reads as forbidden and
//!   the uploader's queue stalls);
//! - HEAD `<prefix>/manifest/<host>/000000000000.json`: `s3:GetObject` on
//!   this host's keys, granted with `s3:PutObject` on the same resources;
//!   a 403 here is the usual misconfiguration, a host or prefix other than
//!   the one the role was made for.

use std::time::Duration;

use object_store::{
    BackoffConfig, ObjectStore, ObjectStoreExt, RetryConfig,
    aws::{AmazonS3, AmazonS3Builder},
    path::Path as Key,
};

use super::{Check, fail, ok};
use crate::{
    audit::upload,
    config::{Config, S3Config},
};

/// The whole probe's bound: an unreachable endpoint fails the check, it
/// does not hang doctor.
const LIMIT: Duration = Duration::from_secs(20);

/// No check without `[audit.s3]`; else one.
pub fn checks(cfg: &Config) -> Vec<Check> {
    let Some(s3) = cfg.audit.s3.as_ref().filter(|_| cfg.audit.enabled) else {
        return Vec::new();
    };
    let host = cfg.audit.host_name();
    let prefix = s3.prefix.trim_matches('/');
    let dir = if prefix.is_empty() {
        format!("manifest/{host}")
    } else {
        format!("{prefix}/manifest/{host}")
    };
    let at = format!("s3://{}/{dir}/", s3.bucket);
    let store = match client(s3) {
        Ok(s) => s,
        Err(e) => return vec![fail("s3", format!("{at}: {e}"), "fix [audit.s3]")],
    };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return vec![fail("s3", format!("no runtime: {e}"), "report a bug")],
    };
    let probe = rt.block_on(async {
        tokio::time::timeout(LIMIT, probe(&store, &dir))
            .await
            .unwrap_or_else(|_| Err(Failure::Unreachable(format!("no answer in {LIMIT:?}"))))
    });
    vec![match probe {
        Ok(genesis) => ok(
            "s3",
            format!(
                "{at}: bucket reachable, this host's keys readable ({})",
                if genesis {
                    "chain already uploaded"
                } else {
                    "nothing uploaded yet"
                }
            ),
        ),
        Err(f) => fail("s3", format!("{at}: {}", f.detail()), f.hint(s3, &host)),
    }]
}

/// The store the uploader would use, with short retries.
fn client(s3: &S3Config) -> Result<AmazonS3, upload::UploadError> {
    let retry = RetryConfig {
        backoff: BackoffConfig::default(),
        max_retries: 1,
        retry_timeout: Duration::from_secs(5),
    };
    upload::builder(s3, AmazonS3Builder::from_env())?
        .with_retry(retry)
        .build()
        .map_err(upload::UploadError::Client)
}

/// Why the bucket cannot take this host's files.
enum Failure {
    /// The bucket does not exist (in that region or at that endpoint).
    NoBucket(String),
    /// No usable credentials, or S3 refused them.
    Credentials(String),
    /// Listing the bucket was refused.
    ListDenied(String),
    /// Reading this host's keys was refused.
    KeysDenied(String),
    /// No answer, or not S3's.
    Unreachable(String),
}

impl Failure {
    /// Sorts a store error by the S3 error code or status it carries.
    fn of(e: &object_store::Error, listing: bool) -> Self {
        let text = crate::error::one_line(e);
        let has = |codes: &[&str]| codes.iter().any(|c| text.contains(c));
        if has(&["NoSuchBucket"]) {
            Self::NoBucket(text)
        } else if has(&[
            "InvalidAccessKeyId",
            "SignatureDoesNotMatch",
            "ExpiredToken",
            "InvalidToken",
            "credential",
            "Credential",
        ]) || matches!(e, object_store::Error::Unauthenticated { .. })
        {
            Self::Credentials(text)
        } else if has(&["AccessDenied", "403"])
            || matches!(e, object_store::Error::PermissionDenied { .. })
        {
            if listing {
                Self::ListDenied(text)
            } else {
                Self::KeysDenied(text)
            }
        } else {
            Self::Unreachable(text)
        }
    }

    fn detail(&self) -> String {
        match self {
            Self::NoBucket(t) => format!("no such bucket: {t}"),
            Self::Credentials(t) => format!("credentials refused or missing: {t}"),
            Self::ListDenied(t) => format!("listing the bucket refused: {t}"),
            Self::KeysDenied(t) => format!("reading this host's keys refused: {t}"),
            Self::Unreachable(t) => format!("S3 not reachable: {t}"),
        }
    }

    fn hint(&self, s3: &S3Config, host: &str) -> String {
        match self {
            Self::NoBucket(_) => format!(
                "create the bucket, or fix audit.s3.bucket and audit.s3.region (now {:?} in {}; \
                 the stack's AuditBucketName output)",
                s3.bucket, s3.region
            ),
            Self::Credentials(_) => "attach the instance profile (EC2), or give the unit \
                AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (systemctl edit mcp-interceptor); \
                `aws sts get-caller-identity` shows who this host is"
                .into(),
            Self::ListDenied(_) => format!(
                "the role needs s3:ListBucket on arn:aws:s3:::{} (the stack's agent role has it)",
                s3.bucket
            ),
            Self::KeysDenied(_) => format!(
                "the role covers another host or prefix: audit.host ({host}) and audit.s3.prefix \
                 ({:?}) must be the stack's AgentHosts entry and KeyPrefix",
                s3.prefix
            ),
            Self::Unreachable(_) => "give this host (or intercept.netns) a route to S3 or an S3 \
                VPC endpoint, and check audit.s3.endpoint and audit.s3.region"
                .into(),
        }
    }
}

/// LIST then HEAD, as the module documentation says; whether the chain's
/// first entry is already in the bucket.
async fn probe(store: &AmazonS3, dir: &str) -> Result<bool, Failure> {
    let key = |p: &str| Key::parse(p).map_err(|e| Failure::Unreachable(e.to_string()));
    let listing = key(dir)?;
    store
        .list_with_delimiter(Some(&listing))
        .await
        .map_err(|e| Failure::of(&e, true))?;
    let genesis = key(&format!("{dir}/000000000000.json"))?;
    match store.head(&genesis).await {
        Ok(_) => Ok(true),
        Err(object_store::Error::NotFound { .. }) => Ok(false),
        Err(e) => Err(Failure::of(&e, false)),
    }
}
