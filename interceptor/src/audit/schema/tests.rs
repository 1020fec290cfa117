//! [`schema`] against the Athena DDL, [`to_batch`] on a few rows, and a
//! Parquet round trip through the `parquet` crate's Arrow writer and reader.

use std::collections::BTreeSet;

use arrow_array::{
    Array,
    cast::AsArray,
    types::{Int32Type, Int64Type, TimestampMillisecondType},
};
use bytes::Bytes;
use parquet::{
    arrow::{ArrowWriter, arrow_reader::ParquetRecordBatchReaderBuilder},
    basic::{
        Compression, LogicalType, TimeUnit as ParquetTimeUnit, Type as PhysicalType, ZstdLevel,
    },
    file::properties::WriterProperties,
};

use super::*;

const DDL: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../deploy/athena/create_table.sql"
);

/// How `deploy/athena/create_table.sql` spells an Arrow type (Hive DDL
/// names). Anything else has no Athena-safe spelling in this project.
fn athena_type(t: &DataType) -> String {
    match t {
        DataType::Timestamp(TimeUnit::Millisecond, Some(tz)) if &**tz == "UTC" => {
            "timestamp".into()
        }
        DataType::Int64 => "bigint".into(),
        DataType::Int32 => "int".into(),
        DataType::Utf8 => "string".into(),
        DataType::Boolean => "boolean".into(),
        DataType::List(item) => format!("array<{}>", athena_type(item.data_type())),
        DataType::Map(entries, _) => match entries.data_type() {
            DataType::Struct(kv) if kv.len() == 2 => {
                format!(
                    "map<{},{}>",
                    athena_type(kv[0].data_type()),
                    athena_type(kv[1].data_type())
                )
            }
            other => panic!("map entries of type {other:?}"),
        },
        other => {
            panic!("{other:?} has no Athena type here: add it to athena_type and create_table.sql")
        }
    }
}

