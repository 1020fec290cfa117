"""An MCP 2026-07-28 server on the official Python SDK that answers tool
calls with task handles (tasks extension, `io.modelcontextprotocol/tasks`,
SEP-2663) and serves `tasks/get`, `tasks/update` and `tasks/cancel`. The
SDK has no tasks runtime; this is its extension API (`Extension`: a
`tools/call` interceptor and `MethodBinding`s), with tasks kept in memory.

    tasks_server.py --host 127.0.0.1 --port 8080

Tools (each call answered with `resultType: "task"`, ttlSeconds 600):
  report()      completes at once: its result holds the secret
                "VAULT-424242" (a test's mask profile must hide it).
  approve()     `input_required` with an elicitation under key "pin"
  approve_ok()  ("enter your PIN") until a `tasks/update` answers it;
                then completed ("approved with <pin>").

Every tasks/* request the server gets is printed as `got <method> <params>`,
and every response body it sends as `sent <body>`, so a test can tell what
reached the server.
"""

import json
import uuid
from datetime import UTC, datetime

from mcp.server.extension import Extension, MethodBinding
from mcp.server.mcpserver import MCPServer
from mcp.shared.exceptions import MCPError
from pydantic import BaseModel, ConfigDict, Field
from sdk_peer import serve, tee

TASKS: dict[str, dict] = {}
ASKING = {"approve", "approve_ok"}

PIN = {
    "method": "elicitation/create",
    "params": {
        "mode": "form",
        "message": "enter your PIN",
        "requestedSchema": {
            "type": "object",
            "properties": {"pin": {"type": "string"}},
            "required": ["pin"],
        },
    },
}


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def text(t: str, error: bool = False) -> dict:
    return {"content": [{"type": "text", "text": t}], "isError": error}


class TaskParams(BaseModel):
    """`tasks/get`, `tasks/update` and `tasks/cancel` params."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)
    task_id: str = Field(alias="taskId")
    request_state: str | None = Field(default=None, alias="requestState")
    input_responses: dict | None = Field(default=None, alias="inputResponses")


def shape(task_id: str) -> dict:
    """The task as `tasks/get` shows it (a DetailedTask)."""
    t = TASKS[task_id]
    out = {
        "taskId": task_id,
        "status": t["status"],
        "createdAt": t["created"],
        "lastUpdatedAt": now(),
        "ttlSeconds": 600,
        "pollIntervalMilliseconds": 100,
        "requestState": f"state-{task_id}",
    }
    if t["status"] == "input_required":
        out["inputRequests"] = {"pin": PIN}
    if t["status"] == "completed":
        out["result"] = t["result"]
    return out


def logged(method: str, params: TaskParams) -> None:
    print(f"got {method} {json.dumps(params.model_dump(by_alias=True))}", flush=True)


async def get(ctx, params: TaskParams):
    logged("tasks/get", params)
    if params.task_id not in TASKS:
        raise MCPError(-32602, "Failed to retrieve task: Task not found")
    return {"resultType": "complete", **shape(params.task_id)}


async def update(ctx, params: TaskParams):
    logged("tasks/update", params)
    t = TASKS.get(params.task_id)
    answer = (params.input_responses or {}).get("pin")
    if t and t["status"] == "input_required" and isinstance(answer, dict):
        pin = (answer.get("content") or {}).get("pin", "")
        t["status"] = "completed"
        t["result"] = text(f"approved with {pin}")
    return {"resultType": "complete"}


async def cancel(ctx, params: TaskParams):
    logged("tasks/cancel", params)
    t = TASKS.get(params.task_id)
    if t and t["status"] in ("working", "input_required"):
        t["status"] = "cancelled"
    return {"resultType": "complete"}


class Tasks(Extension):
    """Task handles for every tool call, and the three tasks methods."""

    identifier = "io.modelcontextprotocol/tasks"

    def methods(self):
        return [
            MethodBinding("tasks/get", TaskParams, get),
            MethodBinding("tasks/update", TaskParams, update),
            MethodBinding("tasks/cancel", TaskParams, cancel),
        ]

    async def intercept_tool_call(self, params, ctx, call_next):
        task_id = str(uuid.uuid4())
        if params.name in ASKING:
            TASKS[task_id] = {"status": "input_required", "created": now()}
        else:
            result = await call_next(ctx)
            if isinstance(result, BaseModel):
                result = result.model_dump(by_alias=True, exclude_none=True)
            TASKS[task_id] = {"status": "completed", "created": now(), "result": result}
        return {
            "resultType": "task",
            "taskId": task_id,
            "status": "working",
            "createdAt": TASKS[task_id]["created"],
            "lastUpdatedAt": now(),
            "ttlSeconds": 600,
            "pollIntervalMilliseconds": 100,
        }


server = MCPServer("tasks", extensions=[Tasks()])


@server.tool()
def report() -> str:
    """A report that carries a vault secret."""
    return "quarterly report; vault key VAULT-424242"


@server.tool()
def approve() -> str:
    """Asks for a PIN (the task does)."""
    return "unused"


@server.tool()
def approve_ok() -> str:
    """Asks for a PIN (the task does)."""
    return "unused"


def main() -> None:
    serve(server, "tasks", wrap=tee)


if __name__ == "__main__":
    main()
