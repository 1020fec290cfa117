//! `[audit.s3]`: where finished audit files are shipped. The audit's
//! uploader reads this section; it is defined here so that config imports
//! nothing from the stages it configures.

/// `[audit.s3]`: where the audit files go. Secrets are not here: they come
/// from the standard AWS environment (see the audit's `upload::Uploader::new`).
#[derive(Debug, Clone, PartialEq, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct S3Config {
    /// The bucket to upload to.
    pub bucket: String,
    /// Key prefix; objects go to `<prefix>/<relative path>`.
    #[serde(default)]
    pub prefix: String,
    /// The bucket's region.
    #[serde(default = "default_region")]
    pub region: String,
    /// S3-compatible endpoint (MinIO, moto, ...); plain HTTP is allowed only
    /// when this is an `http://` URL.
    #[serde(default)]
    pub endpoint: Option<String>,
    /// What to do with local files once uploaded.
    #[serde(default)]
    pub retention: Retention,
    /// Cap of the exponential backoff between failed drains.
    #[serde(default = "default_max_backoff_ms")]
    pub max_retry_backoff_ms: u64,
}

fn default_region() -> String {
    "us-east-1".into()
}

fn default_max_backoff_ms() -> u64 {
    60_000
}

/// What happens to a local data file once it is in the bucket.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Retention {
    /// Keep local files after upload.
    KeepLocal,
    /// Delete local files once uploaded and checked.
    #[default]
    DeleteAfterUpload,
}
