//! Evidence reports generated from the audit files.
//!
//! `mcp-interceptor report nist --from … --to …` reads the rows of a period
//! from the signed Parquet files (the `dt=`/`hour=` partitions outside the
//! period are never opened), checks the manifest chain with
//! [`chain::verify`], and writes what the trail shows per NIST SP 800-53
//! control as Markdown and as one self-contained HTML page.
//!
//! Only rows in signed files count: rows still in the WAL (the agent is
//! running, or died before converting them) are reported as pending.

mod controls;
mod coverage;
pub mod html;
pub mod json;
mod judge;
pub mod markdown;
pub mod nist;
mod records;
mod seal;
pub mod wire;

use std::{
    fs::File,
    io,
    path::{Path, PathBuf},
};

use arrow_array::{
    Array, BooleanArray, Int32Array, Int64Array, ListArray, RecordBatch, StringArray, cast::AsArray,
};
use parquet::arrow::{ProjectionMask, arrow_reader::ParquetRecordBatchReaderBuilder};

use crate::audit::{
    chain::data_files,
    schema::AuditRow,
    wal::{self, hour_of},
};

const HOUR_US: i64 = 3_600_000_000;
const DAY_US: i64 = 24 * HOUR_US;

/// Why a report could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// A time could not be parsed.
    #[error("{0:?} is not a UTC time: expected YYYY-MM-DD or YYYY-MM-DDTHH:MM:SSZ")]
    Time(String),
    /// The period is empty: `from` is not before `to`.
    #[error("the period is empty: --from {from} is not before --to {to}")]
    EmptyPeriod {
        /// The start given.
        from: String,
        /// The end given.
        to: String,
    },
    /// A file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying I/O error.
        source: io::Error,
    },
    /// A file is not a readable Parquet audit file.
    #[error("{path}: not a readable audit file: {message}")]
    Parquet {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
    /// A Parquet file lacks a column, or has it with another type.
    #[error("{path}: column {column} missing or of another type")]
    Column {
        /// The file.
        path: PathBuf,
        /// The column.
        column: &'static str,
    },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> ReportError + '_ {
    move |source| ReportError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// `[from, to)` in Unix microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Period {
    /// The period's start (microseconds since the epoch).
    pub from_us: i64,
    /// The period's end (microseconds since the epoch).
    pub to_us: i64,
}

impl Period {
    /// Both ends as `YYYY-MM-DD` or `YYYY-MM-DDTHH:MM:SSZ` (UTC).
    pub fn parse(from: &str, to: &str) -> Result<Self, ReportError> {
        let (from_us, to_us) = (parse_time(from)?, parse_time(to)?);
        if from_us >= to_us {
            return Err(ReportError::EmptyPeriod {
                from: from.into(),
                to: to.into(),
            });
        }
        Ok(Self { from_us, to_us })
    }

    fn overlaps(&self, start_us: i64, len_us: i64) -> bool {
        start_us < self.to_us && start_us + len_us > self.from_us
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (the inverse of the
/// WAL's `civil_from_days`).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * ((m + 9) % 12) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn number(s: &str, len: usize) -> Option<i64> {
    (s.len() == len && s.bytes().all(|b| b.is_ascii_digit()))
        .then(|| s.parse().ok())
        .flatten()
}

fn parse_date(s: &str) -> Option<i64> {
    let mut parts = s.split('-');
    let y = number(parts.next()?, 4)?;
    let m = number(parts.next()?, 2)?;
    let d = number(parts.next()?, 2)?;
    if parts.next().is_some() || !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return None;
    }
    let us = days_from_civil(y, m, d) * DAY_US;
    // 2026-02-30 would land in March: refuse what does not round-trip.
    (hour_of(us).0 == s).then_some(us)
}

/// `YYYY-MM-DD` (midnight UTC) or `YYYY-MM-DDTHH:MM:SSZ` to Unix µs.
pub fn parse_time(s: &str) -> Result<i64, ReportError> {
    let bad = || ReportError::Time(s.to_string());
    let (date, time) = match s.split_once('T') {
        Some((d, t)) => (d, Some(t.strip_suffix('Z').ok_or_else(bad)?)),
        None => (s, None),
    };
    let day = parse_date(date).ok_or_else(bad)?;
    let Some(time) = time else { return Ok(day) };
    let mut parts = time.split(':');
    let mut field = |max: i64| parts.next().and_then(|p| number(p, 2)).filter(|v| *v < max);
    let (h, m, sec) = (
        field(24).ok_or_else(bad)?,
        field(60).ok_or_else(bad)?,
        field(60).ok_or_else(bad)?,
    );
    if parts.next().is_some() {
        return Err(bad());
    }
    Ok(day + (h * 3600 + m * 60 + sec) * 1_000_000)
}

/// `2026-11-25T14:03:07Z`.
pub fn fmt_time(us: i64) -> String {
    let (day, hour) = hour_of(us);
    let secs = us.div_euclid(1_000_000).rem_euclid(3600);
    format!("{day}T{hour}:{:02}:{:02}Z", secs / 60, secs % 60)
}

/// What was read for a period.
#[derive(Debug, Default)]
pub struct Loaded {
    /// Rows with `from <= event_time < to`, ordered by time.
    pub rows: Vec<AuditRow>,
    /// The files read and left out for the rows.
    pub sources: Sources,
}

/// Which files a period's rows came from, and what was left out: the
/// loader counts them and the report shows them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Sources {
    /// How many files were read.
    pub files_read: usize,
    /// Files in partitions outside the period, never opened.
    pub files_skipped: usize,
    /// WAL segments not yet converted to signed files (not in the rows).
    pub pending_wal_segments: usize,
}

