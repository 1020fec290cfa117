#!/usr/bin/env python3
"""Check an mcp-interceptor audit directory the way an auditor would read it.

Run with `<repo>/.venv/bin/python` (duckdb, pyarrow and sqlglot come from
requirements.txt):

    audit_check.py --dir AUDIT_DIR --schema
    audit_check.py --dir AUDIT_DIR --query NAME [--param KEY=VALUE ...]
    audit_check.py --dir AUDIT_DIR --ocsf SQL
    audit_check.py --parse-ddl

Exactly one of --schema, --query, --ocsf, --parse-ddl (--parse-ddl ignores
--dir).
Each prints one JSON object on stdout and exits 0; on any error, bad
arguments included, a message on stderr whose last line starts with
"audit_check: error:", and exit 1.

--schema     pyarrow reads every Parquet file under AUDIT_DIR/events as one
             Hive-partitioned dataset (dt=YYYY-MM-DD/hour=HH/*.parquet):
             {"files": N, "rows": N,
              "fields": [{"name": ..., "type": ...}, ...],   # data columns,
                       # file order; type is pyarrow's type string with
                       # nested field names left out: "timestamp[ms, tz=UTC]",
                       # "int64", "int32", "string", "bool", "list<string>",
                       # "map<string, int32>"
              "partitions": ["dt=2026-03-01/hour=09", ...]}  # sorted
             Every file must sit at dt=.../hour=.../ and have the same
             schema as the others, or an older layout of it (its first
             columns: columns are only added at the end), else an error
             naming the file.
--query      DuckDB over the same files, as the view Athena users query:
               CREATE VIEW mcp_audit AS SELECT * FROM read_parquet(
                 'AUDIT_DIR/events/*/*/*.parquet', hive_partitioning = true,
                 hive_types_autocast = false, union_by_name = true)
             (dt and hour stay strings, as in create_table.sql; the session
             time zone is UTC, as on Athena), then deploy/athena/queries/
             NAME.sql (or deploy/athena/fleet/NAME.sql) with each {{key}} replaced by its --param value (single
             quotes doubled: every placeholder sits in a SQL string). A
             placeholder without a --param, or a --param the file does not
             use, is an error; from/to must be 'YYYY-MM-DD HH:MM:SS[.ffffff]'.
             {"columns": [...], "rows": [[...], ...]}: timestamps as ISO 8601
             strings with milliseconds ("2026-03-01T09:05:00.123+00:00"),
             lists as arrays, maps as objects, nulls as null.
--ocsf       DuckDB over the same files and the same mcp_audit view as
             --query, with deploy/athena/ocsf_view.sql's mcp_audit_ocsf
             view on top, then SQL (e.g. SELECT status_id, tls FROM
             mcp_audit_ocsf); prints what --query prints. sqlglot
             transpiles the view from Athena to DuckDB, with two rewrites
             where DuckDB differs: map_filter(m, (k, v) -> p) becomes
             map_from_entries(list_filter(map_entries(m), kv -> p)) (DuckDB
             has no map_filter), and CAST(x AS JSON) becomes to_json(x)
             (Trino makes a JSON value of x; DuckDB parses x as JSON text).
--parse-ddl  sqlglot (dialect "athena") parses deploy/athena/create_table.sql,
             ocsf_view.sql and every queries/*.sql: one statement each, of the
             expected kind (CREATE TABLE, CREATE VIEW, query), with nothing
             left as an unparsed command. {"parsed": [paths relative to the
             repo]}. No "hive" fallback is needed: sqlglot's athena dialect
             takes the Hive-style CREATE EXTERNAL TABLE ... PARTITIONED BY ...
             STORED AS ... TBLPROPERTIES itself (it hands DDL to its Hive
             parser and queries to its Trino one), as Athena does.
"""

from __future__ import annotations

import argparse
import base64
import datetime as _dt
import decimal
import json
import re
import sys
import uuid
from pathlib import Path
from typing import Any, NoReturn

REPO = Path(__file__).resolve().parents[2]
ATHENA_DIR = REPO / "deploy" / "athena"
QUERY_DIR = ATHENA_DIR / "queries"
# Fleet queries: shipped beside the auditor queries, not saved in the stack.
FLEET_DIR = ATHENA_DIR / "fleet"
DIALECT = "athena"

