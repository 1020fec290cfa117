#!/usr/bin/env python3
"""A real OIDC issuer for the e2e tests: `oidc-provider-mock` (authlib, Flask)
plus test-only endpoints to mint hostile tokens and rotate the signing key.

    oidc_issuer.py --host 127.0.0.1 --port P [--issuer URL] [--token-ttl SECS]

Prints `issuer ready ISSUER` on stdout once the socket listens.

The issuer identifier (`iss`, and the base of every URL in the metadata) is
`--issuer` when given, so clients and resource servers that reach the socket
by different addresses agree on it; otherwise, as in the plain mock, the
scheme and Host of each request, and the ready line says http://HOST:P.

Endpoints:

  GET  /.well-known/openid-configuration     OIDC discovery
  GET  /.well-known/oauth-authorization-server   the same document (RFC 8414)
  GET  /jwks                                 only the current key
  GET|POST /oauth2/authorize                 form; POST `sub=<sub>` answers 302
                                             to redirect_uri?code=..&state=..
  POST /oauth2/token                         authorization_code, refresh_token
  POST /oauth2/clients                       dynamic client registration (RFC 7591)
  PUT  /users/<sub>                          JSON object: that user's extra claims
  POST /test/mint                            {"claims", "header", "sign"} -> JWT text
  POST /test/rotate                          new signing key -> its kid as text

Differences from the plain mock, each needed by the agent's tests:
  * access tokens are RFC 9068 JWTs (typ at+jwt, RS256, current kid) with
    iss, sub, aud (the RFC 8707 `resource` of the token or authorization
    request, else the client_id), client_id, scope, iat, exp, jti and the
    user's claims;
  * ID tokens carry the kid of the key that signed them;
  * any requested scope is granted as asked (the resource server decides);
  * PKCE (S256, plain) is checked when the authorization request used it.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import json
import os
import secrets
import sys
import threading
import time
import warnings
from datetime import timedelta
from urllib.parse import urlsplit

# authlib refuses plain http except on loopback; an issuer bound to a
# namespace's veth address is plain http too.
os.environ.setdefault("AUTHLIB_INSECURE_TRANSPORT", "1")

import authlib.deprecate  # noqa: E402

# authlib installs its own "always" filter for these on import; the mock
# uses the deprecated authlib.jose everywhere.
warnings.simplefilter("ignore", authlib.deprecate.AuthlibDeprecationWarning)

import flask  # noqa: E402
import werkzeug.serving  # noqa: E402
from authlib import jose  # noqa: E402
from authlib.oauth2.rfc7636 import CodeChallenge  # noqa: E402
from cryptography.hazmat.primitives import hashes  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import padding  # noqa: E402

import oidc_provider_mock  # noqa: E402
from oidc_provider_mock import _app as mock_app  # noqa: E402
from oidc_provider_mock import _storage as mock_storage  # noqa: E402

ALG = "RS256"
# authlib's defaults leave out public clients ("none"), and for refresh the
# mock's own client_secret_post registrations.
AUTH_METHODS = ["client_secret_basic", "client_secret_post", "none"]

# Per authorization code: what the authorization request said that the mock
# does not keep (PKCE challenge and method, RFC 8707 resource).
_code_extras: dict[str, dict[str, str | None]] = {}
_code_lock = threading.Lock()


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def compact(header: dict, claims: dict, signer) -> str:
    def part(obj: dict) -> str:
        return b64url(json.dumps(obj, separators=(",", ":")).encode())

    signing_input = f"{part(header)}.{part(claims)}"
    return f"{signing_input}.{b64url(signer(signing_input.encode()))}"


def rs256(key: jose.RSAKey):
    private = key.get_private_key()
    return lambda data: private.sign(data, padding.PKCS1v15(), hashes.SHA256())


def current_key() -> jose.RSAKey:
    return flask.g.oidc_provider_mock_storage.jwk


def new_key() -> jose.RSAKey:
    return jose.RSAKey.generate_key(2048, is_private=True)


def kid_of(key: jose.RSAKey) -> str:
    # What the mock's JWKS publishes for a key without one: its RFC 7638
    # thumbprint, so each new key gets a new kid.
    return key.as_dict()["kid"]


def _grant_as_requested(self, scope):
    scopes = scope.split() if isinstance(scope, str) else list(scope or ())
    return " ".join(dict.fromkeys(scopes))


# The mock grants only its five OIDC scopes (and compares a registered
# client's scope string by substring); MCP resource servers ask for their own.
mock_storage.Client.get_allowed_scope = _grant_as_requested


class OpenIDCode(mock_app.OpenIDCode):
    def get_encode_header(self, client):
        return {**super().get_encode_header(client), "kid": kid_of(current_key())}


class Pkce(CodeChallenge):
    def get_authorization_code_challenge(self, authorization_code):
        return _code_extras.get(authorization_code.code, {}).get("challenge")

    def get_authorization_code_challenge_method(self, authorization_code):
        return _code_extras.get(authorization_code.code, {}).get("method")


class AuthorizationCodeGrant(mock_app.AuthorizationCodeGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = AUTH_METHODS

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        Pkce(required=False)(self)

    def save_authorization_code(self, code, request):
        super().save_authorization_code(code, request)
        data = request.payload.data
        with _code_lock:
            _code_extras[code] = {
                "challenge": data.get("code_challenge"),
                "method": data.get("code_challenge_method"),
                "resource": data.get("resource"),
            }


class RefreshTokenGrant(mock_app.RefreshTokenGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = AUTH_METHODS


# The mock's blueprint setup looks these names up when the app registers it.
mock_app.OpenIDCode = OpenIDCode
mock_app.AuthorizationCodeGrant = AuthorizationCodeGrant
mock_app.RefreshTokenGrant = RefreshTokenGrant


def make_access_token_generator(ttl: int):
    def generate(client, grant_type, user, scope):
        form = flask.request.form
        resource = form.get("resource")
        code = form.get("code")
        if code:
            with _code_lock:
                extras = _code_extras.pop(code, {})
            resource = resource or extras.get("resource")
        now = int(time.time())
        claims = dict(user.claims) if user else {}
        claims.update(
            {
                "iss": flask.request.host_url.rstrip("/"),
                "sub": user.sub if user else client.get_client_id(),
                "aud": resource or client.get_client_id(),
                "client_id": client.get_client_id(),
                "scope": scope or "",
                "iat": now,
                "exp": now + ttl,
                "jti": secrets.token_urlsafe(16),
            }
        )
        key = current_key()
        header = {"typ": "at+jwt", "alg": ALG, "kid": kid_of(key)}
        return compact(header, claims, rs256(key))

    return generate


def pin_issuer(wsgi_app, issuer: str):
    parsed = urlsplit(issuer)

    def app(environ, start_response):
        environ["HTTP_HOST"] = parsed.netloc
        environ["wsgi.url_scheme"] = parsed.scheme
        return wsgi_app(environ, start_response)

    return app


def build_app(ttl: int, issuer: str | None) -> flask.Flask:
    app = flask.Flask("oidc_issuer")
    app.config["OAUTH2_ACCESS_TOKEN_GENERATOR"] = make_access_token_generator(ttl)
    oidc_provider_mock.init_app(app, access_token_max_age=timedelta(seconds=ttl))
    app.secret_key = secrets.token_bytes(16)
    if issuer:
        app.wsgi_app = pin_issuer(app.wsgi_app, issuer)

    original_discovery = app.view_functions["oidc-provider-mock.openid_config"]

    def discovery():
        doc = original_discovery().get_json()
        doc.update(
            {
                "code_challenge_methods_supported": ["S256"],
                "token_endpoint_auth_methods_supported": AUTH_METHODS,
            }
        )
        return flask.jsonify(doc)

    app.view_functions["oidc-provider-mock.openid_config"] = discovery
    # Under the blueprint's endpoint prefix so the mock's relative url_for works.
    app.add_url_rule(
        "/.well-known/oauth-authorization-server",
        endpoint="oidc-provider-mock.oauth_authorization_server",
        view_func=discovery,
    )

    @app.post("/test/mint")
    def mint():
        body = flask.request.get_json(force=True)
        claims = body.get("claims", {})
        extra = body.get("header") or {}
        sign = body.get("sign", "key")
        key = current_key()
        if sign == "key":
            header, signer = {"alg": ALG, "typ": "JWT", "kid": kid_of(key)}, rs256(key)
        elif sign == "none":
            header, signer = {"alg": "none", "typ": "JWT"}, lambda _: b""
        elif sign == "hs256-public":
            secret = key.as_pem(is_private=False)
            header = {"alg": "HS256", "typ": "JWT", "kid": kid_of(key)}
            signer = lambda data: hmac.new(secret, data, hashlib.sha256).digest()  # noqa: E731
        elif sign == "other-key":
            other = new_key()
            header, signer = {"alg": ALG, "typ": "JWT", "kid": kid_of(other)}, rs256(other)
        else:
            return f"unknown sign mode {sign!r}\n", 400
        for name, value in extra.items():
            # null removes a field, e.g. {"kid": null} for a kid-less token.
            if value is None:
                header.pop(name, None)
            else:
                header[name] = value
        return compact(header, claims, signer), 200, {"Content-Type": "text/plain"}

    @app.post("/test/rotate")
    def rotate():
        key = new_key()
        flask.g.oidc_provider_mock_storage.jwk = key
        return kid_of(key), 200, {"Content-Type": "text/plain"}

    @app.get("/test/kid")
    def kid():
        return kid_of(current_key()), 200, {"Content-Type": "text/plain"}

    return app


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--issuer", help="fixed issuer URL (scheme://host[:port], no path)")
    ap.add_argument("--token-ttl", type=int, default=3600, help="access and ID token lifetime, seconds")
    args = ap.parse_args()

    if args.issuer and urlsplit(args.issuer).path not in ("", "/"):
        ap.error("--issuer takes no path: the mock serves its endpoints at the root")
    issuer = args.issuer.rstrip("/") if args.issuer else None
    server = werkzeug.serving.make_server(args.host, args.port, build_app(args.token_ttl, issuer), threaded=True)
    host = f"[{args.host}]" if ":" in args.host else args.host
    print(f"issuer ready {issuer or f'http://{host}:{server.server_port}'}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
