"""The official Python SDK client at 2026-07-28, for
tests/tests/boundary_params.rs: lists the tools (which teaches the SDK the
tools' `x-mcp-header` declarations), then calls one; the SDK mirrors the
declared arguments into Mcp-Param-* headers.

    params_client.py --url URL --tool NAME --args JSON

Prints one JSON object: {"tools": [listed names], "text": the result's
text} or {"tools": .., "error": what went wrong}.
"""

import argparse
import json

import anyio
from mcp import Client, types
from mcp.client.streamable_http import streamable_http_client


def describe(e: BaseException) -> str:
    """What went wrong, through anyio's exception groups."""
    if isinstance(e, BaseExceptionGroup):
        return "; ".join(describe(x) for x in e.exceptions)
    return f"{type(e).__name__}: {e}"


async def run(a: argparse.Namespace) -> dict:
    info = types.Implementation(name="params-client", version="1")
    out: dict = {}
    try:
        async with Client(streamable_http_client(a.url), client_info=info, mode="2026-07-28") as c:
            out["tools"] = sorted(t.name for t in (await c.list_tools()).tools)
            result = await c.call_tool(a.tool, json.loads(a.args))
            out["text"] = result.content[0].text
    except Exception as e:  # the test reads what went wrong
        out["error"] = describe(e)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", required=True)
    ap.add_argument("--tool", required=True)
    ap.add_argument("--args", default="{}")
    print(json.dumps(anyio.run(run, ap.parse_args()), sort_keys=True), flush=True)


if __name__ == "__main__":
    main()
