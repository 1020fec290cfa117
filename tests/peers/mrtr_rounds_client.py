"""The official Python SDK client calling `unlock` on
mrtr_rounds_server.py in the MCP 2026-07-28 stateless form, inside a fixed
W3C trace context: the SDK injects `traceparent` into each request's
`_meta` and answers the server's `input_required` elicitation by retrying
the call with `inputResponses` and the echoed `requestState` on its own.

    mrtr_rounds_client.py --url URL --vault NAME --pin PIN
                          --trace-id HEX32 --span-id HEX16

Prints one JSON object: {"text": <the tool's text>, "asked": <how many
elicitations the callback answered>}; exits 1 on any error.
"""

import argparse
import json

import anyio
from mcp import Client
from mcp_types import ElicitResult, Implementation
from opentelemetry import context, trace
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags


async def run(args: argparse.Namespace) -> dict:
    asked = []

    async def elicit(_ctx, params):
        asked.append(params.message)
        return ElicitResult(action="accept", content={"pin": args.pin})

    parent = SpanContext(
        trace_id=int(args.trace_id, 16),
        span_id=int(args.span_id, 16),
        is_remote=False,
        trace_flags=TraceFlags(TraceFlags.SAMPLED),
    )
    token = context.attach(trace.set_span_in_context(NonRecordingSpan(parent)))
    try:
        async with Client(
            args.url,
            mode="2026-07-28",
            client_info=Implementation(name="sdk-rounds", version="2.3.0-test"),
            elicitation_callback=elicit,
        ) as client:
            result = await client.call_tool("unlock", {"vault": args.vault})
    finally:
        context.detach(token)
    return {"text": result.content[0].text, "asked": len(asked)}


def main() -> None:
    ap = argparse.ArgumentParser()
    for flag in ("--url", "--vault", "--pin", "--trace-id", "--span-id"):
        ap.add_argument(flag, required=True)
    args = ap.parse_args()
    print(json.dumps(anyio.run(run, args)), flush=True)


if __name__ == "__main__":
    main()
