//! Reading the trail back: a session's exchanges in order (`audit replay`)
//! and new rows as they are written (`audit tail`). Both read the closed
//! Parquet files and the WAL, so the newest rows are there too.

use std::{
    collections::HashMap,
    fs::File,
    io::{self, Read, Seek, SeekFrom},
    path::{Path, PathBuf},
    time::Duration,
};

use arrow_array::{Array, Int32Array, Int64Array, RecordBatch, StringArray, cast::AsArray};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde::Serialize;

use super::{chain::data_files, schema::AuditRow, wal};
use crate::{escape, pipeline::call::TargetColumn};

/// What a replay shows of one row.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Step {
    /// When the event happened (microseconds since the epoch).
    pub event_time_us: i64,
    /// The row's kind (request, response, decision...).
    pub kind: String,
    /// The MCP session it belongs to.
    pub session_id: Option<String>,
    /// Which message the row is about (its keys stand at the top level in
    /// JSON).
    #[serde(flatten)]
    pub message: MessageRef,
    /// The HTTP status of the exchange.
    pub http_status: Option<i32>,
    /// The JSON-RPC error code, if any.
    pub error_code: Option<i32>,
    /// How long the exchange took.
    pub latency_us: Option<i64>,
    /// The call's arguments, as stored.
    pub arguments: Option<String>,
    /// The call's result, as stored.
    pub result: Option<String>,
    /// The error, as stored.
    pub error: Option<String>,
}

/// Which JSON-RPC message a row is about: the part of a replay line that
/// names it.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct MessageRef {
    /// Client to server or server to client.
    pub direction: Option<String>,
    /// The JSON-RPC id.
    pub jsonrpc_id: Option<String>,
    /// The JSON-RPC method.
    pub method: Option<String>,
    /// The tool, resource or prompt named.
    pub target: Option<String>,
}

impl From<&AuditRow> for Step {
    fn from(r: &AuditRow) -> Self {
        Step {
            event_time_us: r.event_time_us,
            kind: r.kind.clone(),
            session_id: r.session_id.clone(),
            message: MessageRef {
                direction: r.direction.clone(),
                jsonrpc_id: r.jsonrpc_id.clone(),
                method: r.method.clone(),
                target: TargetColumn::target_of(
                    r.tool_name.as_deref(),
                    r.resource_uri.as_deref(),
                    r.prompt_name.as_deref(),
                ),
            },
            http_status: r.http_status,
            error_code: r.error_code,
            latency_us: r.latency_us,
            arguments: r.arguments.clone(),
            result: r.result.clone(),
            error: r.error.clone(),
        }
    }
}

impl std::fmt::Display for Step {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let secs = self.event_time_us.div_euclid(1_000_000);
        let (dt, _) = wal::hour_of(self.event_time_us);
        let tod = secs.rem_euclid(86_400);
        let m = &self.message;
        write!(
            f,
            "{dt}T{:02}:{:02}:{:02}.{:06}Z {:<14} {:<17} {:<26} {:<20} id={:<6} status={:<4} ms={:.1}",
            tod / 3600,
            tod % 3600 / 60,
            tod % 60,
            self.event_time_us.rem_euclid(1_000_000),
            // Caller text, written so that it cannot move the cursor,
            // clear the screen or reorder the line (see `escape`).
            escape::text(&self.kind),
            escape::opt(m.direction.as_deref()),
            escape::opt(m.method.as_deref()),
            escape::opt(m.target.as_deref()),
            escape::opt(m.jsonrpc_id.as_deref()),
            self.http_status
                .map(|s| s.to_string())
                .unwrap_or_else(|| "-".into()),
            self.latency_us.unwrap_or(0) as f64 / 1e3,
        )?;
        if let Some(code) = self.error_code {
            write!(f, " error={code}")?;
        }
        Ok(())
    }
}

fn col<'a>(b: &'a RecordBatch, name: &str) -> io::Result<&'a dyn Array> {
    b.column_by_name(name)
        .map(|c| c.as_ref())
        .ok_or_else(|| io::Error::other(format!("column {name} missing")))
}

fn s(a: &dyn Array, i: usize) -> Option<String> {
    let a: &StringArray = a.as_string();
    (!a.is_null(i)).then(|| a.value(i).to_string())
}

fn i32v(a: &dyn Array, i: usize) -> Option<i32> {
    let a: &Int32Array = a.as_primitive();
    (!a.is_null(i)).then(|| a.value(i))
}

fn i64v(a: &dyn Array, i: usize) -> Option<i64> {
    let a: &Int64Array = a.as_primitive();
    (!a.is_null(i)).then(|| a.value(i))
}

