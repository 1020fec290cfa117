//! Closed WAL segments become Parquet files Athena reads as they are:
//! zstd, dictionary encoding, page statistics, data pages of at most 1 MiB,
//! row groups well under 256 MiB, rows sorted by event time (readers skip
//! row groups by min/max), `dt=YYYY-MM-DD/hour=HH` partitions.

use std::{
    io::{self, BufWriter, Write},
    path::{Path, PathBuf},
};

use sha2::{Digest, Sha256};

use parquet::{
    arrow::ArrowWriter,
    basic::{Compression, ZstdLevel},
    file::metadata::KeyValue,
    file::properties::{EnabledStatistics, WriterProperties},
};

use super::{fsutil::write_atomic_with, schema, schema::AuditRow, wal::hour_of};

/// Rows per row group: with rows of a few KiB this stays far below 256 MiB.
const ROW_GROUP_ROWS: usize = 65_536;

fn properties(host: &str, segment: u64) -> WriterProperties {
    WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::default()))
        .set_dictionary_enabled(true)
        .set_statistics_enabled(EnabledStatistics::Page)
        .set_data_page_size_limit(1 << 20)
        .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
        .set_created_by(format!("mcp-interceptor {}", env!("CARGO_PKG_VERSION")))
        .set_key_value_metadata(Some(vec![
            KeyValue::new("mcp_interceptor.host".into(), host.to_string()),
            KeyValue::new("mcp_interceptor.segment".into(), segment.to_string()),
        ]))
        .build()
}

/// The relative path of the file for `rows` (which share one hour).
pub fn relative_path(host: &str, segment: u64, part: usize, first_event_us: i64) -> PathBuf {
    let (dt, hour) = hour_of(first_event_us);
    let name = if part == 0 {
        format!("{host}-{segment:012}.parquet")
    } else {
        format!("{host}-{segment:012}-{part}.parquet")
    };
    PathBuf::from("events")
        .join(format!("dt={dt}"))
        .join(format!("hour={hour}"))
        .join(name)
}

/// A row group is flushed once its encoded pages pass this, whatever its
/// row count, so a segment of large incompressible rows stays bounded too.
const ROW_GROUP_BYTES: usize = 8 << 20;

/// Streams the batches `next` yields (rows sorted by time) into the
/// Parquet file `rel` under `audit_dir` (temporary name, fsync, rename);
/// returns the SHA-256 of its bytes and their count.
pub fn write_streamed(
    audit_dir: &Path,
    rel: &Path,
    host: &str,
    segment: u64,
    mut next: impl FnMut() -> io::Result<Option<Vec<AuditRow>>>,
) -> io::Result<(String, u64)> {
    write_atomic_with(&audit_dir.join(rel), |file| {
        let out = Hashing {
            inner: BufWriter::with_capacity(1 << 16, file),
            sha: Sha256::new(),
            bytes: 0,
        };
        let mut w = ArrowWriter::try_new(out, schema::schema(), Some(properties(host, segment)))
            .map_err(io::Error::other)?;
        while let Some(rows) = next()? {
            let batch = schema::to_batch(&rows).map_err(io::Error::other)?;
            w.write(&batch).map_err(io::Error::other)?;
            if w.in_progress_size() > ROW_GROUP_BYTES {
                w.flush().map_err(io::Error::other)?;
            }
        }
        let mut out = w.into_inner().map_err(io::Error::other)?;
        out.flush()?;
        Ok((hex::encode(out.sha.finalize()), out.bytes))
    })
}

/// A writer that hashes what passes through it.
struct Hashing<W> {
    inner: W,
    sha: Sha256,
    bytes: u64,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.sha.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}
