"""An MCP 2026-07-28 server on the official Python SDK whose tool asks
the client for input the new way: an `input_required` result (MRTR)
carrying an `elicitation/create` in `inputRequests`, plus `requestState`.

    mrtr_server.py --host 127.0.0.1 --port 8080

Tools:
  confirm_pin()   an InputRequiredResult asking, under key "pin", for a
                  PIN ("enter your PIN"); the retry is not served (the
                  tests check the first round trip only).

Every response body the server sends is printed as `sent <body>`, so a
test can compare what the client got with what the server sent, byte for
byte (the SDK seals `requestState` afresh on each answer).
"""

import argparse

import uvicorn
from mcp.server.mcpserver import MCPServer
from mcp.server.transport_security import TransportSecuritySettings
from mcp_types import ElicitRequest, ElicitRequestFormParams, InputRequiredResult

PIN_SCHEMA = {
    "type": "object",
    "properties": {"pin": {"type": "string", "title": "PIN"}},
    "required": ["pin"],
}

server = MCPServer("mrtr")


@server.tool()
def confirm_pin() -> str | InputRequiredResult:
    """Asks the user for a PIN before confirming."""
    ask = ElicitRequest(
        params=ElicitRequestFormParams(message="enter your PIN", requested_schema=PIN_SCHEMA)
    )
    return InputRequiredResult(input_requests={"pin": ask}, request_state="round-1")


def printing(app):
    """Wraps the ASGI app: prints every response body it sends."""

    async def wrapped(scope, receive, send):
        chunks = []

        async def tee(message):
            if message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))
                if not message.get("more_body", False) and any(chunks):
                    print("sent " + b"".join(chunks).decode(), flush=True)
            await send(message)

        await app(scope, receive, tee)

    return wrapped


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8080)
    args = ap.parse_args()
    # The tests' raw client names the host `mcp.test`.
    security = TransportSecuritySettings(allowed_hosts=["127.0.0.1:*", "localhost:*", "mcp.test"])
    app = server.streamable_http_app(
        json_response=True, stateless_http=True, transport_security=security
    )
    print("mrtr server ready", flush=True)
    uvicorn.run(printing(app), host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
