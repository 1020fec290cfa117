"""A 2026-07-28 client on the official Python SDK that listens for
changes (`subscriptions/listen`) while it works, for the agent's tests.

    listen_client.py --url URL [--idle SECS]

Lists the tools; opens a listen stream for tool and prompt list changes and the
resources note://public/a and note://secret/b; stays idle for SECS (longer
than the agent's answer timeout: a healthy stream may idle); has the
server touch note://secret/b, then note://public/a, then change a tool
(rug_pull); collects the events until the public note and both lists
have been announced; lists the tools again (the SDK's cache, filled from
the first list's `ttlMs`, is evicted by the event); calls the changed tool; leaves the stream.

Prints one JSON object: the tools before and after (name -> description),
the events seen, what calling the changed tool gave, and the cache hints
of the first list and of a read of the public note as the client got them.
"""

import argparse
import json

import anyio
from mcp.client import Client
from mcp.client.subscriptions import ResourceUpdated, ToolsListChanged

PUBLIC, SECRET = "note://public/a", "note://secret/b"


def describe(event) -> str:
    if isinstance(event, ResourceUpdated):
        return "resource_updated " + event.uri
    return type(event).__name__


def tools(listed) -> dict:
    return {t.name: t.description for t in listed.tools}


async def run(url: str, idle: float) -> dict:
    out: dict = {}
    async with Client(url, mode="2026-07-28") as client:
        first = await client.list_tools()
        out["before"] = tools(first)
        out["hints"] = {"cacheScope": first.cache_scope, "ttlMs": first.ttl_ms}
        read = await client.read_resource(PUBLIC)
        out["read_hints"] = {"cacheScope": read.cache_scope, "ttlMs": read.ttl_ms}
        async with client.listen(
            tools_list_changed=True, prompts_list_changed=True, resource_subscriptions=[PUBLIC, SECRET]
        ) as sub:
            await anyio.sleep(idle)
            for uri in (SECRET, PUBLIC):
                await client.call_tool("touch", {"uri": uri})
            await client.call_tool("rug_pull", {})
            events: list[str] = []
            with anyio.fail_after(15):
                async for event in sub:
                    events.append(describe(event))
                    if {"resource_updated " + PUBLIC, "ToolsListChanged", "PromptsListChanged"} <= set(events):
                        break
            # Anything the agent let through would be here by now: the
            # server wrote the secret note's event first.
            out["events"] = sorted(events)
            out["after"] = tools(await client.list_tools())
            try:
                await client.call_tool("fetch_report", {})
                out["call_after"] = "answered"
            except Exception as e:  # the refusal is what the test reads
                out["call_after"] = str(e)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", required=True)
    ap.add_argument("--idle", type=float, default=0.0)
    args = ap.parse_args()
    print(json.dumps(anyio.run(run, args.url, args.idle), sort_keys=True), flush=True)


if __name__ == "__main__":
    main()
