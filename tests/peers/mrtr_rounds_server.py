"""An MCP 2026-07-28 server on the official Python SDK whose tool takes
two round trips (MRTR): the first call gets an `input_required` result
asking for a PIN by elicitation (with a sealed `requestState`); the retry
carrying `inputResponses` is served.

    mrtr_rounds_server.py --host 127.0.0.1 --port 8080

Tools:
  unlock(vault)   round 1: input_required, key "pin"; the retry: prints
                  `got pin <value> for <vault>` (so a test sees what the
                  server received) and answers "unlocked <vault>".
"""

import argparse

import uvicorn
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.transport_security import TransportSecuritySettings
from mcp_types import ElicitRequest, ElicitRequestFormParams, InputRequiredResult

PIN_SCHEMA = {
    "type": "object",
    "properties": {"pin": {"type": "string", "title": "PIN"}},
    "required": ["pin"],
}

server = MCPServer("mrtr-rounds")


@server.tool()
def unlock(vault: str, ctx: Context) -> str | InputRequiredResult:
    """Unlocks a vault once the user gave its PIN."""
    answers = ctx.input_responses or {}
    pin = answers.get("pin")
    if pin is None:
        ask = ElicitRequest(
            params=ElicitRequestFormParams(message="enter your PIN", requested_schema=PIN_SCHEMA)
        )
        return InputRequiredResult(input_requests={"pin": ask}, request_state=f"vault={vault}")
    content = getattr(pin, "content", None) or {}
    print(f"got pin {content.get('pin')} for {vault} state {ctx.request_state}", flush=True)
    return f"unlocked {vault}"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8080)
    args = ap.parse_args()
    security = TransportSecuritySettings(allowed_hosts=["127.0.0.1:*", "localhost:*", "mcp.test"])
    app = server.streamable_http_app(
        json_response=True, stateless_http=True, transport_security=security
    )
    print("mrtr rounds server ready", flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
