#!/usr/bin/env python3
"""A scripted MCP client built on the official `mcp` Python SDK.

The e2e tests run it with `<repo>/.venv/bin/python` (installed by
`cargo xtask setup`) against `@modelcontextprotocol/server-everything`, once
directly and once through the interceptor, and compare the two outputs.

    mcp_client.py --url URL --transport {streamable-http,sse}
                  [--scenario all-tools|progress|sampling|echo] [--timeout SECS]

It prints exactly one JSON object on stdout (keys sorted, 2-space indent) and
exits 0; on any error it prints the error on stderr and exits 1. Every
argument it sends and every answer it gives the server (sampling,
elicitation, roots) is fixed, so two runs against the same server print the
same bytes except at the paths listed under "volatile", which the server
fills with a clock reading or a session id.
"""

from __future__ import annotations

import argparse
import json
import sys
import traceback
import warnings
from typing import Any

import anyio

SCENARIOS = ("all-tools", "progress", "sampling", "echo")
TRANSPORTS = ("streamable-http", "sse")

ECHO_MESSAGE = "hello from mcp-interceptor"
SAMPLING_MODEL = "mcp-interceptor-deterministic"
ROOTS = [{"uri": "file:///tmp/mcp-interceptor-peer", "name": "mcp-interceptor peer root"}]
# 57 bytes of text, small enough to inline, big enough to gzip.
GZIP_DATA = "data:text/plain;base64,bWNwLWludGVyY2VwdG9yIHBlZXIgZGF0YTogdGhlIHF1aWNrIGJyb3duIGZveCBqdW1wcyBvdmVyLg=="

# Alternative names: the tool was renamed between server-everything releases.
LONG_RUNNING = ("trigger-long-running-operation", "longRunningOperation")
SAMPLING = ("trigger-sampling-request", "sampleLLM")
ECHO = ("echo",)

# Arguments per tool, by property name; properties not named here get a value
# derived from their schema (see `value_for`).
TOOL_ARGS: dict[str, dict[str, Any]] = {
    "echo": {"message": ECHO_MESSAGE},
    "get-sum": {"a": 2, "b": 3},
    "add": {"a": 2, "b": 3},
    "get-annotated-message": {"messageType": "success", "includeImage": True},
    "annotatedMessage": {"messageType": "success", "includeImage": True},
    "get-resource-links": {"count": 3},
    "get-resource-reference": {"resourceType": "Text", "resourceId": 1},
    "gzip-file-as-resource": {"name": "peer.txt.gz", "data": GZIP_DATA, "outputType": "resource"},
    "trigger-long-running-operation": {"duration": 1, "steps": 2},
    "longRunningOperation": {"duration": 1, "steps": 2},
    "trigger-sampling-request": {"prompt": "What is 2+2?", "maxTokens": 16},
    "sampleLLM": {"prompt": "What is 2+2?", "maxTokens": 16},
    "trigger-url-elicitation": {
        "url": "https://example.com/mcp-interceptor/consent",
        "message": "Open the consent page.",
        "elicitationId": "mcp-interceptor-elicitation-1",
        "errorPath": False,
    },
    "simulate-research-query": {"topic": "transparent MCP proxies", "ambiguous": False},
}

# Output paths (JSON pointers into the printed object, RFC 6901: "/" in a key
# is "~1") that differ between two runs against the same server, with the
# reason. Printed under "volatile" when the run produced them.
VOLATILE: dict[str, list[tuple[str, str]]] = {
    "get-resource-reference": [("/content/1/resource/text", "creation time (server clock, 1 s resolution)")],
    "toggle-simulated-logging": [("/content/0/text", "session id")],
    "toggle-subscriber-updates": [("/content/0/text", "session id")],
    "simulate-research-query": [("/_meta/io.modelcontextprotocol~1related-task/taskId", "task id")],
}
VOLATILE_PROMPTS: dict[str, list[tuple[str, str]]] = {
    "resource-prompt": [("/messages/1/content/resource/text", "creation time (server clock, 1 s resolution)")],
}


def dump(model: Any) -> Any:
    return model.model_dump(mode="json", by_alias=True, exclude_none=True)


def value_for(prop: str, schema: dict[str, Any]) -> Any:
    """A fixed value that satisfies `schema` (the subset MCP tools use)."""
    if "default" in schema:
        return schema["default"]
    if "const" in schema:
        return schema["const"]
    if schema.get("enum"):
        return schema["enum"][0]
    for key in ("oneOf", "anyOf"):
        for option in schema.get(key, []):
            if "const" in option:
                return option["const"]
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "string":
        fmt = schema.get("format")
        if fmt in ("uri", "url"):
            return "https://example.com/mcp-interceptor"
        if fmt == "email":
            return "peer@example.com"
        if fmt == "date":
            return "2000-01-01"
        if fmt == "date-time":
            return "2000-01-01T00:00:00Z"
        return f"mcp-interceptor {prop}"
    if kind == "integer":
        return max(1, int(schema.get("minimum", 1)))
    if kind == "number":
        return max(1, schema.get("minimum", 1))
    if kind == "boolean":
        return True
    if kind == "array":
        items = schema.get("items", {})
        return [value_for(prop, items)] if schema.get("minItems", 0) > 0 else []
    if kind == "object":
        return args_for_schema(prop, schema)
    return None


