"""An MCP 2026-07-28 server on the official Python SDK whose tools declare
`x-mcp-header` arguments (SEP-2243), for tests/tests/boundary_params.rs.

    params_server.py --host 127.0.0.1 --port 8080

Tools:
  route(region, query, count=1, dry=None)
                   "routed <query> to <region> x<count>"; `region` is
                   mirrored as Mcp-Param-Region, `count` as Mcp-Param-Count,
                   `dry` as Mcp-Param-Dry.
  twin(a, b)       declares Mcp-Param-Region on `a` and Mcp-Param-region on
                   `b`: invalid (names are case-insensitive), so clients must
                   leave it out of tools/list. The SDK refuses to register
                   such a tool, so the declarations are set after.

Every request the server receives is printed as `recv <json>` (its
Mcp-Param-* headers and its body), so a test can tell what reached it.
"""

import json
from typing import Annotated

from mcp.server.mcpserver import MCPServer
from pydantic import Field

from sdk_peer import serve


def mirrored(name: str):
    """A parameter mirrored into the `Mcp-Param-<name>` header."""
    return Field(json_schema_extra={"x-mcp-header": name})


server = MCPServer("params")


@server.tool()
def route(
    region: Annotated[str, mirrored("Region")],
    query: str,
    count: Annotated[int, mirrored("Count")] = 1,
    dry: Annotated[bool, mirrored("Dry")] = False,
) -> str:
    """Runs `query` in `region`."""
    return f"routed {query} to {region} x{count}" + (" (dry)" if dry else "")


@server.tool()
def twin(a: str, b: str) -> str:
    """Two arguments that claim one header."""
    return f"twin {a} {b}"


props = server._tool_manager.get_tool("twin").parameters["properties"]
props["a"]["x-mcp-header"] = "Region"
props["b"]["x-mcp-header"] = "region"


def log_requests(app):
    """Wraps the ASGI app: prints each request's Mcp-Param-* headers and body."""

    async def wrapped(scope, receive, send):
        if scope["type"] != "http":
            return await app(scope, receive, send)
        params = [
            [k.decode("latin-1"), v.decode("latin-1")]
            for k, v in scope["headers"]
            if k.lower().startswith(b"mcp-param-")
        ]
        chunks = []

        async def inbound():
            message = await receive()
            if message["type"] == "http.request":
                chunks.append(message.get("body", b""))
                if not message.get("more_body", False):
                    body = b"".join(chunks).decode("utf-8", "replace")
                    print("recv " + json.dumps({"params": params, "body": body}), flush=True)
            return message

        await app(scope, inbound, send)

    return wrapped


def main() -> None:
    serve(server, "params", wrap=log_requests)


if __name__ == "__main__":
    main()
