//! The Parquet converter streams a WAL segment in row batches: converting
//! a big segment of rows that barely compress holds a fraction of it,
//! never the segment or its rows decoded (which took about four times the
//! segment before). Measured with a counting allocator over the whole test
//! process, so its own threads count too.

use std::{
    alloc::{GlobalAlloc, Layout, System},
    sync::atomic::{AtomicUsize, Ordering},
};

use interceptor::{
    audit::{
        Audit, chain,
        row::Stamp,
        wal::{self, Batch},
    },
    config::Audit as AuditConfig,
};

struct Counting;

static CURRENT: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is forwarded to the system allocator unchanged; the
// counters only observe sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded as is.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            let now = CURRENT.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(now, Ordering::Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded as is.
        unsafe { System.dealloc(ptr, layout) };
        CURRENT.fetch_sub(layout.size(), Ordering::Relaxed);
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

const MIB: usize = 1 << 20;

/// Pseudo-random hex (splitmix64): compresses to about half, like results
/// full of ids and hashes, so the Parquet output is big as well.
fn noise(seed: u64, len: usize) -> String {
    let mut x = seed;
    let mut s = String::with_capacity(len);
    while s.len() < len {
        x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = x;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        s.push_str(&format!("{:016x}", z ^ (z >> 31)));
    }
    s
}

#[test]
fn converting_a_large_segment_holds_a_batch_not_the_segment() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = AuditConfig {
        dir: tmp.path().join("audit"),
        signing_key: tmp.path().join("key"),
        host: Some("memhost".into()),
        roll_seconds: 3600,
        ..AuditConfig::default()
    };
    let stamp = Stamp {
        host: "memhost".into(),
        agent_version: "0".into(),
        max_field_bytes: 1 << 16,
    };
    // A segment of 64 MiB, as an agent killed mid-run leaves it.
    let (rows, row_bytes) = (16_500usize, 4096);
    let t0 = 1_800_000_000_000_000i64;
    let wal_dir = cfg.dir.join("wal");
    std::fs::create_dir_all(&wal_dir).unwrap();
    let segment = {
        let mut batch = Batch::default();
        for i in 0..rows {
            let mut r = stamp.row("exchange", t0 + i as i64);
            r.result = Some(noise(i as u64, row_bytes));
            batch.push(&r).unwrap();
        }
        std::fs::write(wal::segment_path(&wal_dir, 0), batch.bytes()).unwrap();
        batch.bytes().len()
    };
    assert!(segment > 64 * MIB, "segment of {segment} bytes");

    // Start converts the leftover segment before anything else.
    let base = CURRENT.load(Ordering::Relaxed);
    PEAK.store(base, Ordering::Relaxed);
    let audit = Audit::start(&cfg, None).unwrap();
    let peak = PEAK.load(Ordering::Relaxed) - base;
    audit.shutdown();

    let report = chain::verify(&cfg.dir, None).unwrap();
    assert_eq!(report.rows, rows as i64, "every row converted");
    let parquet: u64 = chain::data_files(&cfg.dir.join("events"))
        .iter()
        .map(|f| std::fs::metadata(f).unwrap().len())
        .sum();
    assert!(
        parquet as usize > 10 * MIB,
        "the output is big too ({parquet} bytes): it must be streamed as well"
    );
    eprintln!(
        "segment {} MiB, Parquet {} MiB, converter peak {} MiB",
        segment / MIB,
        parquet as usize / MIB,
        peak / MIB
    );
    assert!(
        peak < 32 * MIB,
        "converting a {} MiB segment peaked at {} MiB",
        segment / MIB,
        peak / MIB
    );
}