PLACEHOLDER = re.compile(r"\{\{([A-Za-z_][A-Za-z0-9_]*)\}\}")
TIMESTAMP_PARAMS = ("from", "to")
TIMESTAMP_VALUE = re.compile(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}(\.\d{1,6})?")
PARTITION_DIR = re.compile(r"dt=\d{4}-\d{2}-\d{2}/hour=\d{2}")


class CheckError(Exception):
    """An error to report on stderr (exit 1)."""


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # exit 1, not argparse's 2
        self.print_usage(sys.stderr)
        print(f"audit_check: error: {message}", file=sys.stderr)
        sys.exit(1)


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = Parser(description="Check an mcp-interceptor audit directory (Parquet) and the Athena SQL.")
    p.add_argument("--dir", type=Path, help="the audit directory (holds events/)")
    mode = p.add_mutually_exclusive_group(required=True)
    mode.add_argument("--schema", action="store_true", help="print files, rows, fields and partitions")
    mode.add_argument("--query", metavar="NAME", help="run deploy/athena/queries/NAME.sql with DuckDB")
    mode.add_argument("--ocsf", metavar="SQL", help="run SQL over the OCSF view with DuckDB")
    mode.add_argument("--parse-ddl", action="store_true", help="parse every deploy/athena SQL file with sqlglot")
    p.add_argument("--param", action="append", default=[], metavar="KEY=VALUE", help="a {{KEY}} value for --query")
    args = p.parse_args(argv)
    if args.param and not args.query:
        p.error("--param goes with --query")
    if (args.schema or args.query or args.ocsf) and args.dir is None:
        p.error("--schema, --query and --ocsf need --dir AUDIT_DIR")
    return args


def events_dir(audit_dir: Path) -> Path:
    events = audit_dir / "events"
    if not events.is_dir():
        raise CheckError(f"{events}: no such directory")
    return events


# --schema ------------------------------------------------------------------


def data_files(events: Path) -> list[Path]:
    """The files pyarrow's dataset discovery takes: *.parquet, no ./_ names."""
    files = []
    for f in sorted(events.rglob("*.parquet")):
        rel = f.relative_to(events)
        if any(part.startswith((".", "_")) for part in rel.parts):
            continue
        files.append(f)
    return files


def type_name(t: Any) -> str:
    """pyarrow's type string without nested field names, which differ by
    writer (arrow-rs: item, keys/values; pyarrow: element, key/value)."""
    import pyarrow as pa

    if pa.types.is_map(t):
        return f"map<{type_name(t.key_type)}, {type_name(t.item_type)}>"
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        return f"list<{type_name(t.value_type)}>"
    if pa.types.is_struct(t):
        return "struct<" + ", ".join(f"{f.name}: {type_name(f.type)}" for f in t) + ">"
    return str(t)


def is_prefix(a, b) -> bool:
    """Whether schema `a` is `b`'s first columns (an older layout of it)."""
    return len(a) <= len(b) and all(a.field(i).equals(b.field(i)) for i in range(len(a)))


def check_schema(audit_dir: Path) -> dict[str, Any]:
    import pyarrow as pa
    import pyarrow.dataset as ds
    import pyarrow.parquet as pq

    events = events_dir(audit_dir)
    files = data_files(events)
    if not files:
        raise CheckError(f"{events}: no Parquet files")
    partitions = set()
    first_schema = None
    for f in files:
        rel = f.relative_to(events)
        part = "/".join(rel.parts[:-1])
        if not PARTITION_DIR.fullmatch(part):
            raise CheckError(f"{f}: not under dt=YYYY-MM-DD/hour=HH/")
        partitions.add(part)
        try:
            schema = pq.read_schema(f)
        except Exception as e:
            raise CheckError(f"{f}: unreadable Parquet: {e}") from e
        # Columns are only ever added at the end: an older file's schema
        # is a prefix of a newer one's; the widest is the dataset's.
        if first_schema is None:
            first_schema = schema
        elif is_prefix(first_schema, schema):
            first_schema = schema
        elif not is_prefix(schema, first_schema):
            raise CheckError(f"{f}: schema differs from {files[0]}")
    assert first_schema is not None
    names = set(first_schema.names)
    if names & {"dt", "hour"}:
        raise CheckError(f"{files[0]}: a data column is named like a partition key (dt, hour)")
    keys = pa.schema([("dt", pa.string()), ("hour", pa.string())])
    dataset = ds.dataset(
        [str(f) for f in files],
        schema=pa.unify_schemas([first_schema, keys]),
        format="parquet",
        partitioning=ds.partitioning(keys, flavor="hive"),
        partition_base_dir=str(events),
    )
    try:
        table = dataset.to_table()  # reads (and decodes) every file
    except Exception as e:
        raise CheckError(f"{events}: reading the dataset failed: {e}") from e
    return {
        "files": len(files),
        "rows": table.num_rows,
        "fields": [{"name": f.name, "type": type_name(f.type)} for f in first_schema],
        "partitions": sorted(partitions),
    }


