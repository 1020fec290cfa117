//! What auditors run: `tests/peers/audit_check.py` (DuckDB, pyarrow,
//! sqlglot) over an audit directory, and the queries in deploy/athena/.

use std::{path::Path, process::Command};

use serde_json::Value;

use crate::everything::repo;

/// `tests/peers/audit_check.py` (DuckDB, pyarrow, sqlglot) on `dir`.
pub fn check(dir: &Path, args: &[&str]) -> Value {
    let out = Command::new(repo().join(".venv/bin/python"))
        .arg(repo().join("tests/peers/audit_check.py"))
        .arg("--dir")
        .arg(dir)
        .args(args)
        .output()
        .expect("run audit_check.py (cargo xtask setup installs it)");
    assert!(
        out.status.success(),
        "audit_check {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("audit_check prints JSON")
}

/// Runs one of deploy/athena/queries/ with DuckDB; `{"columns", "rows"}`.
pub fn run_query(dir: &Path, name: &str, params: &[(&str, &str)]) -> Value {
    let mut args = vec!["--query".to_string(), name.to_string()];
    for (k, v) in params {
        args.push("--param".into());
        args.push(format!("{k}={v}"));
    }
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    check(dir, &refs)
}

/// Rows of one of deploy/athena/queries/ as objects keyed by column.
pub fn records(
    dir: &Path,
    name: &str,
    params: &[(&str, &str)],
) -> Vec<serde_json::Map<String, Value>> {
    let v = run_query(dir, name, params);
    let cols: Vec<String> = serde_json::from_value(v["columns"].clone()).expect("columns");
    let rows: Vec<Vec<Value>> = serde_json::from_value(v["rows"].clone()).expect("rows");
    rows.into_iter()
        .map(|r| cols.iter().cloned().zip(r).collect())
        .collect()
}

pub fn query(dir: &Path, name: &str, params: &[(&str, &str)]) -> Vec<Vec<Value>> {
    serde_json::from_value(run_query(dir, name, params)["rows"].clone()).expect("rows")
}

pub fn column(dir: &Path, name: &str, params: &[(&str, &str)], col: &str) -> Vec<Value> {
    let v = run_query(dir, name, params);
    let idx = v["columns"]
        .as_array()
        .unwrap()
        .iter()
        .position(|c| c == col)
        .unwrap_or_else(|| panic!("{col} in {v}"));
    v["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r[idx].clone())
        .collect()
}

/// `query` over deploy/athena/ocsf_view.sql's `mcp_audit_ocsf`, which
/// `audit_check.py --ocsf` transpiles to DuckDB and puts over the same
/// `mcp_audit` view: `{"columns", "rows"}`.
pub fn ocsf(dir: &Path, query: &str) -> Value {
    check(dir, &["--ocsf", query])
}

/// Any SQL `query` with DuckDB over the `mcp_audit` view
/// `tests/peers/audit_check.py --query` defines on `dir` (same view, same
/// UTC session, values as JSON the same way): `{"columns", "rows"}`. For
/// checks the auditor queries in deploy/athena/ do not cover.
pub fn sql(dir: &Path, query: &str) -> Value {
    const SCRIPT: &str = r#"
import json, sys
from pathlib import Path
sys.path.insert(0, sys.argv[1])
import audit_check as a
import duckdb
events = a.events_dir(Path(sys.argv[2]))
glob = str(events.resolve() / "*" / "*" / "*.parquet").replace("'", "''")
con = duckdb.connect(":memory:")
con.execute("SET TimeZone = 'UTC'")
con.execute(f"CREATE VIEW mcp_audit AS SELECT * FROM read_parquet('{glob}', "
            "hive_partitioning = true, hive_types_autocast = false, union_by_name = true)")
cur = con.execute(sys.argv[3])
print(json.dumps({"columns": [d[0] for d in cur.description],
                  "rows": [[a.jsonable(v) for v in r] for r in cur.fetchall()]}))
"#;
    let out = Command::new(repo().join(".venv/bin/python"))
        .arg("-c")
        .arg(SCRIPT)
        .arg(repo().join("tests/peers"))
        .arg(dir)
        .arg(query)
        .output()
        .expect("run python with duckdb (cargo xtask setup installs it)");
    assert!(
        out.status.success(),
        "DuckDB {query:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("the DuckDB script prints JSON")
}

/// `sql` over `mcp_audit` = every Parquet file under
/// `s3://bucket/prefix/events/`, read by DuckDB's httpfs from the S3 API at
/// `endpoint` (host:port) in `netns` (tests/peers/duckdb_s3.py);
/// `{"columns", "rows"}`.
pub fn s3_sql(netns: Option<&str>, endpoint: &str, bucket: &str, prefix: &str, sql: &str) -> Value {
    let mut cmd = match netns {
        Some(ns) => {
            let mut c = Command::new("nsenter");
            c.arg(format!("--net=/run/netns/{ns}"))
                .arg("--")
                .arg(repo().join(".venv/bin/python"));
            c
        }
        None => Command::new(repo().join(".venv/bin/python")),
    };
    let out = cmd
        .arg(repo().join("tests/peers/duckdb_s3.py"))
        .args([
            "--endpoint",
            endpoint,
            "--bucket",
            bucket,
            "--prefix",
            prefix,
        ])
        .args(["--sql", sql])
        .env("PYTHONPATH", repo().join(".venv/duckdb-httpfs"))
        .env("AWS_ACCESS_KEY_ID", crate::s3::KEY_ID)
        .env("AWS_SECRET_ACCESS_KEY", crate::s3::SECRET)
        .output()
        .expect("run duckdb_s3.py (cargo xtask setup installs it)");
    assert!(
        out.status.success(),
        "duckdb_s3 {sql}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("duckdb_s3 prints JSON")
}