/// The start (µs) of a `dt=YYYY-MM-DD` or `hour=HH` directory, relative to
/// `base` for hours; `None` for a name outside the layout.
fn partition_start(name: &str, base: Option<i64>) -> Option<i64> {
    match base {
        None => parse_date(name.strip_prefix("dt=")?),
        Some(day) => {
            let h = number(name.strip_prefix("hour=")?, 2).filter(|h| *h < 24)?;
            Some(day + h * HOUR_US)
        }
    }
}

fn subdirs(dir: &Path) -> Result<Vec<(String, PathBuf)>, ReportError> {
    let mut out = Vec::new();
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(io_err(dir)(e)),
    };
    for e in rd {
        let p = e.map_err(io_err(dir))?.path();
        if p.is_dir() {
            let name = p.file_name().unwrap_or_default().to_string_lossy().into();
            out.push((name, p));
        }
    }
    out.sort();
    Ok(out)
}

/// The data files whose partition overlaps `period`, and how many others
/// were left unopened. Files outside the `dt=/hour=` layout are read (their
/// rows are filtered by time like all others).
pub fn select_files(events: &Path, period: Period) -> Result<(Vec<PathBuf>, usize), ReportError> {
    let (mut read, mut skipped) = (Vec::new(), 0);
    for (name, day_dir) in subdirs(events)? {
        let Some(day) = partition_start(&name, None) else {
            read.extend(data_files(&day_dir));
            continue;
        };
        if !period.overlaps(day, DAY_US) {
            skipped += data_files(&day_dir).len();
            continue;
        }
        for (name, hour_dir) in subdirs(&day_dir)? {
            match partition_start(&name, Some(day)) {
                Some(h) if !period.overlaps(h, HOUR_US) => skipped += data_files(&hour_dir).len(),
                _ => read.extend(data_files(&hour_dir)),
            }
        }
    }
    read.sort();
    Ok((read, skipped))
}

/// Reads the rows of `period` from the audit directory `dir`.
pub fn load(dir: &Path, period: Period) -> Result<Loaded, ReportError> {
    let (files, files_skipped) = select_files(&dir.join("events"), period)?;
    let mut rows = Vec::new();
    for file in &files {
        read_file(file, period, &mut rows)?;
    }
    rows.sort_by_key(|r| r.event_time_us);
    let wal_dir = dir.join("wal");
    let pending_wal_segments = if wal_dir.is_dir() {
        wal::list_segments(&wal_dir)
            .map_err(io_err(&wal_dir))?
            .len()
    } else {
        0
    };
    Ok(Loaded {
        rows,
        sources: Sources {
            files_read: files.len(),
            files_skipped,
            pending_wal_segments,
        },
    })
}