# --query -------------------------------------------------------------------


def substitute(sql: str, name: str, params: list[str]) -> str:
    values: dict[str, str] = {}
    for p in params:
        key, sep, value = p.partition("=")
        if not sep or not PLACEHOLDER.fullmatch("{{" + key + "}}"):
            raise CheckError(f"--param {p!r}: expected KEY=VALUE with KEY a name")
        if key in values:
            raise CheckError(f"--param {key} given twice")
        if key in TIMESTAMP_PARAMS and not TIMESTAMP_VALUE.fullmatch(value):
            raise CheckError(f"--param {key}={value!r}: expected 'YYYY-MM-DD HH:MM:SS' (UTC)")
        values[key] = value
    stray = re.search(r"\{\{[^}]*\}?\}?", PLACEHOLDER.sub("", sql))
    if stray:
        raise CheckError(f"{name}: {stray.group(0)!r} is not a {{{{name}}}} placeholder")
    wanted = set(PLACEHOLDER.findall(sql))
    missing = sorted(wanted - values.keys())
    if missing:
        raise CheckError(f"{name}: no --param for " + ", ".join("{{%s}}" % k for k in missing))
    unused = sorted(values.keys() - wanted)
    if unused:
        raise CheckError(f"{name}: does not use --param " + ", ".join(unused))
    return PLACEHOLDER.sub(lambda m: values[m.group(1)].replace("'", "''"), sql)


def jsonable(v: Any) -> Any:
    if v is None or isinstance(v, (bool, int, str)):
        return v
    if isinstance(v, float):
        return v if v == v and v not in (float("inf"), float("-inf")) else str(v)
    if isinstance(v, (_dt.datetime, _dt.time)):  # milliseconds always shown
        return v.isoformat(timespec="microseconds" if v.microsecond % 1000 else "milliseconds")
    if isinstance(v, _dt.date):
        return v.isoformat()
    if isinstance(v, _dt.timedelta):
        return v.total_seconds()
    if isinstance(v, decimal.Decimal):
        return str(v)
    if isinstance(v, uuid.UUID):
        return str(v)
    if isinstance(v, (bytes, bytearray, memoryview)):
        return base64.b64encode(bytes(v)).decode()
    if isinstance(v, dict):
        return {str(k): jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [jsonable(x) for x in v]
    return str(v)


def run_query(audit_dir: Path, name: str, params: list[str]) -> dict[str, Any]:
    if not re.fullmatch(r"[A-Za-z0-9_-]+", name):
        raise CheckError(f"--query {name!r}: expected a file name without .sql")
    path = QUERY_DIR / f"{name}.sql"
    if not path.is_file() and (FLEET_DIR / f"{name}.sql").is_file():
        path = FLEET_DIR / f"{name}.sql"
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in QUERY_DIR.glob("*.sql")))
        raise CheckError(f"{path}: no such query (known: {known})")
    sql = substitute(path.read_text(), path.name, params)
    return run_sql(audit_dir, [sql], path.name)


def run_sql(audit_dir: Path, statements: list[str], label: str) -> dict[str, Any]:
    """The mcp_audit view over AUDIT_DIR's files, then each statement; the
    last one's result."""
    import duckdb

    events = events_dir(audit_dir)
    if not data_files(events):
        raise CheckError(f"{events}: no Parquet files")
    glob = str(events.resolve() / "*" / "*" / "*.parquet").replace("'", "''")
    con = duckdb.connect(":memory:")
    try:
        con.execute("SET TimeZone = 'UTC'")
        con.execute(
            "CREATE VIEW mcp_audit AS SELECT * FROM read_parquet("
            f"'{glob}', hive_partitioning = true, hive_types_autocast = false, "
            "union_by_name = true)"
        )
        for sql in statements:
            cur = con.execute(sql)
        columns = [d[0] for d in cur.description]
        rows = [[jsonable(v) for v in r] for r in cur.fetchall()]
    except duckdb.Error as e:
        raise CheckError(f"{label}: DuckDB: {e}") from e
    finally:
        con.close()
    return {"columns": columns, "rows": rows}


