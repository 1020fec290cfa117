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

from mcp.server.mcpserver import MCPServer
from mcp_types import ElicitRequest, ElicitRequestFormParams, InputRequiredResult
from sdk_peer import PIN_SCHEMA, serve, tee


server = MCPServer("mrtr")


@server.tool()
def confirm_pin() -> str | InputRequiredResult:
    """Asks the user for a PIN before confirming."""
    ask = ElicitRequest(
        params=ElicitRequestFormParams(message="enter your PIN", requested_schema=PIN_SCHEMA)
    )
    return InputRequiredResult(input_requests={"pin": ask}, request_state="round-1")


def main() -> None:
    serve(server, "mrtr", wrap=tee)


if __name__ == "__main__":
    main()
