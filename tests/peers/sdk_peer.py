"""What every MCP 2026-07-28 test server on the official Python SDK shares:
its command line, its transport settings, and (for tests that compare what
the client got with what the server sent) a tee of its response bodies.

    serve(server, "tasks", wrap=tee)

parses `--host` (default 127.0.0.1), `--port` (default 8080) and any
`--allow-host HOST:PORT`, serves `server` over Streamable HTTP with JSON
answers (stateless unless `stateless=False`), prints `<name> server ready`
once configured, and runs the app inside `wrap` if given (`tee` prints
every response body it sends as `sent <body>`).
"""

import argparse

import uvicorn
from mcp.server.transport_security import TransportSecuritySettings

PIN_SCHEMA = {
    "type": "object",
    "properties": {"pin": {"type": "string", "title": "PIN"}},
    "required": ["pin"],
}


def tee(app):
    """Wraps the ASGI app: prints every response body it sends."""

    async def wrapped(scope, receive, send):
        chunks = []

        async def out(message):
            if message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))
                if not message.get("more_body", False) and any(chunks):
                    print("sent " + b"".join(chunks).decode(), flush=True)
            await send(message)

        await app(scope, receive, out)

    return wrapped


def serve(server, name: str, *, wrap=None, stateless: bool = True) -> None:
    """Runs `server` as the command line says (see the module doc)."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8080)
    ap.add_argument("--allow-host", action="append", default=[], help="another Host to accept")
    args = ap.parse_args()
    # The tests' raw client names the host `mcp.test`.
    hosts = ["127.0.0.1:*", "localhost:*", "mcp.test", *args.allow_host]
    app = server.streamable_http_app(
        json_response=True,
        stateless_http=stateless,
        transport_security=TransportSecuritySettings(allowed_hosts=hosts),
    )
    print(f"{name} server ready", flush=True)
    uvicorn.run(wrap(app) if wrap else app, host=args.host, port=args.port, log_level="warning")