# --ocsf --------------------------------------------------------------------


def ocsf_view_for_duckdb() -> str:
    """deploy/athena/ocsf_view.sql in DuckDB's dialect (see --ocsf)."""
    import sqlglot
    from sqlglot import exp

    path = ATHENA_DIR / "ocsf_view.sql"
    try:
        view = sqlglot.parse_one(path.read_text(), read=DIALECT)
    except sqlglot.errors.SqlglotError as e:
        raise CheckError(f"{path.name}: sqlglot ({DIALECT}) cannot parse it: {e}") from e

    def map_filter(n: exp.Expression) -> exp.Expression:
        if not (isinstance(n, exp.Anonymous) and n.name.lower() == "map_filter"):
            return n
        m, lam = n.expressions
        key, value = (p.name for p in lam.expressions)

        def entry(x: exp.Expression) -> exp.Expression:
            # A lambda's parameters parse as bare identifiers or columns.
            bare = isinstance(x, exp.Column) and not x.table
            bare |= isinstance(x, exp.Identifier) and not isinstance(x.parent, exp.Column)
            if bare and x.name in (key, value):
                return exp.column("key" if x.name == key else "value", table="kv")
            return x

        p = lam.this.copy().transform(entry).sql("duckdb")
        return sqlglot.parse_one(
            f"map_from_entries(list_filter(map_entries({m.sql('duckdb')}), kv -> {p}))",
            read="duckdb",
        )

    def to_json(n: exp.Expression) -> exp.Expression:
        if isinstance(n, exp.Cast) and n.to.is_type("json"):
            # transform does not descend into a node it replaced: do it here.
            return exp.Anonymous(this="to_json", expressions=[n.this.transform(to_json)])
        return n

    return view.transform(map_filter).transform(to_json).sql("duckdb")


def run_ocsf(audit_dir: Path, sql: str) -> dict[str, Any]:
    return run_sql(audit_dir, [ocsf_view_for_duckdb(), sql], "ocsf_view.sql")


# --parse-ddl ---------------------------------------------------------------


def parse_all() -> dict[str, Any]:
    import sqlglot
    from sqlglot import exp

    targets: list[tuple[Path, str]] = [
        (ATHENA_DIR / "create_table.sql", "table"),
        (ATHENA_DIR / "ocsf_view.sql", "view"),
    ]
    queries = sorted(QUERY_DIR.glob("*.sql"))
    if not queries:
        raise CheckError(f"{QUERY_DIR}: no .sql files")
    targets += [(q, "query") for q in queries + sorted(FLEET_DIR.glob("*.sql"))]
    parsed = []
    for path, want in targets:
        rel = path.relative_to(REPO).as_posix()
        if not path.is_file():
            raise CheckError(f"{rel}: missing")
        try:
            statements = [s for s in sqlglot.parse(path.read_text(), read=DIALECT) if s is not None]
        except sqlglot.errors.SqlglotError as e:
            raise CheckError(f"{rel}: sqlglot ({DIALECT}) cannot parse it: {e}") from e
        if len(statements) != 1:
            raise CheckError(f"{rel}: expected one statement, found {len(statements)}")
        tree = statements[0]
        if any(isinstance(n, exp.Command) for n in tree.walk()):
            raise CheckError(f"{rel}: sqlglot ({DIALECT}) left part of it unparsed (a raw command)")
        kind = str(tree.args.get("kind") or "").upper() if isinstance(tree, exp.Create) else ""
        ok = {
            "table": isinstance(tree, exp.Create) and kind == "TABLE",
            "view": isinstance(tree, exp.Create) and kind == "VIEW",
            "query": isinstance(tree, exp.Query),
        }[want]
        if not ok:
            raise CheckError(f"{rel}: parsed as {type(tree).__name__} {kind}, expected {want}")
        parsed.append(rel)
    return {"parsed": parsed}


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    try:
        if args.schema:
            out = check_schema(args.dir)
        elif args.query:
            out = run_query(args.dir, args.query, args.param)
        elif args.ocsf:
            out = run_ocsf(args.dir, args.ocsf)
        else:
            out = parse_all()
    except CheckError as e:
        print(f"audit_check: error: {e}", file=sys.stderr)
        return 1
    except Exception as e:  # anything unexpected: still one line, exit 1
        print(f"audit_check: error: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    json.dump(out, sys.stdout, indent=2, sort_keys=False)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
