"""An MCP 2026-07-28 client on the official Python SDK that calls one tool
and answers URL-mode elicitations (the SDK's multi round-trip driver
repeats the call with the answers and the echoed requestState).

    inband_client.py --url URL --bearer TOKEN --tool NAME --args JSON --go FILE

Each elicitation is printed as `elicit <params JSON>`. The first is
answered "accept" at once (the call is repeated before anyone approved);
later ones only once FILE exists (the test approves, then creates it).
The tool's result is printed as `result <JSON>`; an error as `error <text>`.
"""

import argparse
import json
import os

import anyio
import httpx2
from mcp import Client, types
from mcp.client.streamable_http import streamable_http_client


async def run(a: argparse.Namespace) -> None:
    seen = 0

    async def elicitation(_context, params):
        nonlocal seen
        seen += 1
        print("elicit " + json.dumps(params.model_dump(by_alias=True, exclude_none=True)), flush=True)
        if seen > 1:
            while not os.path.exists(a.go):
                await anyio.sleep(0.1)
        return types.ElicitResult(action="accept")

    http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {a.bearer}"}, timeout=30)
    client = Client(
        streamable_http_client(a.url, http_client=http),
        mode="2026-07-28",
        cache=None,
        elicitation_callback=elicitation,
        client_info=types.Implementation(name="inband-client", version="1"),
    )
    async with client:
        try:
            r = await client.call_tool(a.tool, json.loads(a.args))
            print("result " + json.dumps(r.model_dump(by_alias=True, exclude_none=True)), flush=True)
        except Exception as e:  # the test reads what went wrong
            print(f"error {type(e).__name__}: {e}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", required=True)
    ap.add_argument("--bearer", required=True)
    ap.add_argument("--tool", required=True)
    ap.add_argument("--args", default="{}")
    ap.add_argument("--go", required=True)
    anyio.run(run, ap.parse_args())


if __name__ == "__main__":
    main()