def args_for_schema(name: str, schema: dict[str, Any]) -> dict[str, Any]:
    fixed = TOOL_ARGS.get(name, {})
    return {
        prop: fixed[prop] if prop in fixed else value_for(prop, sub)
        for prop, sub in sorted(schema.get("properties", {}).items())
    }


class Recorder:
    """What the client saw: server-initiated requests and progress."""

    def __init__(self) -> None:
        self.progress: list[dict[str, Any]] = []
        self.sampling_requests: list[Any] = []
        self.elicitation_requests: list[Any] = []

    async def sampling(self, _context: Any, params: Any) -> Any:
        from mcp import types

        self.sampling_requests.append(dump(params))
        prompt = " | ".join(
            m.content.text for m in params.messages if getattr(m.content, "type", None) == "text"
        )
        return types.CreateMessageResult(
            role="assistant",
            content=types.TextContent(type="text", text=f"sampled: {prompt}"),
            model=SAMPLING_MODEL,
            stop_reason="endTurn",
        )

    async def elicitation(self, _context: Any, params: Any) -> Any:
        from mcp import types

        self.elicitation_requests.append(dump(params))
        if getattr(params, "mode", "form") == "url":
            return types.ElicitResult(action="accept")
        schema = params.requested_schema or {}
        content = {
            prop: value_for(prop, sub) for prop, sub in sorted(schema.get("properties", {}).items())
        }
        return types.ElicitResult(action="accept", content=content)

    async def roots(self, _context: Any) -> Any:
        from mcp import types

        return types.ListRootsResult(roots=[types.Root(**r) for r in ROOTS])

    def progress_for(self, tool: str):
        async def callback(progress: float, total: float | None, message: str | None) -> None:
            entry: dict[str, Any] = {"tool": tool, "progress": progress}
            if total is not None:
                entry["total"] = total
            if message is not None:
                entry["message"] = message
            self.progress.append(entry)

        return callback


def find_tool(tools: dict[str, Any], names: tuple[str, ...]) -> str:
    for name in names:
        if name in tools:
            return name
    raise RuntimeError(f"server offers none of the tools {list(names)}; it has {sorted(tools)}")


async def call_tool(client: Any, recorder: Recorder, tool: Any) -> Any:
    from mcp import types

    args = args_for_schema(tool.name, tool.input_schema)
    task_support = tool.execution.task_support if tool.execution else None
    if task_support == "required":
        return await call_tool_as_task(client, tool.name, args)
    result = await client.call_tool(tool.name, args, progress_callback=recorder.progress_for(tool.name))
    assert isinstance(result, types.CallToolResult)
    return result


async def call_tool_as_task(client: Any, name: str, args: dict[str, Any]) -> Any:
    """tools/call with task augmentation (SEP-1686), tasks/get until done, tasks/result.

    mcp 2.3.0 has no public client API for this: `ClientSession.send_request`
    validates a tools/call answer as CallToolResult, so a CreateTaskResult is
    rejected. This goes one level down, to the session's dispatcher, with the
    same stamp (Mcp-Protocol-Version header) send_request would add.
    """
    from mcp import types

    session = client.session
    dispatcher = getattr(session, "_dispatcher", None)
    stamp = getattr(session, "_stamp", None)
    if dispatcher is None or stamp is None:
        raise SkipTool("task-augmented tools/call needs ClientSession._dispatcher/_stamp (mcp 2.3.0 internals)")

    async def request(method: str, params: dict[str, Any]) -> dict[str, Any]:
        data: dict[str, Any] = {"method": method, "params": params}
        opts: dict[str, Any] = {}
        stamp(data, opts)
        return await dispatcher.send_raw_request(method, data["params"], opts)

    created = types.CreateTaskResult.model_validate(
        await request("tools/call", {"name": name, "arguments": args, "task": {"ttl": 60_000}}), by_name=False
    )
    task_id = created.task.task_id
    status = created.task.status
    while status in ("working", "input_required"):
        await anyio.sleep(0.25)
        got = types.GetTaskResult.model_validate(await request("tasks/get", {"taskId": task_id}), by_name=False)
        status = got.status
    if status != "completed":
        raise RuntimeError(f"task for tool {name} ended {status}")
    payload = await request("tasks/result", {"taskId": task_id})
    return types.CallToolResult.model_validate(payload, by_name=False)


class SkipTool(Exception):
    """This tool cannot be called deterministically; the message says why."""


