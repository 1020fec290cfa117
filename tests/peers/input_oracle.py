"""How real servers read generated inputs: the oracle of
tests/tests/input_prop.rs. One JSON request a line on stdin, one JSON
answer a line on stdout.

  {"k": "sql", "t": TEXT}   the kinds of the statements sqlite3's
                            executescript really ran (trace callback),
                            on a fresh in-memory database
  {"k": "uri", "t": URI}    the path a WHATWG parser (pydantic's AnyUrl,
                            as Node's fileURLToPath) and Python's
                            urlsplit + unquote + normpath resolve a
                            file: URI to; null where a parser refuses
  {"k": "path", "t": PATH}  the path a server opens: literally
                            (normpath), and decoded with `\\` as separator
  {"k": "msg", "t": BODY}   a JSON-RPC body as Python's json module reads
                            it: method, params.name, params.uri,
                            params.arguments (numbers tagged exactly)
"""

import json
import os
import re
import sqlite3
import struct
import sys
from urllib.parse import unquote, urlsplit

from pydantic import AnyUrl

LEAD = re.compile(r"\A(?:\s+|;|--[^\n]*(?:\n|\Z)|/\*.*?(?:\*/|\Z))*", re.S)


def sql(text):
    db = sqlite3.connect(":memory:")
    db.executescript("CREATE TABLE orders (id INTEGER); CREATE TABLE t (a);")
    ran = []
    db.set_trace_callback(ran.append)
    db.set_progress_handler(lambda: 1 if len(ran) > 50 else 0, 1000)
    error = None
    try:
        db.executescript(text)
    except Exception as e:  # noqa: BLE001 - any failure still ran what it ran
        error = str(e)
    db.close()
    kinds = []
    for stmt in ran:
        rest = LEAD.sub("", stmt)
        word = re.match(r"[A-Za-z]*", rest).group(0).lower()
        kinds.append(word or "other")
    return {"kinds": kinds, "error": error}


def whatwg(uri):
    try:
        parts = urlsplit(str(AnyUrl(uri)))
    except Exception:  # noqa: BLE001 - the parser refused it
        return None
    if parts.scheme != "file":
        return None
    return os.path.normpath(unquote(parts.path))


def stdlib(uri):
    try:
        parts = urlsplit(uri)
    except ValueError:
        return None
    if parts.scheme.lower() != "file":
        return None
    return os.path.normpath(unquote(parts.path))


def uri(text):
    return {"whatwg": whatwg(text), "stdlib": stdlib(text)}


def path(text):
    if text[:5].lower() == "file:":
        u = uri(text)
        return {"readings": [u["whatwg"], u["stdlib"]]}
    return {
        "readings": [
            os.path.normpath(text),
            os.path.normpath(unquote(text).replace("\\", "/")),
        ]
    }


def tagged(v):
    if isinstance(v, bool) or v is None or isinstance(v, str):
        return v
    if isinstance(v, int):
        return {"int": str(v)}
    if isinstance(v, float):
        return {"f64": str(struct.unpack("<Q", struct.pack("<d", v))[0])}
    if isinstance(v, list):
        return [tagged(x) for x in v]
    return {k: tagged(x) for k, x in v.items()}


def msg(text):
    try:
        m = json.loads(text)
    except ValueError:
        return None
    if not isinstance(m, dict):
        return None
    p = m.get("params") if isinstance(m.get("params"), dict) else {}
    return {
        "method": m.get("method"),
        "name": p.get("name"),
        "uri": p.get("uri"),
        "arguments": tagged(p.get("arguments")),
    }


KINDS = {"sql": sql, "uri": uri, "path": path, "msg": msg}

for line in sys.stdin:
    req = json.loads(line)
    print(json.dumps(KINDS[req["k"]](req["t"])), flush=True)
