"""An MCP server on the official Python SDK, serving 2026-07-28 stateless
requests and 2025-11-25 sessions alike, that
prints every request body it receives, so a test can see exactly what
reached the server (e.g. that the agent took out its own MRTR
`requestState` and input response, and only those).

    inband_server.py --host 127.0.0.1 --port 8080

Tools:
  lookup(id)   answers "customer <id>".

Every request body is printed as `got <body>`.
"""

import argparse

import uvicorn
from mcp.server.mcpserver import MCPServer
from mcp.server.transport_security import TransportSecuritySettings

server = MCPServer("inband")


@server.tool()
def lookup(id: str) -> str:
    """Looks a customer up."""
    return f"customer {id}"


def printing(app):
    """Wraps the ASGI app: prints every request body it receives."""

    async def wrapped(scope, receive, send):
        chunks = []

        async def tee():
            message = await receive()
            if message["type"] == "http.request":
                chunks.append(message.get("body", b""))
                if not message.get("more_body", False) and any(chunks):
                    print("got " + b"".join(chunks).decode(), flush=True)
            return message

        await app(scope, tee, send)

    return wrapped


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8080)
    args = ap.parse_args()
    # The tests' raw client names the host `mcp.test`.
    security = TransportSecuritySettings(allowed_hosts=["127.0.0.1:*", "localhost:*", "mcp.test"])
    app = server.streamable_http_app(
        json_response=True, stateless_http=False, transport_security=security
    )
    print("inband server ready", flush=True)
    uvicorn.run(printing(app), host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
