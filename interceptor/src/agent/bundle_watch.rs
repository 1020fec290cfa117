//! `[policy] source`: the signed policy bundle in force, fetched at start
//! and polled by ETag (see `policy::bundle` for the format).
//!
//! A fetched bundle is checked as a whole before it is taken: signature by
//! a pinned key, a version newer than the one in force, its settings
//! applied to the local config, its policies loaded and their `@mask`
//! profiles known. A refused one is logged, counted
//! (`mcp_interceptor_policy_bundles_refused_total`) and audited once per
//! ETag, and the one in force stays. A taken one is written to the local
//! cache, then the agent reloads (as on SIGHUP) with it.
//!
//! At start, the cache is checked again like a fetched bundle: with no
//! good bundle from either, the agent refuses to start.

use std::{
    path::{Path, PathBuf},
    sync::{Arc, RwLock},
    time::Duration,
};

use ed25519_dalek::VerifyingKey;
use object_store::{
    BackoffConfig, GetOptions, ObjectStore, RetryConfig, aws::AmazonS3Builder, path::Path as Key,
};
use sha2::{Digest, Sha256};
use tokio::sync::Notify;

use super::policy_watch;
use crate::{
    audit::upload,
    config::{BundleSettings, Config, ConfigError, S3Config, ValidationError},
    policy::{
        PolicyError,
        bundle::{self, BundleError, Verified},
    },
};

