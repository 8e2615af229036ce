"""How the HTTP routes are protected, and CORS for a browser front end.

These are read when ``app.py`` is imported, because Chalice writes them into the API definition
(``chalice package``) from the route decorators. An unknown ``WAKEFUL_AUTH`` still protects the
routes with an API key (never open); ``check_config`` then reports it on every request.

``WAKEFUL_AUTH=api_key`` (default): API Gateway requires a key of the stage's usage plan, and
the app itself compares the key with ``WAKEFUL_API_KEY_SHA256`` (the hex SHA-256 of each accepted
key, comma-separated for a rotation), so a request that reaches the function another way
(``chalice local``, a function URL) needs the key too. Only the digest is configured: the key
itself is never in the function's environment.
``WAKEFUL_AUTH=iam``: API Gateway requires a SigV4-signed request (``execute-api:Invoke``).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
from collections.abc import Mapping
from typing import Any

from chalicelib.errors import ConfigError

API_KEY = "api_key"
IAM = "iam"
MODES = (API_KEY, IAM)
API_KEY_HEADER = "x-api-key"
API_KEY_DIGEST = "WAKEFUL_API_KEY_SHA256"

_DIGEST = re.compile(r"[0-9a-f]{64}")

_CORS_HEADERS = [
    "Content-Type", "X-Api-Key", "Authorization", "X-Amz-Date", "X-Amz-Security-Token",
]


def _env(env: Mapping[str, str] | None) -> Mapping[str, str]:
    return os.environ if env is None else env


def mode(env: Mapping[str, str] | None = None) -> str:
    raw = (_env(env).get("WAKEFUL_AUTH") or API_KEY).strip().lower()
    return raw if raw in MODES else API_KEY


def check_config(env: Mapping[str, str] | None = None) -> None:
    """``ConfigError`` naming the variable when auth or CORS settings are invalid."""
    raw = (_env(env).get("WAKEFUL_AUTH") or API_KEY).strip().lower()
    if raw not in MODES:
        raise ConfigError("WAKEFUL_AUTH", f"must be one of {', '.join(MODES)}, got {raw!r}")
    # The key's digest is checked on each request (``allows``), not here: the event handler
    # and the reconciler need no API key, and must keep working without one.
    origin = cors_origin(env)
    if origin and origin != "*" and not origin.startswith(("https://", "http://")):
        raise ConfigError(
            "WAKEFUL_CORS_ORIGIN", f"must be an origin like https://app.example.com, got {origin!r}"
        )


def cors_origin(env: Mapping[str, str] | None = None) -> str | None:
    return (_env(env).get("WAKEFUL_CORS_ORIGIN") or "").strip() or None


def route_options(env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Keyword arguments for ``@app.route``: the auth requirement and CORS."""
    from chalice import CORSConfig, IAMAuthorizer

    options: dict[str, Any] = {}
    if mode(env) == IAM:
        options["authorizer"] = IAMAuthorizer()
    else:
        options["api_key_required"] = True
    origin = cors_origin(env)
    if origin:
        options["cors"] = CORSConfig(
            allow_origin=origin, allow_headers=_CORS_HEADERS, max_age=600
        )
    return options


def accepted_digests(env: Mapping[str, str] | None = None) -> tuple[bytes, ...]:
    """The SHA-256 digests of the accepted API keys; ``ConfigError`` when none is valid."""
    raw = (_env(env).get(API_KEY_DIGEST) or "").strip().lower()
    digests = [part.strip() for part in raw.split(",") if part.strip()]
    if not digests:
        raise ConfigError(
            API_KEY_DIGEST,
            "must be set in api_key mode: the hex SHA-256 of the API key "
            "(printf %s \"$KEY\" | sha256sum)",
        )
    bad = [d for d in digests if not _DIGEST.fullmatch(d)]
    if bad:
        raise ConfigError(API_KEY_DIGEST, f"not a hex SHA-256 digest: {bad[0][:16]!r}...")
    return tuple(bytes.fromhex(d) for d in digests)


def allows(headers: Mapping[str, str], env: Mapping[str, str] | None = None) -> bool:
    """Whether the request may use the routes; ``ConfigError`` when auth is misconfigured.

    In api_key mode the key is compared with each accepted one through their digests, with
    ``hmac.compare_digest``: the time taken says nothing about how much of a guess was right.
    IAM mode is enforced by API Gateway alone (the signature is checked before the app runs).
    """
    if mode(env) != API_KEY:
        return True
    digests = accepted_digests(env)
    given = headers.get(API_KEY_HEADER)
    if not given:
        return False
    offered = hashlib.sha256(given.encode("utf-8", "surrogatepass")).digest()
    # Every digest is compared, so the time does not tell which one (if any) matched.
    matches = [hmac.compare_digest(offered, accepted) for accepted in digests]
    return any(matches)
