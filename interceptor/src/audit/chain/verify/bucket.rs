//! A trail read straight from the bucket the uploader ships it to:
//! `<prefix>/manifest/<host>/…` and `<prefix>/events/dt=…/hour=…/…`, the
//! keys `upload` writes. Each request runs to completion on a small
//! runtime of its own: `verify` is a sequential walk, one object at a time.

use std::{io, ops::Range, sync::Arc};

use object_store::{ObjectStore, ObjectStoreExt, path::Path as Key};
use sha2::{Digest, Sha256};

use super::source::Objects;

/// Data objects are hashed in ranges of this many bytes, so memory stays
/// bounded whatever the file's size.
const CHUNK: u64 = 8 * 1024 * 1024;

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

    fn range(&self, key: &Key, r: Range<u64>) -> io::Result<bytes::Bytes> {
        self.rt
            .block_on(self.store.get_range(key, r))
            .map_err(io::Error::other)
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
        // Level by level (one paginated LIST per directory): every key
        // below, whatever its name, as Athena would read it.
        let mut out = Vec::new();
        let mut todo = vec![self.key(dir)?];
        while let Some(d) = todo.pop() {
            let l = (self.rt)
                .block_on(self.store.list_with_delimiter(Some(&d)))
                .map_err(io::Error::other)?;
            out.extend(l.objects.iter().filter_map(|o| self.rel(&o.location)));
            todo.extend(l.common_prefixes);
        }
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
        let size = (self.rt.block_on(self.store.head(&key)))
            .map_err(io::Error::other)?
            .size;
        let mut h = Sha256::new();
        let mut at = 0;
        while at < size {
            let end = (at + CHUNK).min(size);
            h.update(self.range(&key, at..end)?);
            at = end;
        }
        Ok(hex::encode(h.finalize()))
    }

    fn name(&self, rel: &str) -> String {
        format!("{}{rel}", self.url)
    }
}