async def resources_and_prompts(client: Any, out: dict[str, Any]) -> None:
    caps = client.server_capabilities
    volatile: list[dict[str, str]] = out["volatile"]
    if caps.resources is not None:
        listed = await client.list_resources()
        templates = await client.list_resource_templates()
        section: dict[str, Any] = {"list": dump(listed), "templates": dump(templates)}
        if listed.resources:
            uri = str(listed.resources[0].uri)
            section["read"] = {"uri": uri, "result": dump(await client.read_resource(uri))}
        out["resources"] = section
    if caps.prompts is not None:
        listed = await client.list_prompts()
        got: dict[str, Any] = {}
        for prompt in listed.prompts:
            args = {
                a.name: str(value_for(a.name, {"type": "string"}))
                for a in prompt.arguments or []
                if a.required
            }
            # Arguments with completions / fixed vocabularies.
            if prompt.name == "resource-prompt":
                args = {"resourceType": "Text", "resourceId": "1"}
            elif prompt.name == "completable-prompt":
                args = {"department": "Engineering", "name": "Alice"}
            got[prompt.name] = {"arguments": args, "result": dump(await client.get_prompt(prompt.name, args))}
            for path, why in VOLATILE_PROMPTS.get(prompt.name, []):
                volatile.append({"path": f"/prompts/get/{prompt.name}/result{path}", "reason": why})
        section = {"list": dump(listed), "get": got}
        if caps.completions is not None and "completable-prompt" in got:
            from mcp import types

            completion = await client.complete(
                types.PromptReference(type="ref/prompt", name="completable-prompt"),
                {"name": "department", "value": "E"},
            )
            section["complete"] = dump(completion)
        out["prompts"] = section


async def run(args: argparse.Namespace) -> dict[str, Any]:
    from mcp import Client, types
    from mcp.client.sse import sse_client

    recorder = Recorder()
    server: Any = args.url if args.transport == "streamable-http" else sse_client(args.url)
    client = Client(
        server,
        mode="legacy",  # the initialize handshake: what server-everything speaks
        cache=None,  # every request goes on the wire
        sampling_callback=recorder.sampling,
        elicitation_callback=recorder.elicitation,
        list_roots_callback=recorder.roots,
        client_info=types.Implementation(name="mcp-interceptor-peer-client", version="1"),
    )
    out: dict[str, Any] = {
        "transport": args.transport,
        "scenario": args.scenario,
        "results": {},
        "progress": [],
        "sampling_requests": [],
        "elicitation_requests": [],
        "resources": None,  # all-tools only
        "prompts": None,  # all-tools only
        "skipped": {},
        "volatile": [],
    }
    async with client:
        info = client.server_info
        out["server"] = {"name": info.name, "version": info.version} if info else None
        out["protocol_version"] = client.protocol_version
        listed = await client.list_tools()
        tools = {t.name: t for t in listed.tools}
        out["tools"] = sorted(tools)
        results = out["results"]

        if args.scenario == "echo":
            name = find_tool(tools, ECHO)
            results[name] = dump(await client.call_tool(name, {"message": ECHO_MESSAGE}))
        elif args.scenario == "progress":
            name = find_tool(tools, LONG_RUNNING)
            result = await client.call_tool(
                name, {"duration": 2, "steps": 4}, progress_callback=recorder.progress_for(name)
            )
            results[name] = dump(result)
        elif args.scenario == "sampling":
            name = find_tool(tools, SAMPLING)
            results[name] = dump(await client.call_tool(name, args_for_schema(name, tools[name].input_schema)))
        else:
            await resources_and_prompts(client, out)
            for name in sorted(tools):
                try:
                    results[name] = dump(await call_tool(client, recorder, tools[name]))
                except SkipTool as e:
                    out["skipped"][name] = str(e)
                    continue
                for path, why in VOLATILE.get(name, []):
                    out["volatile"].append({"path": f"/results/{name}{path}", "reason": why})

    out["progress"] = recorder.progress
    out["sampling_requests"] = recorder.sampling_requests
    out["elicitation_requests"] = recorder.elicitation_requests
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", required=True, help="http://HOST:PORT/mcp or http://HOST:PORT/sse")
    parser.add_argument("--transport", required=True, choices=TRANSPORTS)
    parser.add_argument("--scenario", default="all-tools", choices=SCENARIOS)
    parser.add_argument("--timeout", type=float, default=30.0, help="bound on the whole run (s)")
    parser.add_argument("--debug", action="store_true", help="tracebacks on error")
    args = parser.parse_args()
    # The SDK flags handshake-era features (roots, sampling) as deprecated
    # for 2026-07-28; this client speaks the handshake era on purpose.
    warnings.simplefilter("ignore")

    async def bounded() -> dict[str, Any]:
        with anyio.fail_after(args.timeout):
            return await run(args)

    try:
        out = anyio.run(bounded)
    except BaseException as e:  # noqa: BLE001 - anything is a failure
        if isinstance(e, KeyboardInterrupt):
            raise
        if args.debug:
            traceback.print_exc()
        print(f"mcp_client.py: {describe(e)}", file=sys.stderr)
        return 1
    sys.stdout.write(json.dumps(out, indent=2, sort_keys=True, ensure_ascii=False) + "\n")
    return 0


def describe(e: BaseException) -> str:
    """One line per leaf exception (task groups wrap them)."""
    if isinstance(e, TimeoutError):
        return "timed out"
    if isinstance(e, BaseExceptionGroup):
        return "; ".join(describe(x) for x in e.exceptions)
    return f"{type(e).__name__}: {e}" if str(e) else type(e).__name__


if __name__ == "__main__":
    sys.exit(main())
