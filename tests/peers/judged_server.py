"""A plain JSON-RPC MCP server that acts the way common servers do, so
tests can check that the agent judged what the server acts on.

    judged_server.py --host 127.0.0.1 --port 8080

Tools:
  query(sql)      runs `sql` with sqlite3's executescript on an in-memory
                  database holding a table `orders`; answers how many
                  statements ran and whether `orders` still exists.
  read_file(path) answers the path the server would open: a `file:` URI
                  parsed by a WHATWG parser (pydantic's AnyUrl, the Rust
                  url crate, as Node's fileURLToPath does) and decoded; a
                  plain path percent-decoded with `\\` read as a separator
                  (as servers that accept Windows paths do) and normalized.
  echo(**args)    answers the arguments as Python's json module read them
                  (exact integers, the last of duplicate keys).
resources/read answers the path of a `file:` URI, resolved like read_file.

With --compress accepted it gzips every answer whose request accepts gzip
(as servers behind compression middleware do); with --compress always,
every answer. Either prints `accept-encoding <value or ->` per request.
"""

import argparse
import gzip
import json
import os
import sqlite3
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit

from pydantic import AnyUrl

DB = sqlite3.connect(":memory:", check_same_thread=False)
DB.executescript("CREATE TABLE orders (id INTEGER); INSERT INTO orders VALUES (1);")
LOCK = threading.Lock()

TOOLS = [
    {"name": n, "description": d, "inputSchema": {"type": "object"}}
    for n, d in [
        ("query", "Run SQL"),
        ("read_file", "Read a file"),
        ("echo", "Echo the arguments"),
    ]
]


def resolve(p: str) -> str:
    if p[:5].lower() == "file:":
        return os.path.normpath(unquote(urlsplit(str(AnyUrl(p))).path))
    return os.path.normpath(unquote(p).replace("\\", "/"))


def run_sql(sql: str) -> dict:
    ran = []
    with LOCK:
        DB.set_trace_callback(ran.append)
        try:
            DB.executescript(sql)
            error = None
        except sqlite3.Error as e:
            error = str(e)
        finally:
            DB.set_trace_callback(None)
        exists = DB.execute(
            "SELECT count(*) FROM sqlite_master WHERE name = 'orders'"
        ).fetchone()[0]
    return {"statements": len(ran), "orders": bool(exists), "error": error}


def text(v) -> dict:
    return {"content": [{"type": "text", "text": json.dumps(v)}]}


def answer(msg: dict):
    method, params = msg.get("method"), msg.get("params") or {}
    if method == "initialize":
        return {
            "protocolVersion": params.get("protocolVersion", "2025-06-18"),
            "capabilities": {"tools": {}, "resources": {}},
            "serverInfo": {"name": "judged", "version": "1"},
        }
    if method == "ping":
        return {}
    if method == "tools/list":
        return {"tools": TOOLS}
    if method == "tools/call":
        name, args = params.get("name"), params.get("arguments") or {}
        if name == "query":
            return text(run_sql(args.get("sql", "")))
        if name == "read_file":
            return text({"resolved": resolve(args.get("path", ""))})
        if name == "echo":
            return text({"arguments": args})
    if method == "resources/read":
        uri = params.get("uri", "")
        return {"contents": [{"uri": uri, "text": json.dumps({"resolved": resolve(uri)})}]}
    return None


COMPRESS = None


def accepts_gzip(accept: str) -> bool:
    for item in accept.split(","):
        coding, _, params = item.strip().partition(";")
        if coding.strip().lower() in ("gzip", "*"):
            q = params.strip().lower()
            return not (q.startswith("q=") and float(q[2:] or 0) == 0)
    return False


class Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        msg = json.loads(body)
        if "id" not in msg:
            self.send_response(202)
            self.send_header("content-length", "0")
            self.end_headers()
            return
        result = answer(msg)
        out = {"jsonrpc": "2.0", "id": msg["id"]}
        if result is None:
            out["error"] = {"code": -32601, "message": "unknown method or tool"}
        else:
            out["result"] = result
        data = json.dumps(out).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        if COMPRESS:
            accept = self.headers.get("accept-encoding")
            print(f"accept-encoding {accept or '-'}", flush=True)
            if COMPRESS == "always" or accepts_gzip(accept or ""):
                data = gzip.compress(data)
                self.send_header("content-encoding", "gzip")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8080)
    ap.add_argument("--compress", choices=["accepted", "always"])
    a = ap.parse_args()
    global COMPRESS
    COMPRESS = a.compress
    srv = ThreadingHTTPServer((a.host, a.port), Handler)
    print(f"judged server ready {a.host}:{a.port}", flush=True)
    srv.serve_forever()


if __name__ == "__main__":
    main()