/// A string column and where its value goes in a row.
type TextField = (&'static str, fn(&mut AuditRow, Option<String>));
/// A list-of-strings column and where its value goes.
type ListField = (&'static str, fn(&mut AuditRow, Vec<String>));
/// An `Int32` column and where its value goes.
type IntField = (&'static str, fn(&mut AuditRow, Option<i32>));

/// The string columns the reports read. A file that lacks one is refused,
/// naming the first missing column in this order.
const TEXT_FIELDS: &[TextField] = &[
    ("event_id", |r, v| r.event_id = v.unwrap_or_default()),
    ("kind", |r, v| r.kind = v.unwrap_or_default()),
    ("host", |r, v| r.host = v.unwrap_or_default()),
    ("policy_version", |r, v| r.policy_version = v),
    ("session_id", |r, v| r.session_id = v),
    ("transport", |r, v| r.transport = v),
    ("direction", |r, v| r.direction = v),
    ("src_addr", |r, v| r.src_addr = v),
    ("dst_addr", |r, v| r.dst_addr = v),
    ("subject", |r, v| r.subject = v),
    ("issuer", |r, v| r.issuer = v),
    ("auth_method", |r, v| r.auth_method = v),
    ("cert_fingerprint", |r, v| r.cert_fingerprint = v),
    ("token_id", |r, v| r.token_id = v),
    ("method", |r, v| r.method = v),
    ("tool_name", |r, v| r.tool_name = v),
    ("resource_uri", |r, v| r.resource_uri = v),
    ("prompt_name", |r, v| r.prompt_name = v),
    ("decision", |r, v| r.decision = v),
    ("decided_by", |r, v| r.decided_by = v),
    ("approval_id", |r, v| r.approval_id = v),
    ("message", |r, v| r.message = v),
    // Tells identity refusals apart by `data.reason` (they share a code).
    ("error", |r, v| r.error = v),
];

/// The list columns the reports read.
const LIST_FIELDS: &[ListField] = &[
    ("groups", |r, v| r.groups = v),
    ("rule_ids", |r, v| r.rule_ids = v),
    ("approvers", |r, v| r.approvers = v),
];

/// The `Int32` columns the reports read.
const INT_FIELDS: &[IntField] = &[
    ("dst_port", |r, v| r.dst_port = v),
    ("error_code", |r, v| r.error_code = v),
    ("http_status", |r, v| r.http_status = v),
];

/// SC-8's column, read where the file has it (see `rows_of`).
const TLS_VERSION: &str = "tls_version";

/// The same-host process columns IA-3 and AU-3 read, where the file has
/// them (files written before they were appended lack them: null).
const PROCESS_TEXT: &[TextField] = &[
    ("process_user", |r, v| r.process_user = v),
    ("process_exe", |r, v| r.process_exe = v),
    ("process_exe_sha256", |r, v| r.process_exe_sha256 = v),
    ("process_unit", |r, v| r.process_unit = v),
    ("process_cgroup", |r, v| r.process_cgroup = v),
];

/// An `Int64` column the reports read, and where it goes in the row.
type LongField = (&'static str, fn(&mut AuditRow, Option<i64>));

/// The `Int64` process columns, read like [`PROCESS_TEXT`].
const PROCESS_INTS: &[LongField] = &[
    ("process_pid", |r, v| r.process_pid = v),
    ("process_uid", |r, v| r.process_uid = v),
];

/// The columns the reports use (the others are not decoded): the fields
/// above, the event time, the connection id and the truncation flag.
fn columns() -> impl Iterator<Item = &'static str> {
    let text = TEXT_FIELDS.iter().map(|(n, _)| *n);
    let lists = LIST_FIELDS.iter().map(|(n, _)| *n);
    let ints = INT_FIELDS.iter().map(|(n, _)| *n);
    ["event_time_us", "conn_id", "response_truncated"]
        .into_iter()
        .chain(text)
        .chain(lists)
        .chain(ints)
}

struct Cols<'a> {
    batch: &'a RecordBatch,
    path: &'a Path,
}

impl<'a> Cols<'a> {
    fn get<T: 'static>(&self, column: &'static str) -> Result<&'a T, ReportError> {
        self.batch
            .column_by_name(column)
            .and_then(|c| c.as_any().downcast_ref::<T>())
            .ok_or_else(|| ReportError::Column {
                path: self.path.to_path_buf(),
                column,
            })
    }
}

fn s(a: &StringArray, i: usize) -> Option<String> {
    (!a.is_null(i)).then(|| a.value(i).to_string())
}

fn list(a: &ListArray, i: usize) -> Vec<String> {
    if a.is_null(i) {
        return Vec::new();
    }
    let v = a.value(i);
    let v = v.as_string::<i32>();
    (0..v.len())
        .filter(|j| !v.is_null(*j))
        .map(|j| v.value(j).to_string())
        .collect()
}

fn i32v(a: &Int32Array, i: usize) -> Option<i32> {
    (!a.is_null(i)).then(|| a.value(i))
}

fn i64v(a: &Int64Array, i: usize) -> Option<i64> {
    (!a.is_null(i)).then(|| a.value(i))
}