/// The DDL without `--` comments (none of its string literals holds `--`).
fn strip_comments(sql: &str) -> String {
    sql.lines()
        .map(|l| l.split("--").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The column list of `CREATE EXTERNAL TABLE ... mcp_audit (...)`: the text
/// between the first `(` after `mcp_audit` and its matching `)`, split at
/// top-level commas (not those inside `map<string,int>`) into (name, type),
/// backticks dropped, the type lowercased without spaces; and the text after
/// the list.
fn ddl_columns(sql: &str) -> (Vec<(String, String)>, String) {
    let sql = strip_comments(sql);
    let table = sql
        .find("mcp_audit")
        .expect("create_table.sql names mcp_audit");
    let open = table + sql[table..].find('(').expect("a ( after mcp_audit");
    let mut depth = 0usize;
    let mut close = None;
    for (i, c) in sql[open..].char_indices() {
        match c {
            '(' => depth += 1,
            ')' => {
                depth -= 1;
                if depth == 0 {
                    close = Some(open + i);
                    break;
                }
            }
            _ => {}
        }
    }
    let close = close.expect("the column list's ( is closed");
    let body = &sql[open + 1..close];

    let mut entries = Vec::new();
    let (mut nest, mut start) = (0usize, 0usize);
    for (i, c) in body.char_indices() {
        match c {
            '(' | '<' => nest += 1,
            ')' | '>' => nest -= 1,
            ',' if nest == 0 => {
                entries.push(&body[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    entries.push(&body[start..]);

    let columns = entries
        .into_iter()
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .map(|e| {
            let (name, ty) = e
                .split_once(char::is_whitespace)
                .unwrap_or_else(|| panic!("no type in {e:?}"));
            let ty: String = ty.chars().filter(|c| !c.is_whitespace()).collect();
            (name.trim_matches('`').to_string(), ty.to_lowercase())
        })
        .collect();
    (columns, sql[close + 1..].to_string())
}

fn normalized(s: &str) -> String {
    s.replace('`', "")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase()
}

#[test]
fn athena_ddl_lists_every_column_in_order_with_its_type() {
    let sql = std::fs::read_to_string(DDL).unwrap_or_else(|e| panic!("{DDL}: {e}"));
    let (columns, rest) = ddl_columns(&sql);
    let schema = schema();
    let expected: Vec<(String, String)> = schema
        .fields()
        .iter()
        .map(|f| (f.name().clone(), athena_type(f.data_type())))
        .collect();
    for (i, (want, got)) in expected.iter().zip(&columns).enumerate() {
        assert_eq!(
            got, want,
            "column {i} of create_table.sql (left) against schema() (right)"
        );
    }
    assert_eq!(
        columns.len(),
        expected.len(),
        "create_table.sql has {} columns, schema() {}",
        columns.len(),
        expected.len()
    );

    let rest = normalized(&rest);
    assert!(
        rest.contains("partitioned by (dt string, hour string)"),
        "partition columns: {rest}"
    );
    assert!(rest.contains("stored as parquet"), "{rest}");
    for key in ["dt", "hour"] {
        assert!(
            schema.field_with_name(key).is_err(),
            "{key} is a partition column, not a data column"
        );
    }
}

#[test]
fn audit_row_has_a_field_for_every_column_but_event_time() {
    let row = serde_json::to_value(AuditRow::default()).expect("serializes");
    let fields: BTreeSet<String> = row
        .as_object()
        .expect("an object")
        .keys()
        .cloned()
        .collect();
    let columns: BTreeSet<String> = schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .filter(|n| n != "event_time")
        .collect();
    assert_eq!(
        fields, columns,
        "AuditRow fields (left) against schema() columns without event_time (right)"
    );
}

/// Every list and the map filled, nearly every option set.
fn full_row() -> AuditRow {
    AuditRow {
        event_time_us: 1_772_355_900_123_456,
        event_id: "0195f3c2-7a10-7000-8000-000000000001".into(),
        kind: "exchange".into(),
        host: "host-a".into(),
        agent_version: "0.1.0".into(),
        policy_version: Some("p-7".into()),
        session_id: Some("sess-1".into()),
        transport: Some("streamable-http".into()),
        protocol_version: Some("2025-11-25".into()),
        src_addr: Some("10.0.0.5".into()),
        src_port: Some(40001),
        dst_addr: Some("10.0.0.9".into()),
        dst_port: Some(8080),
        conn_id: Some(7),
        subject: Some("alice".into()),
        issuer: Some("https://idp.example".into()),
        auth_method: Some("oidc".into()),
        groups: vec!["dev".into(), "ops".into()],
        cert_fingerprint: Some("ab".repeat(32)),
        token_id: Some("tok-1".into()),
        oauth_client_id: Some("claude-desktop".into()),
        cert_serial: Some("0a1b2c".into()),
        cert_not_after: Some(1_800_000_000_000),
        client_name: Some("claude-code".into()),
        client_version: Some("1.2.3".into()),
        direction: Some("client_to_server".into()),
        jsonrpc_id: Some("1".into()),
        method: Some("tools/call".into()),
        tool_name: Some("echo".into()),
        resource_uri: None,
        prompt_name: None,
        arguments: Some(r#"{"message":"hi"}"#.into()),
        arguments_sha256: Some("cd".repeat(32)),
        result: Some(r#"{"content":[{"type":"text","text":"hi"}]}"#.into()),
        error: None,
        error_code: None,
        response_truncated: true,
        response_size: Some(180),
        http_status: Some(200),
        decision: Some("allow".into()),
        decided_by: Some("policy".into()),
        rule_ids: vec!["allow-echo".into()],
        approval_id: Some("apr-1".into()),
        approvers: vec!["carol".into(), "dave".into()],
        masked_counts: vec![("email".into(), 2), ("aws_key".into(), 1)],
        received_us: Some(1_772_355_900_123_456),
        forwarded_us: Some(1_772_355_900_123_500),
        first_byte_us: Some(1_772_355_900_130_000),
        done_us: Some(1_772_355_900_131_000),
        latency_us: Some(7_544),
        bytes_in: Some(120),
        bytes_out: Some(180),
        message: None,
        trace_id: Some("4bf92f3577b34da6a3ce929d0e0e4736".into()),
        span_id: Some("00f067aa0ba902b7".into()),
        call_id: Some("0195f3c2-7a10-7000-8000-0000000000c1".into()),
        follows: Some("0195f3c2-7a10-7000-8000-0000000000c0".into()),
        input_responses: Some(r#"{"pin":{"action":"accept"}}"#.into()),
        tls_version: Some("TLSv1.3".into()),
        tls_cipher: Some("TLS13_AES_128_GCM_SHA256".into()),
        tls_alpn: Some("http/1.1".into()),
        bundle_version: Some(42),
        bundle_signer: Some("ab".repeat(32)),
        process_pid: Some(4242),
        process_uid: Some(4_294_967_294),
        process_user: Some("aiagent".into()),
        process_exe: Some("/usr/bin/python3.12".into()),
        process_exe_sha256: Some("ab".repeat(32)),
        process_unit: Some("ai-agent.service".into()),
        process_cgroup: Some("/system.slice/ai-agent.service".into()),
    }
}

/// Only the required fields and a message: every other column null, every
/// list and the map empty.
fn sparse_row() -> AuditRow {
    AuditRow {
        event_time_us: 1_772_355_901_000_999,
        event_id: "0195f3c2-7a10-7000-8000-000000000002".into(),
        kind: "agent_start".into(),
        host: "host-a".into(),
        agent_version: "0.1.0".into(),
        message: Some("started".into()),
        ..Default::default()
    }
}

/// A denial: error text and code, one rule, a resource target.
fn denied_row() -> AuditRow {
    AuditRow {
        event_time_us: 1_772_355_902_000_000,
        event_id: "0195f3c2-7a10-7000-8000-000000000003".into(),
        kind: "denied".into(),
        host: "host-a".into(),
        agent_version: "0.1.0".into(),
        session_id: Some("sess-1".into()),
        subject: Some("bob".into()),
        direction: Some("client_to_server".into()),
        jsonrpc_id: Some("\"req-2\"".into()),
        method: Some("resources/read".into()),
        resource_uri: Some("file:///etc/shadow".into()),
        error: Some(r#"{"code":-32001,"message":"denied by policy"}"#.into()),
        error_code: Some(-32001),
        decision: Some("deny".into()),
        decided_by: Some("policy".into()),
        rule_ids: vec!["deny-secrets".into()],
        ..Default::default()
    }
}

fn rows() -> Vec<AuditRow> {
    vec![full_row(), sparse_row(), denied_row()]
}

/// The names of the columns that are null in row `i`.
fn nulls_in_row(batch: &RecordBatch, i: usize) -> BTreeSet<String> {
    batch
        .schema()
        .fields()
        .iter()
        .zip(batch.columns())
        .filter(|(_, c)| c.is_null(i))
        .map(|(f, _)| f.name().clone())
        .collect()
}

fn strings_at(list: &dyn Array, i: usize) -> Vec<String> {
    let list = list.as_list::<i32>();
    assert!(list.is_valid(i), "lists are empty, never null");
    list.value(i)
        .as_string::<i32>()
        .iter()
        .map(|s| s.expect("no null items").to_string())
        .collect()
}

fn map_at(map: &dyn Array, i: usize) -> Vec<(String, i32)> {
    let map = map.as_map();
    assert!(map.is_valid(i), "the map is empty, never null");
    let entries = map.value(i);
    let keys = entries.column(0).as_string::<i32>();
    let values = entries.column(1).as_primitive::<Int32Type>();
    (0..entries.len())
        .map(|j| (keys.value(j).to_string(), values.value(j)))
        .collect()
}

#[test]
fn to_batch_keeps_every_row_and_its_nulls() {
    let batch = to_batch(&rows()).expect("to_batch");
    assert_eq!(batch.num_rows(), 3);
    assert_eq!(batch.schema(), schema());

    for (field, column) in batch.schema().fields().iter().zip(batch.columns()) {
        assert_eq!(column.len(), 3, "{}", field.name());
        if !field.is_nullable() {
            assert_eq!(column.null_count(), 0, "{} is required", field.name());
        }
    }

    let time = batch
        .column_by_name("event_time")
        .unwrap()
        .as_primitive::<TimestampMillisecondType>();
    assert_eq!(
        time.value(0),
        1_772_355_900_123,
        "milliseconds, truncated from event_time_us"
    );
    assert_eq!(time.value(1), 1_772_355_901_000);
    assert_eq!(time.timezone(), Some("UTC"));
    let time_us = batch
        .column_by_name("event_time_us")
        .unwrap()
        .as_primitive::<Int64Type>();
    assert_eq!(time_us.value(0), 1_772_355_900_123_456);

    let full_nulls: BTreeSet<String> = [
        "resource_uri",
        "prompt_name",
        "error",
        "error_code",
        "message",
    ]
    .map(String::from)
    .into();
    assert_eq!(
        nulls_in_row(&batch, 0),
        full_nulls,
        "null columns of the full row"
    );

    // The sparse row: every nullable scalar column is null (message aside);
    // lists and the map are present and empty.
    let schema = schema();
    let sparse_nulls: BTreeSet<String> = schema
        .fields()
        .iter()
        .filter(|f| {
            f.is_nullable() && !matches!(f.data_type(), DataType::List(_) | DataType::Map(..))
        })
        .map(|f| f.name().clone())
        .filter(|n| n != "message")
        .collect();
    assert_eq!(
        nulls_in_row(&batch, 1),
        sparse_nulls,
        "null columns of the sparse row"
    );
    for name in ["groups", "rule_ids", "approvers"] {
        assert!(
            strings_at(batch.column_by_name(name).unwrap().as_ref(), 1).is_empty(),
            "{name}"
        );
    }
    assert!(map_at(batch.column_by_name("masked_counts").unwrap().as_ref(), 1).is_empty());
    let truncated = batch
        .column_by_name("response_truncated")
        .unwrap()
        .as_boolean();
    assert!(truncated.value(0));
    assert!(!truncated.value(1), "false, not null, when unset");

    assert_eq!(
        strings_at(batch.column_by_name("groups").unwrap().as_ref(), 0),
        ["dev", "ops"]
    );
    assert_eq!(
        strings_at(batch.column_by_name("approvers").unwrap().as_ref(), 0),
        ["carol", "dave"]
    );
    assert_eq!(
        strings_at(batch.column_by_name("rule_ids").unwrap().as_ref(), 2),
        ["deny-secrets"]
    );
    assert_eq!(
        map_at(batch.column_by_name("masked_counts").unwrap().as_ref(), 0),
        [("email".to_string(), 2), ("aws_key".to_string(), 1)]
    );
    let code = batch
        .column_by_name("error_code")
        .unwrap()
        .as_primitive::<Int32Type>();
    assert!(code.is_null(0));
    assert_eq!(code.value(2), -32001);
    let uri = batch
        .column_by_name("resource_uri")
        .unwrap()
        .as_string::<i32>();
    assert_eq!(uri.value(2), "file:///etc/shadow");
}

#[test]
fn to_batch_of_no_rows_is_an_empty_batch() {
    let batch = to_batch(&[]).expect("to_batch");
    assert_eq!(batch.num_rows(), 0);
    assert_eq!(batch.schema(), schema());
}

#[test]
fn parquet_round_trip_gives_the_same_rows() {
    let batch = to_batch(&rows()).expect("to_batch");
    let props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::default()))
        .build();
    let mut file = Vec::new();
    let mut writer = ArrowWriter::try_new(&mut file, batch.schema(), Some(props)).expect("writer");
    writer.write(&batch).expect("write");
    writer.close().expect("close");

    let builder =
        ParquetRecordBatchReaderBuilder::try_new(Bytes::from(file)).expect("a Parquet file");

    // What Athena reads: event_time as INT64 TIMESTAMP(MILLIS, UTC), signed
    // integers only, zstd everywhere.
    let meta = builder.metadata().clone();
    let descr = meta.file_metadata().schema_descr();
    let event_time = descr.column(0);
    assert_eq!(event_time.name(), "event_time");
    assert_eq!(event_time.physical_type(), PhysicalType::INT64);
    match event_time.logical_type_ref() {
        Some(LogicalType::Timestamp(t)) => {
            assert!(t.is_adjusted_to_u_t_c, "UTC-adjusted");
            assert_eq!(t.unit, ParquetTimeUnit::MILLIS);
        }
        other => panic!("event_time has logical type {other:?}"),
    }
    for i in 0..descr.num_columns() {
        let column = descr.column(i);
        if let Some(LogicalType::Integer(int)) = column.logical_type_ref() {
            assert!(int.is_signed, "{} is unsigned", column.path());
        }
    }
    for rg in meta.row_groups() {
        for c in rg.columns() {
            assert!(
                matches!(c.compression(), Compression::ZSTD(_)),
                "{} is {:?}",
                c.column_path(),
                c.compression()
            );
        }
    }

    let batches = builder
        .build()
        .expect("reader")
        .collect::<Result<Vec<_>, _>>()
        .expect("read");
    assert_eq!(batches.len(), 1, "3 rows fit in one batch");
    let back = &batches[0];
    assert_eq!(back.num_rows(), batch.num_rows());
    assert_eq!(
        back.schema().fields(),
        schema().fields(),
        "the Arrow schema survives the round trip"
    );
    for (i, field) in schema().fields().iter().enumerate() {
        assert_eq!(
            back.column(i).to_data(),
            batch.column(i).to_data(),
            "column {}",
            field.name()
        );
    }
}
