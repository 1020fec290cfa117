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

from mcp.server.mcpserver import Context, MCPServer
from mcp_types import ElicitRequest, ElicitRequestFormParams, InputRequiredResult
from sdk_peer import PIN_SCHEMA, serve


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
    serve(server, "mrtr rounds")


if __name__ == "__main__":
    main()
