"""The official Python SDK client, for tests/tests/mcp2026.rs: one step of
the test per run, against mcp2026_server.py through the agent.

    mcp2026_client.py --url URL --bearer TOKEN STEP [options]

Steps (each prints one JSON object on stdout; a refusal is `{"error": ..}`):
  elicit --vault V --pin P   call unlock(V) at 2026-07-28; the SDK answers
                             the input request with P and retries.
  sample --text T            call summarize(); the sampling callback
                             answers T.
  approve --tool N --go F    call N at 2026-07-28 with URL elicitation;
                             each elicitation is printed as a line
                             `elicit <params>` first; after the first, the
                             answer waits until file F exists.
  task --tool N              call N declaring the tasks extension; the
                             task handle is followed with tasks/get until
                             it completes: {"task_id", "text"}.
  taskget --task-id ID       one tasks/get of ID: {"status"} or the error.
  listen                     list the tools, listen for tool list changes,
                             have the server change fetch_report, wait for
                             the announcement, list again and call it.
  legacy                     a 2025-11-25 client (initialize): list the
                             tools and call echo("old").
"""

import argparse
import json
import os
from typing import Any, Literal

import anyio
import httpx2
from mcp import Client, types
from mcp.client.extension import ClaimContext, ClientExtension, ResultClaim
from mcp.client.streamable_http import streamable_http_client
from mcp.client.subscriptions import ToolsListChanged
from pydantic import ConfigDict, Field, TypeAdapter

TASKS = "io.modelcontextprotocol/tasks"
TASK_IDS: list[str] = []


class TaskIdParams(types.RequestParams):
    """`tasks/get` params."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)
    task_id: str = Field(alias="taskId")


class TasksGet(types.Request[TaskIdParams, Literal["tasks/get"]]):
    """A `tasks/get` (its `Mcp-Name` is the task id)."""

    method: Literal["tasks/get"] = "tasks/get"
    params: TaskIdParams
    name_param = "taskId"


class TaskHandle(types.Result):
    """A `resultType: "task"` answer."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)
    result_type: Literal["task"] = Field(default="task", alias="resultType")
    task_id: str = Field(alias="taskId")


async def task_get(session, task_id: str) -> dict[str, Any]:
    req = TasksGet(params=TaskIdParams(taskId=task_id))
    return await session.send_request(req, TypeAdapter(dict[str, Any]))


async def follow(handle: TaskHandle, ctx: ClaimContext) -> types.CallToolResult:
    """Polls the handle until the task completes."""
    TASK_IDS.append(handle.task_id)
    with anyio.fail_after(15):
        while True:
            got = await task_get(ctx.session, handle.task_id)
            if got.get("status") == "completed":
                return types.CallToolResult.model_validate(got["result"])
            if got.get("status") in ("failed", "cancelled"):
                raise RuntimeError(f"task {got.get('status')}")
            await anyio.sleep(0.1)


class Tasks(ClientExtension):
    """The tasks extension, client side: task handles are followed."""

    identifier = TASKS

    def claims(self):
        return [ResultClaim(result_type="task", model=TaskHandle, resolve=follow)]


def text(result: types.CallToolResult) -> str:
    return result.content[0].text


def client(a: argparse.Namespace, **kw) -> Client:
    http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {a.bearer}"}, timeout=30)
    kw.setdefault("mode", "2026-07-28")
    info = types.Implementation(name="mcp2026-client", version="1")
    return Client(streamable_http_client(a.url, http_client=http), client_info=info, **kw)


async def elicit(a: argparse.Namespace) -> dict:
    async def answer(_ctx, _params):
        return types.ElicitResult(action="accept", content={"pin": a.pin})

    async with client(a, elicitation_callback=answer) as c:
        return {"text": text(await c.call_tool("unlock", {"vault": a.vault}))}


async def sample(a: argparse.Namespace) -> dict:
    async def answer(_ctx, _params):
        return types.CreateMessageResult(
            role="assistant", content=types.TextContent(type="text", text=a.text), model="test-model"
        )

    async with client(a, sampling_callback=answer) as c:
        return {"text": text(await c.call_tool("summarize", {}))}


async def approve(a: argparse.Namespace) -> dict:
    seen = 0

    async def answer(_ctx, params):
        nonlocal seen
        seen += 1
        print("elicit " + json.dumps(params.model_dump(by_alias=True, exclude_none=True)), flush=True)
        if seen > 1:
            while not os.path.exists(a.go):
                await anyio.sleep(0.1)
        return types.ElicitResult(action="accept")

    async with client(a, elicitation_callback=answer) as c:
        return {"text": text(await c.call_tool(a.tool, json.loads(a.args)))}


async def task(a: argparse.Namespace) -> dict:
    async with client(a, extensions=[Tasks()]) as c:
        out = text(await c.call_tool(a.tool, {}))
        return {"task_id": TASK_IDS[-1] if TASK_IDS else None, "text": out}


async def taskget(a: argparse.Namespace) -> dict:
    async with client(a, extensions=[Tasks()]) as c:
        return {"status": (await task_get(c.session, a.task_id)).get("status")}


async def listen(a: argparse.Namespace) -> dict:
    out: dict = {}
    async with client(a) as c:
        out["before"] = {t.name: t.description for t in (await c.list_tools()).tools}
        async with c.listen(tools_list_changed=True) as sub:
            await c.call_tool("rug_pull", {})
            with anyio.fail_after(15):
                async for event in sub:
                    if isinstance(event, ToolsListChanged):
                        out["announced"] = True
                        break
            out["after"] = {t.name: t.description for t in (await c.list_tools()).tools}
            try:
                await c.call_tool("fetch_report", {})
                out["call_after"] = "answered"
            except Exception as e:  # the refusal is what the test reads
                out["call_after"] = str(e)
    return out


async def legacy(a: argparse.Namespace) -> dict:
    async with client(a, mode="legacy") as c:
        names = sorted(t.name for t in (await c.list_tools()).tools)
        return {"tools": names, "text": text(await c.call_tool("echo", {"text": "old"}))}


STEPS = {f.__name__: f for f in (elicit, sample, approve, task, taskget, listen, legacy)}


def describe(e: BaseException) -> str:
    """What went wrong, through anyio's exception groups."""
    if isinstance(e, BaseExceptionGroup):
        return "; ".join(describe(x) for x in e.exceptions)
    return f"{type(e).__name__}: {e}"


async def run(a: argparse.Namespace) -> dict:
    try:
        return await STEPS[a.step](a)
    except Exception as e:  # the test reads what went wrong
        return {"error": describe(e)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", required=True)
    ap.add_argument("--bearer", required=True)
    ap.add_argument("step", choices=sorted(STEPS))
    for flag in ("--vault", "--pin", "--text", "--tool", "--go", "--task-id"):
        ap.add_argument(flag)
    ap.add_argument("--args", default="{}")
    print(json.dumps(anyio.run(run, ap.parse_args()), sort_keys=True), flush=True)


if __name__ == "__main__":
    main()
