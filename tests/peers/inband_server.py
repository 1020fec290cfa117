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

from mcp.server.mcpserver import MCPServer
from sdk_peer import serve

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
    serve(server, "inband", wrap=printing, stateless=False)


if __name__ == "__main__":
    main()
