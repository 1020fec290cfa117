#!/usr/bin/env python3
"""An MCP client that authorizes itself with the official `mcp` SDK's OAuth
support (`OAuthClientProvider`, streamable HTTP), non-interactively.

    mcp_oauth_client.py --url http://HOST:PORT/mcp --sub alice
                        [--tool echo --args '{"text": "hi"}']
                        [--client-id ID [--client-secret S]] [--mode legacy|auto]
                        [--timeout SECS] [--debug]

On the first 401 the SDK discovers the protected resource metadata, then the
authorization server's metadata, registers a client (RFC 7591) unless
`--client-id` names a pre-registered one, and sends the user to the
authorization URL. Here the "user" is the redirect handler: it POSTs the
oidc-provider-mock authorization form (`sub=<sub>`) to that URL, does not
follow the 302, and hands the `code` and `state` of its Location to the
callback handler. Tokens live in memory only.

On success it prints one JSON line on stdout and exits 0:

    {"tools": [names, sorted], "result": <tools/call result or null>,
     "metadata_url": <resource_metadata of the first 401's WWW-Authenticate, or null>,
     "auth_requests": [[method, url, status], ...],   # every request but those to --url
     "token_claims": <payload of the access token if it is a JWT, else null>}

On any failure: the error on stderr, exit 1.
"""

from __future__ import annotations

import argparse
import base64
import json
import sys
import traceback
import warnings
from typing import Any
from urllib.parse import parse_qs, urlparse

import anyio

# Never contacted: the redirect handler reads the Location header instead.
REDIRECT_URI = "http://127.0.0.1:9/callback"


class MemoryStorage:
    def __init__(self, client_info: Any = None) -> None:
        self.tokens: Any = None
        self.client_info = client_info

    async def get_tokens(self) -> Any:
        return self.tokens

    async def set_tokens(self, tokens: Any) -> None:
        self.tokens = tokens

    async def get_client_info(self) -> Any:
        return self.client_info

    async def set_client_info(self, client_info: Any) -> None:
        self.client_info = client_info


def jwt_claims(token: str) -> Any:
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        return json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except ValueError:
        return None


async def run(args: argparse.Namespace, trace: list[str]) -> dict[str, Any]:
    import httpx2
    from mcp import Client
    from mcp.client.auth import AuthorizationCodeResult, OAuthClientProvider
    from mcp.client.auth.utils import extract_resource_metadata_from_www_auth
    from mcp.client.streamable_http import streamable_http_client
    from mcp.shared.auth import OAuthClientInformationFull, OAuthClientMetadata

    redirect: dict[str, str | None] = {}
    seen: dict[str, Any] = {"metadata_url": None, "auth_requests": []}
    mcp_url = httpx2.URL(args.url)

    async def authorize(authorization_url: str) -> None:
        async with httpx2.AsyncClient(timeout=args.timeout, follow_redirects=False) as http:
            resp = await http.post(authorization_url, data={"sub": args.sub})
        location = resp.headers.get("location")
        if resp.status_code not in (302, 303) or not location:
            raise RuntimeError(f"authorization form: HTTP {resp.status_code}, no redirect: {resp.text[:500]}")
        query = parse_qs(urlparse(location).query)
        if "error" in query:
            raise RuntimeError(f"authorization refused: {location}")
        redirect.update({k: query[k][0] if k in query else None for k in ("code", "state", "iss")})

    async def callback() -> AuthorizationCodeResult:
        if not redirect.get("code"):
            raise RuntimeError("authorization produced no code")
        return AuthorizationCodeResult(code=redirect["code"], state=redirect["state"], iss=redirect["iss"])

    async def on_response(response: httpx2.Response) -> None:
        request = response.request
        if response.status_code == 401 and seen["metadata_url"] is None:
            seen["metadata_url"] = extract_resource_metadata_from_www_auth(response)
        if request.url.copy_with(query=None) != mcp_url:
            seen["auth_requests"].append([request.method, str(request.url), response.status_code])
        elif response.status_code >= 400:
            # The SDK reports a rejected retry only as "an error response".
            challenge = response.headers.get("www-authenticate")
            trace.append(f"{request.method} {request.url}: HTTP {response.status_code}, WWW-Authenticate: {challenge}")

    client_info = None
    if args.client_id:
        client_info = OAuthClientInformationFull(
            client_id=args.client_id,
            client_secret=args.client_secret,
            redirect_uris=[REDIRECT_URI],
            token_endpoint_auth_method="client_secret_post" if args.client_secret else "none",
        )
    storage = MemoryStorage(client_info)
    provider = OAuthClientProvider(
        server_url=args.url,
        client_metadata=OAuthClientMetadata(
            client_name="mcp-interceptor-oauth-client",
            redirect_uris=[REDIRECT_URI],
        ),
        storage=storage,
        redirect_handler=authorize,
        callback_handler=callback,
    )
    http = httpx2.AsyncClient(
        auth=provider,
        timeout=httpx2.Timeout(args.timeout),
        event_hooks={"response": [on_response]},
    )
    out: dict[str, Any] = {"tools": [], "result": None}
    async with http:
        client = Client(streamable_http_client(args.url, http_client=http), mode=args.mode, cache=None)
        async with client:
            listed = await client.list_tools()
            out["tools"] = sorted(t.name for t in listed.tools)
            if args.tool:
                result = await client.call_tool(args.tool, json.loads(args.args))
                out["result"] = result.model_dump(mode="json", by_alias=True, exclude_none=True)
    out.update(seen)
    tokens = storage.tokens
    out["token_claims"] = jwt_claims(tokens.access_token) if tokens else None
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", required=True, help="the MCP endpoint, e.g. http://10.0.0.2:8080/mcp")
    ap.add_argument("--sub", required=True, help="the user to sign in as at the authorization form")
    ap.add_argument("--tool", help="a tool to call after listing")
    ap.add_argument("--args", default="{}", help="its arguments, a JSON object")
    ap.add_argument("--client-id", help="a pre-registered client: skips dynamic registration")
    ap.add_argument("--client-secret", help="its secret (client_secret_post); none means a public client")
    ap.add_argument("--mode", default="legacy", help="Client mode: legacy (initialize handshake) or auto")
    ap.add_argument("--timeout", type=float, default=30.0)
    ap.add_argument("--debug", action="store_true", help="tracebacks and SDK debug logs on stderr")
    args = ap.parse_args()
    if args.debug:
        import logging

        logging.basicConfig(level=logging.DEBUG, stream=sys.stderr)
    else:
        warnings.simplefilter("ignore")

    trace: list[str] = []

    async def bounded() -> dict[str, Any]:
        with anyio.fail_after(args.timeout):
            return await run(args, trace)

    try:
        out = anyio.run(bounded)
    except BaseException as e:  # noqa: BLE001 - task groups wrap errors in groups
        if args.debug:
            traceback.print_exc()
        print(f"mcp_oauth_client: {describe(e)}", file=sys.stderr)
        for line in trace:
            print(f"  {line}", file=sys.stderr)
        return 1
    print(json.dumps(out, sort_keys=True), flush=True)
    return 0


def describe(e: BaseException) -> str:
    """The innermost errors of (nested) exception groups, which is where the cause is."""
    if isinstance(e, BaseExceptionGroup):
        return "; ".join(describe(x) for x in e.exceptions)
    return f"{type(e).__name__}: {e}"


if __name__ == "__main__":
    sys.exit(main())
