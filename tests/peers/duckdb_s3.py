"""An auditor's DuckDB reading the audit straight from a bucket over S3
(the httpfs extension, from PyPI: .venv/duckdb-httpfs, see
requirements-httpfs.txt). The table `mcp_audit` is every Parquet file
under s3://BUCKET/PREFIX/events/, Hive partitions (dt, hour) included,
as Athena's partition projection reads them.

    duckdb_s3.py --endpoint 127.0.0.1:9000 --bucket B --prefix P --sql 'SELECT ...'

Credentials: AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY. Prints
{"columns": [...], "rows": [[...], ...]} as JSON.
"""
import argparse
import json
import os
import sys

import duckdb
import duckdb_extension_httpfs


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--endpoint", required=True, help="host:port of the S3 API")
    ap.add_argument("--bucket", required=True)
    ap.add_argument("--prefix", required=True)
    ap.add_argument("--sql", required=True)
    a = ap.parse_args()
    if not duckdb.__version__.startswith("1.5."):
        print(f"this reader needs DuckDB 1.5, not {duckdb.__version__}", file=sys.stderr)
        return 2
    ext = os.path.join(
        os.path.dirname(duckdb_extension_httpfs.__file__),
        "extensions",
        f"v{duckdb.__version__}",
        "httpfs.duckdb_extension",
    )
    con = duckdb.connect()
    # The signed extension file from PyPI; never a download.
    con.execute("SET autoinstall_known_extensions = false")
    con.execute("SET autoload_known_extensions = false")
    con.execute(f"LOAD '{ext}'")
    con.execute(
        "CREATE SECRET moto (TYPE s3, KEY_ID $k, SECRET $s, REGION 'us-east-1', "
        "ENDPOINT $e, URL_STYLE 'path', USE_SSL false)".replace("$k", lit(os.environ["AWS_ACCESS_KEY_ID"]))
        .replace("$s", lit(os.environ["AWS_SECRET_ACCESS_KEY"]))
        .replace("$e", lit(a.endpoint))
    )
    glob = f"s3://{a.bucket}/{a.prefix.strip('/')}/events/**/*.parquet"
    con.execute(
        f"CREATE VIEW mcp_audit AS SELECT * FROM read_parquet({lit(glob)}, "
        "hive_partitioning = true, union_by_name = true)"
    )
    cur = con.execute(a.sql)
    cols = [d[0] for d in cur.description]
    rows = [[jsonable(v) for v in r] for r in cur.fetchall()]
    json.dump({"columns": cols, "rows": rows}, sys.stdout)
    return 0


def lit(s: str) -> str:
    return "'" + s.replace("'", "''") + "'"


def jsonable(v):
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    return str(v)


if __name__ == "__main__":
    sys.exit(main())