/// A bundle larger than this is refused unread.
const MAX_BYTES: usize = 16 * 1024 * 1024;
/// How long one fetch may take before it counts as unreachable.
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a bundle was not taken, or could not be fetched.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The bundle itself was refused (signature, version, format).
    #[error(transparent)]
    Bundle(#[from] BundleError),
    /// The bundle's `settings.toml` is invalid, or invalid with the local config.
    #[error("bundle settings: {0}")]
    Settings(#[from] ValidationError),
    /// The bundle's policies do not load.
    #[error("bundle policies: {0}")]
    Policy(#[from] PolicyError),
    /// The bundle's mask profiles do not build.
    #[error("bundle mask profiles: {0}")]
    Mask(String),
    /// The local config file no longer loads.
    #[error("the local config: {0}")]
    Config(#[from] ConfigError),
    /// The S3 client could not be built.
    #[error("S3 client for policy.source: {0}")]
    Client(#[from] upload::UploadError),
    /// The object could not be fetched.
    #[error("fetching {url}: {reason}")]
    Fetch {
        /// The object's URL.
        url: String,
        /// What went wrong.
        reason: String,
    },
}

impl SourceError {
    /// A stable label for metrics.
    fn reason(&self) -> &'static str {
        match self {
            Self::Bundle(b) => b.reason(),
            Self::Settings(_) | Self::Config(_) | Self::Mask(_) => "settings",
            Self::Policy(_) => "policy",
            Self::Client(_) | Self::Fetch { .. } => "fetch",
        }
    }
}

/// A bundle taken: what it holds and the settings parsed from it.
#[derive(Debug)]
pub struct Active {
    verified: Verified,
    settings: BundleSettings,
    /// SHA-256 of the object's bytes: the same object again is no news.
    digest: [u8; 32],
}

/// The bundle in force, shared by the watcher and every (re)load, and the
/// signal that a new one was taken.
#[derive(Debug, Clone, Default)]
pub struct Current {
    active: Arc<RwLock<Option<Arc<Active>>>>,
    changed: Arc<Notify>,
}

impl Current {
    fn get(&self) -> Option<Arc<Active>> {
        self.active
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn set(&self, a: Active) {
        *self.active.write().unwrap_or_else(|p| p.into_inner()) = Some(Arc::new(a));
    }

    /// Resolves when a new bundle was taken (the agent then reloads).
    pub async fn changed(&self) {
        self.changed.notified().await;
    }

    /// `local` with the bundle's settings in place (`local` itself when
    /// no `[policy] source` is set).
    pub fn effective(&self, local: Config) -> Result<Config, SourceError> {
        match (local.policy.source.is_some(), self.get()) {
            (true, Some(a)) => Ok(a.settings.apply(&local)?),
            (true, None) => Err(SourceError::Fetch {
                url: local.policy.source.clone().unwrap_or_default(),
                reason: "no good bundle yet".into(),
            }),
            (false, _) => Ok(local),
        }
    }

    /// The bundle's policies, loaded, for `cfg` (`None` without a source).
    pub fn load(&self, cfg: &Config) -> Result<Option<policy_watch::Loaded>, SourceError> {
        if cfg.policy.source.is_none() {
            return Ok(None);
        }
        let a = self.get().ok_or_else(|| SourceError::Fetch {
            url: cfg.policy.source.clone().unwrap_or_default(),
            reason: "no good bundle yet".into(),
        })?;
        let m = &a.verified.manifest;
        let loaded = policy_watch::load_bundle(&m.policy_sources(), a.verified.origin())?;
        Ok(Some(loaded.check_mask_profiles(&cfg.mask)?))
    }
}

/// Where bundles come from, and the keys they must be signed by.
pub struct Source {
    store: Arc<dyn ObjectStore>,
    key: Key,
    url: String,
    keys: Vec<VerifyingKey>,
    cache: PathBuf,
    config_path: PathBuf,
}

/// An S3 client for `bucket`: region and endpoint from `[audit.s3]` when
/// given, else from the AWS environment, like credentials.
pub fn store(bucket: &str, s3: Option<&S3Config>) -> Result<Arc<dyn ObjectStore>, SourceError> {
    let env = AmazonS3Builder::from_env().with_bucket_name(bucket);
    let b = match s3 {
        Some(s3) => upload::builder(
            &S3Config {
                bucket: bucket.into(),
                ..s3.clone()
            },
            env,
        )?,
        None => env,
    };
    // Few, short retries: an unreachable source surfaces within the
    // fetch timeout (the poll tries again anyway).
    let retry = RetryConfig {
        backoff: BackoffConfig {
            init_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(1),
            base: 2.0,
        },
        max_retries: 2,
        retry_timeout: FETCH_TIMEOUT,
    };
    let store = b
        .with_retry(retry)
        .build()
        .map_err(|e| SourceError::Fetch {
            url: format!("s3://{bucket}/"),
            reason: e.to_string(),
        })?;
    Ok(Arc::new(store))
}

impl Source {
    /// The source `cfg` names, if any.
    pub fn new(cfg: &Config, config_path: &Path) -> Result<Option<Self>, SourceError> {
        let Some((bucket, prefix)) = cfg.policy.source_location() else {
            return Ok(None);
        };
        let keys = (cfg.policy.bundle_keys.iter())
            .map(|k| bundle::public_key(k))
            .collect::<Result<_, _>>()?;
        let name = format!("{prefix}{}", bundle::OBJECT);
        Ok(Some(Self {
            store: store(&bucket, cfg.audit.s3.as_ref())?,
            url: format!("s3://{bucket}/{name}"),
            key: Key::from(name),
            keys,
            cache: cfg.bundle_cache_path(),
            config_path: config_path.to_path_buf(),
        }))
    }

    /// The object's bytes and ETag; `None` when its ETag is still `etag`.
    async fn fetch(
        &self,
        etag: Option<&str>,
    ) -> Result<Option<(Vec<u8>, Option<String>)>, SourceError> {
        let fail = |reason: String| SourceError::Fetch {
            url: self.url.clone(),
            reason,
        };
        let opts = GetOptions {
            if_none_match: etag.map(str::to_owned),
            ..Default::default()
        };
        let got = tokio::time::timeout(FETCH_TIMEOUT, async {
            let r = self.store.get_opts(&self.key, opts).await?;
            let tag = r.meta.e_tag.clone();
            if r.meta.size > MAX_BYTES as u64 {
                return Ok(Err(r.meta.size));
            }
            Ok(Ok((r.bytes().await?.to_vec(), tag)))
        })
        .await
        .map_err(|_| fail(format!("no answer within {FETCH_TIMEOUT:?}")))?;
        match got {
            Err(object_store::Error::NotModified { .. }) => Ok(None),
            Err(e) => Err(fail(e.to_string())),
            Ok(Err(size)) => Err(fail(format!("{size} bytes, over {MAX_BYTES}"))),
            Ok(Ok(v)) => Ok(Some(v)),
        }
    }

    /// Checks `bytes` as a whole (see the module doc) against the local
    /// config as it is on disk now.
    fn check(&self, bytes: &[u8], running: Option<u64>) -> Result<Active, SourceError> {
        let verified = bundle::open(bytes, &self.keys)?;
        verified.check_newer(running)?;
        let settings = (verified.manifest.settings())
            .map(BundleSettings::parse)
            .transpose()?
            .unwrap_or_default();
        let local = Config::load(&self.config_path)?;
        let effective = settings.apply(&local)?;
        if effective.mask.enabled {
            // Built as serving builds it: a profile that does not compile
            // is refused here, not at the reload.
            super::start::masker(&effective).map_err(|e| SourceError::Mask(e.to_string()))?;
        }
        let m = &verified.manifest;
        policy_watch::load_bundle(&m.policy_sources(), verified.origin())?
            .check_mask_profiles(&effective.mask)?;
        Ok(Active {
            digest: Sha256::digest(bytes).into(),
            verified,
            settings,
        })
    }

    /// Keeps `bytes` as the last good bundle (written whole, then renamed).
    fn keep(&self, bytes: &[u8]) {
        let tmp = self.cache.with_extension("tmp");
        let r = std::fs::write(&tmp, bytes)
            .and_then(|()| std::fs::File::open(&tmp)?.sync_all())
            .and_then(|()| std::fs::rename(&tmp, &self.cache));
        if let Err(e) = r {
            tracing::warn!(path = %self.cache.display(), error = %e, "could not keep the policy bundle on disk; a restart needs the source reachable");
        }
    }
}

mod run;
pub use run::{first, spawn};