fn read_file(path: &Path, period: Period, out: &mut Vec<AuditRow>) -> Result<(), ReportError> {
    let parquet = |e: parquet::errors::ParquetError| ReportError::Parquet {
        path: path.to_path_buf(),
        message: e.to_string(),
    };
    let file = File::open(path).map_err(io_err(path))?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(file).map_err(parquet)?;
    // Indexes from the file's own schema: files written before the TLS
    // columns were appended lack them, and ours would point past their end.
    let theirs = builder.schema().clone();
    let optional =
        (PROCESS_TEXT.iter().map(|(n, _)| *n)).chain(PROCESS_INTS.iter().map(|(n, _)| *n));
    let roots: Vec<usize> = columns()
        .chain([TLS_VERSION])
        .chain(optional)
        .filter_map(|c| theirs.index_of(c).ok())
        .collect();
    let mask = ProjectionMask::roots(builder.parquet_schema(), roots);
    let reader = builder.with_projection(mask).build().map_err(parquet)?;
    for batch in reader {
        let batch = batch.map_err(|e| ReportError::Parquet {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        rows_of(
            &Cols {
                batch: &batch,
                path,
            },
            period,
            out,
        )?;
    }
    Ok(())
}

/// The rows of one batch that fall in `period`. Every column is looked up
/// before any row is read, so a file missing one is refused whole.
fn rows_of(c: &Cols<'_>, period: Period, out: &mut Vec<AuditRow>) -> Result<(), ReportError> {
    let time = c.get::<Int64Array>("event_time_us")?;
    let text = TEXT_FIELDS
        .iter()
        .map(|(n, set)| Ok((c.get::<StringArray>(n)?, set)))
        .collect::<Result<Vec<_>, ReportError>>()?;
    let lists = LIST_FIELDS
        .iter()
        .map(|(n, set)| Ok((c.get::<ListArray>(n)?, set)))
        .collect::<Result<Vec<_>, ReportError>>()?;
    let ints = INT_FIELDS
        .iter()
        .map(|(n, set)| Ok((c.get::<Int32Array>(n)?, set)))
        .collect::<Result<Vec<_>, ReportError>>()?;
    let conn = c.get::<Int64Array>("conn_id")?;
    // Optional: a file from before the column holds no TLS facts at all.
    let tls = c.get::<StringArray>(TLS_VERSION).ok();
    let ptext: Vec<_> = (PROCESS_TEXT.iter())
        .filter_map(|(n, set)| Some((c.get::<StringArray>(n).ok()?, set)))
        .collect();
    let pints: Vec<_> = (PROCESS_INTS.iter())
        .filter_map(|(n, set)| Some((c.get::<Int64Array>(n).ok()?, set)))
        .collect();
    let truncated = c.get::<BooleanArray>("response_truncated")?;
    for i in 0..c.batch.num_rows() {
        let t = time.value(i);
        if t < period.from_us || t >= period.to_us {
            continue;
        }
        let mut row = AuditRow {
            event_time_us: t,
            conn_id: i64v(conn, i),
            response_truncated: !truncated.is_null(i) && truncated.value(i),
            ..AuditRow::default()
        };
        for (a, set) in &text {
            set(&mut row, s(a, i));
        }
        for (a, set) in &lists {
            set(&mut row, list(a, i));
        }
        for (a, set) in &ints {
            set(&mut row, i32v(a, i));
        }
        for (a, set) in &ptext {
            set(&mut row, s(a, i));
        }
        for (a, set) in &pints {
            set(&mut row, i64v(a, i));
        }
        row.tls_version = match tls {
            Some(a) => s(a, i),
            None => Some(wire::UNRECORDED_TLS.to_string()),
        };
        out.push(row);
    }
    Ok(())
}

/// `s` with `&`, `<` and `>` as entities, which both formats need; every
/// other character goes to `rest`, which writes it as its format needs.
fn entities(s: &str, mut rest: impl FnMut(&mut String, char)) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            c => rest(&mut out, c),
        }
    }
    out
}

/// Writes `<out>/nist-report.md`, `<out>/nist-report.html` and
/// `<out>/nist-report.json`; returns the three paths.
pub fn write_nist(report: &nist::NistReport, out: &Path) -> Result<[PathBuf; 3], ReportError> {
    std::fs::create_dir_all(out).map_err(io_err(out))?;
    let md = out.join("nist-report.md");
    let html = out.join("nist-report.html");
    let json = out.join("nist-report.json");
    std::fs::write(&md, markdown::markdown(report)).map_err(io_err(&md))?;
    std::fs::write(&html, html::render(report)).map_err(io_err(&html))?;
    let text = serde_json::to_string_pretty(&json::render(report)).unwrap_or_default();
    std::fs::write(&json, text + "\n").map_err(io_err(&json))?;
    Ok([md, html, json])
}

#[cfg(test)]
mod tests;
