//! Closed WAL segments become Parquet files Athena reads as they are:
//! zstd, dictionary encoding, page statistics, data pages of at most 1 MiB,
//! row groups well under 256 MiB, rows sorted by event time (readers skip
//! row groups by min/max), `dt=YYYY-MM-DD/hour=HH` partitions.

use std::{
    io,
    path::{Path, PathBuf},
};

use parquet::{
    arrow::ArrowWriter,
    basic::{Compression, ZstdLevel},
    file::metadata::KeyValue,
    file::properties::{EnabledStatistics, WriterProperties},
};

use super::{fsutil::write_atomic, schema, schema::AuditRow, wal::hour_of};

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

/// Encodes `rows` (sorted by time) as one Parquet file in memory.
pub fn encode(rows: &[AuditRow], host: &str, segment: u64) -> io::Result<Vec<u8>> {
    let batch = schema::to_batch(rows).map_err(io::Error::other)?;
    let mut out = Vec::new();
    let mut w = ArrowWriter::try_new(&mut out, schema::schema(), Some(properties(host, segment)))
        .map_err(io::Error::other)?;
    w.write(&batch).map_err(io::Error::other)?;
    w.close().map_err(io::Error::other)?;
    Ok(out)
}

/// Writes the file under `audit_dir` atomically; returns its bytes' hash.
pub fn write(audit_dir: &Path, rel: &Path, bytes: &[u8]) -> io::Result<String> {
    write_atomic(&audit_dir.join(rel), bytes)?;
    Ok(super::chain::sha256_hex(bytes))
}