/// The columns named, in order.
fn cols<'a, const N: usize>(
    b: &'a RecordBatch,
    names: [&str; N],
) -> io::Result<[&'a dyn Array; N]> {
    let found = names
        .iter()
        .map(|n| col(b, n))
        .collect::<io::Result<Vec<_>>>()?;
    <[_; N]>::try_from(found).map_err(|_| io::Error::other("column count"))
}

/// The rows of `batch` as steps, appended to `out`.
fn steps_of(batch: &RecordBatch, out: &mut Vec<Step>) -> io::Result<()> {
    let [
        t,
        kind,
        sid,
        dir,
        id,
        m,
        tool,
        res,
        prompt,
        st,
        code,
        lat,
        args,
        result,
        error,
    ] = cols(
        batch,
        [
            "event_time_us",
            "kind",
            "session_id",
            "direction",
            "jsonrpc_id",
            "method",
            "tool_name",
            "resource_uri",
            "prompt_name",
            "http_status",
            "error_code",
            "latency_us",
            "arguments",
            "result",
            "error",
        ],
    )?;
    for i in 0..batch.num_rows() {
        let row = AuditRow {
            event_time_us: i64v(t, i).unwrap_or(0),
            kind: s(kind, i).unwrap_or_default(),
            session_id: s(sid, i),
            direction: s(dir, i),
            jsonrpc_id: s(id, i),
            method: s(m, i),
            tool_name: s(tool, i),
            resource_uri: s(res, i),
            prompt_name: s(prompt, i),
            http_status: i32v(st, i),
            error_code: i32v(code, i),
            latency_us: i64v(lat, i),
            arguments: s(args, i),
            result: s(result, i),
            error: s(error, i),
            ..AuditRow::default()
        };
        out.push(Step::from(&row));
    }
    Ok(())
}

/// Every row of the trail under `dir` (Parquet files, then the WAL).
pub fn read_all(dir: &Path) -> io::Result<Vec<Step>> {
    let mut out = Vec::new();
    for file in data_files(&dir.join("events")) {
        let reader = ParquetRecordBatchReaderBuilder::try_new(File::open(&file)?)
            .and_then(|b| b.build())
            .map_err(|e| io::Error::other(format!("{}: {e}", file.display())))?;
        for batch in reader {
            steps_of(&batch.map_err(io::Error::other)?, &mut out)?;
        }
    }
    let wal_dir = dir.join("wal");
    if wal_dir.exists() {
        for seq in wal::list_segments(&wal_dir)? {
            match wal::read_segment(&wal::segment_path(&wal_dir, seq)) {
                Ok(rows) => out.extend(rows.iter().map(Step::from)),
                // Converted (and deleted) between listing and reading: its
                // rows are in a Parquet file read above or not yet listed.
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
    }
    out.sort_by_key(|s| s.event_time_us);
    Ok(out)
}

/// One session's rows, in order.
pub fn session(dir: &Path, id: &str) -> io::Result<Vec<Step>> {
    Ok(read_all(dir)?
        .into_iter()
        .filter(|s| s.session_id.as_deref() == Some(id))
        .collect())
}

/// Follows the WAL, calling `emit` for every new row, until `emit` returns
/// false. Rows already in the WAL when it starts are skipped.
pub fn tail(dir: &Path, mut emit: impl FnMut(&Step) -> bool) -> io::Result<()> {
    let wal_dir = dir.join("wal");
    let mut offsets: HashMap<PathBuf, u64> = HashMap::new();
    let mut first = true;
    loop {
        let segs = wal::list_segments(&wal_dir).unwrap_or_default();
        let live: Vec<PathBuf> = segs
            .iter()
            .map(|s| wal::segment_path(&wal_dir, *s))
            .collect();
        offsets.retain(|p, _| live.contains(p));
        for path in live {
            let Ok(mut f) = File::open(&path) else {
                continue;
            };
            let len = f.metadata()?.len();
            let at = *offsets
                .entry(path.clone())
                .or_insert(if first { len } else { 0 });
            if len <= at {
                continue;
            }
            f.seek(SeekFrom::Start(at))?;
            let mut buf = Vec::new();
            f.take(len - at).read_to_end(&mut buf)?;
            let (rows, used) = wal::decode(&buf);
            offsets.insert(path, at + used as u64);
            for r in &rows {
                if !emit(&Step::from(r)) {
                    return Ok(());
                }
            }
        }
        first = false;
        std::thread::sleep(Duration::from_millis(200));
    }
}
