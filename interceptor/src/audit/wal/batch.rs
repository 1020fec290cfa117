//! A batch of encoded WAL records in one contiguous buffer: rows are
//! encoded on the caller's thread, outside any lock, and a group of them
//! reaches the segment with one `write(2)` (the profile showed one
//! syscall per row costing as much as building the row).

use std::io;

use super::{HEADER, MAX_RECORD};
use crate::audit::schema::AuditRow;

/// The UTC hour index (hours since the epoch) of an event time: segments
/// hold one hour, and comparing integers spares two `format!` per row.
pub fn hour_index(event_time_us: i64) -> i64 {
    event_time_us.div_euclid(3_600_000_000)
}

/// postcard's output appended to a buffer in place (its `to_extend`
/// takes the buffer by value and drops it on an error).
struct Append<'a>(&'a mut Vec<u8>);

impl postcard::ser_flavors::Flavor for Append<'_> {
    type Output = ();

    fn try_extend(&mut self, data: &[u8]) -> postcard::Result<()> {
        self.0.extend_from_slice(data);
        Ok(())
    }

    fn try_push(&mut self, data: u8) -> postcard::Result<()> {
        self.0.push(data);
        Ok(())
    }

    fn finalize(self) -> postcard::Result<()> {
        Ok(())
    }
}

/// Encoded records, back to back, each with the hour of its row.
#[derive(Debug, Default)]
pub struct Batch {
    bytes: Vec<u8>,
    /// Per record: its row's hour index and where it ends in `bytes`.
    marks: Vec<(i64, usize)>,
}

impl Batch {
    /// A batch of the one record of `row`.
    pub fn of(row: &AuditRow) -> io::Result<Self> {
        // Room for a typical row: growing from empty reallocates ~10 times.
        let mut b = Self {
            bytes: Vec::with_capacity(4096),
            marks: Vec::with_capacity(1),
        };
        b.push(row)?;
        Ok(b)
    }

    /// Encodes `row` as one more record
    /// (`[len u32 LE][crc32 u32 LE][postcard]`). On error the batch is
    /// unchanged.
    pub fn push(&mut self, row: &AuditRow) -> io::Result<()> {
        let start = self.bytes.len();
        self.bytes.extend_from_slice(&[0; HEADER]);
        if let Err(e) = postcard::serialize_with_flavor(row, Append(&mut self.bytes)) {
            self.bytes.truncate(start);
            return Err(io::Error::other(e));
        }
        let buf = &mut self.bytes;
        let len = buf.len() - start - HEADER;
        if len > MAX_RECORD {
            buf.truncate(start);
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "audit row larger than 64 MiB",
            ));
        }
        let crc = crc32fast::hash(&buf[start + HEADER..]);
        buf[start..start + 4].copy_from_slice(&(len as u32).to_le_bytes());
        buf[start + 4..start + HEADER].copy_from_slice(&crc.to_le_bytes());
        self.marks
            .push((hour_index(row.event_time_us), self.bytes.len()));
        Ok(())
    }

    /// Records in the batch.
    pub fn len(&self) -> usize {
        self.marks.len()
    }

    /// Whether the batch holds no record.
    pub fn is_empty(&self) -> bool {
        self.marks.is_empty()
    }

    /// Moves every record of `other` to the end of this batch.
    pub fn append(&mut self, other: &mut Batch) {
        if self.is_empty() {
            std::mem::swap(self, other);
            return;
        }
        let base = self.bytes.len();
        self.bytes.append(&mut other.bytes);
        self.marks
            .extend(other.marks.drain(..).map(|(h, end)| (h, base + end)));
    }

    /// Record `i`'s hour index.
    pub fn hour(&self, i: usize) -> i64 {
        self.marks[i].0
    }

    /// Where record `i` starts in [`Batch::bytes`].
    pub fn start(&self, i: usize) -> usize {
        if i == 0 { 0 } else { self.marks[i - 1].1 }
    }

    /// Where record `i` ends in [`Batch::bytes`].
    pub fn end(&self, i: usize) -> usize {
        self.marks[i].1
    }

    /// The encoded records.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The records from `i` on, as a batch of their own (what a failed
    /// write leaves to retry).
    pub fn split_off(&mut self, i: usize) -> Batch {
        let cut = self.start(i);
        let bytes = self.bytes.split_off(cut);
        let marks = self
            .marks
            .split_off(i)
            .into_iter()
            .map(|(h, end)| (h, end - cut))
            .collect();
        Batch { bytes, marks }
    }

    /// Drops the `n` oldest records (a full retry buffer).
    pub fn drop_front(&mut self, n: usize) {
        let rest = self.split_off(n.min(self.len()));
        *self = rest;
    }
}
