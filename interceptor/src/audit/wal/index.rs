//! Reading a closed segment without holding it: one pass notes where each
//! complete record is and its row's event time, then rows are read back a
//! batch at a time in time order. The converter's memory is then a batch
//! of rows and this index (24 bytes a row), not the segment and its rows
//! decoded (about four times `roll_bytes` before).

use std::{
    fs::File,
    io::{self, BufReader, Read},
    os::unix::fs::FileExt,
    path::Path,
};

use super::{HEADER, MAX_RECORD, decode_row};
use crate::audit::schema::AuditRow;

/// Rows the converter reads and encodes at a time, at most...
pub const BATCH_ROWS: usize = 1024;
/// ...and at most about this many bytes of records: a batch of rows and
/// its Arrow arrays are what the converter holds at a time.
pub const BATCH_BYTES: u64 = 4 << 20;

/// How many of `slots` (at least one, if any) make the next batch.
pub fn batch_len(slots: &[Slot]) -> usize {
    let mut bytes = 0;
    slots
        .iter()
        .take(BATCH_ROWS)
        .take_while(|s| {
            let first = bytes == 0;
            bytes += u64::from(s.len);
            first || bytes <= BATCH_BYTES
        })
        .count()
}

/// Where one complete record is in its segment, and its row's time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slot {
    /// The row's `event_time_us`.
    pub time: i64,
    /// The payload's offset in the file (after the record header).
    pub offset: u64,
    /// The payload's length.
    pub len: u32,
}

/// An open segment and its complete records, sorted by event time (rows
/// of equal time keep their WAL order, as the converter always sorted).
#[derive(Debug)]
pub struct Indexed {
    file: File,
    /// The records, by time.
    pub slots: Vec<Slot>,
}

/// Indexes the segment at `path`. Stops, as [`super::decode`] does, at
/// the first record that is short, fails its CRC or does not decode (a
/// torn tail, never acknowledged).
pub fn index_segment(path: &Path) -> io::Result<Indexed> {
    let file = File::open(path)?;
    let size = file.metadata()?.len();
    let mut r = BufReader::with_capacity(1 << 16, &file);
    let (mut slots, mut at, mut payload) = (Vec::new(), 0u64, Vec::new());
    let mut header = [0u8; HEADER];
    while size - at >= HEADER as u64 {
        r.read_exact(&mut header)?;
        let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]);
        let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
        if len as usize > MAX_RECORD || size - at - (HEADER as u64) < u64::from(len) {
            break;
        }
        payload.resize(len as usize, 0);
        r.read_exact(&mut payload)?;
        if crc32fast::hash(&payload) != crc {
            break;
        }
        let Some(row) = decode_row(&payload) else {
            break;
        };
        slots.push(Slot {
            time: row.event_time_us,
            offset: at + HEADER as u64,
            len,
        });
        at += HEADER as u64 + u64::from(len);
    }
    if at < size {
        tracing::warn!(segment = %path.display(), torn_bytes = size - at, "audit WAL segment ends in a torn record (crash mid-write); it was never acknowledged");
    }
    slots.sort_by_key(|s| s.time);
    Ok(Indexed { file, slots })
}

impl Indexed {
    /// The rows of `slots` (a run of [`Indexed::slots`]), in that order.
    pub fn rows(&self, slots: &[Slot]) -> io::Result<Vec<AuditRow>> {
        let mut buf = Vec::new();
        slots
            .iter()
            .map(|s| {
                buf.resize(s.len as usize, 0);
                self.file.read_exact_at(&mut buf, s.offset)?;
                // The CRC matched when indexed; the file is closed, so a
                // row that no longer decodes means it changed under us.
                decode_row(&buf).ok_or_else(|| {
                    io::Error::new(
                        io::ErrorKind::InvalidData,
                        "audit WAL record changed on disk",
                    )
                })
            })
            .collect()
    }
}
