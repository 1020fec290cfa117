//! A trail read straight from the bucket the uploader ships it to:
//! `<prefix>/manifest/<host>/…` and `<prefix>/events/dt=…/hour=…/…`, the
//! keys `upload` writes. Each request runs to completion on a small
//! runtime of its own: `verify` is a sequential walk, one object at a time.
//! A listing is one recursive (paginated) LIST, and a data object is
//! hashed as its one GET streams in, so memory stays bounded whatever the
//! file's size.

use std::{io, sync::Arc};

use futures_util::TryStreamExt;
use object_store::{ObjectStore, ObjectStoreExt, path::Path as Key};
use sha2::{Digest, Sha256};

use super::source::Objects;

/// The objects under `s3://<bucket>/<prefix>`, through `store` (the
/// client the agent uploads with).
pub struct Bucket {
    store: Arc<dyn ObjectStore>,
    /// Empty, or the key prefix ending in `/`.
    prefix: String,
    /// `s3://bucket/prefix/`, for messages.
    url: String,
    rt: tokio::runtime::Runtime,
}

impl Bucket {
    /// The trail under `prefix` (empty, or ending in `/`) of `bucket`.
    pub fn new(store: Arc<dyn ObjectStore>, bucket: &str, prefix: &str) -> io::Result<Self> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        Ok(Self {
            store,
            prefix: prefix.to_string(),
            url: format!("s3://{bucket}/{prefix}"),
            rt,
        })
    }

    fn key(&self, rel: &str) -> io::Result<Key> {
        let k = format!("{}{rel}", self.prefix);
        Key::parse(&k).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))
    }

    /// `rel` of a listed key: what follows the prefix.
    fn rel(&self, key: &Key) -> Option<String> {
        let k: &str = key.as_ref();
        k.strip_prefix(&self.prefix).map(str::to_string)
    }
}

impl Objects for Bucket {
    fn hosts(&self) -> io::Result<Vec<String>> {
        let dir = self.key("manifest")?;
        let l = self
            .rt
            .block_on(self.store.list_with_delimiter(Some(&dir)))
            .map_err(io::Error::other)?;
        let mut out: Vec<String> = (l.common_prefixes.iter())
            .filter_map(|p| p.filename().map(str::to_string))
            .collect();
        out.sort();
        Ok(out)
    }

    fn list(&self, dir: &str) -> io::Result<Vec<String>> {
        // Every key below, whatever its name, as Athena would read it.
        let dir = self.key(dir)?;
        let all: Vec<_> = (self.rt)
            .block_on(self.store.list(Some(&dir)).try_collect())
            .map_err(io::Error::other)?;
        let mut out: Vec<String> = all.iter().filter_map(|o| self.rel(&o.location)).collect();
        out.sort();
        Ok(out)
    }

    fn read(&self, rel: &str) -> io::Result<Vec<u8>> {
        let key = self.key(rel)?;
        let got = (self.rt.block_on(self.store.get(&key))).map_err(io::Error::other)?;
        let bytes = self.rt.block_on(got.bytes()).map_err(io::Error::other)?;
        Ok(bytes.to_vec())
    }

    fn sha256(&self, rel: &str) -> io::Result<String> {
        let key = self.key(rel)?;
        self.rt.block_on(async {
            let got = self.store.get(&key).await.map_err(io::Error::other)?;
            let mut h = Sha256::new();
            let mut body = got.into_stream();
            while let Some(chunk) = body.try_next().await.map_err(io::Error::other)? {
                h.update(&chunk);
            }
            Ok(hex::encode(h.finalize()))
        })
    }

    fn name(&self, rel: &str) -> String {
        format!("{}{rel}", self.url)
    }
}
