"""How the HTTP routes are protected, and CORS for a browser front end.

The settings (``settings.AuthSettings``) are read when ``app.py`` is imported, because Chalice
writes them into the API definition (``chalice package``) from the route decorators. An unknown
``WAKEFUL_AUTH`` still protects the routes with an API key (never open); ``check_config`` then
reports it on every request.

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
from collections.abc import Mapping
from typing import Any

from chalicelib.settings import API_KEY, API_KEY_DIGEST, AUTH_MODES, IAM, AuthSettings

MODES = AUTH_MODES
API_KEY_HEADER = "x-api-key"

_CORS_HEADERS = [
    "Content-Type", "X-Api-Key", "Authorization", "X-Amz-Date", "X-Amz-Security-Token",
]

__all__ = [
    "API_KEY", "API_KEY_DIGEST", "API_KEY_HEADER", "IAM", "MODES", "accepted_digests", "allows",
    "check_config", "cors_origin", "mode", "route_options",
]


def _config(config: AuthSettings | None) -> AuthSettings:
    return AuthSettings.from_env() if config is None else config


def mode(config: AuthSettings | None = None) -> str:
    return _config(config).mode


def check_config(config: AuthSettings | None = None) -> None:
    """``ConfigError`` naming the variable when auth or CORS settings are invalid."""
    _config(config).check()


def cors_origin(config: AuthSettings | None = None) -> str | None:
    return _config(config).cors_origin


def route_options(config: AuthSettings | None = None) -> dict[str, Any]:
    """Keyword arguments for ``@app.route``: the auth requirement and CORS."""
    from chalice import CORSConfig, IAMAuthorizer

    config = _config(config)
    options: dict[str, Any] = {}
    if config.mode == IAM:
        options["authorizer"] = IAMAuthorizer()
    else:
        options["api_key_required"] = True
    if config.cors_origin:
        options["cors"] = CORSConfig(
            allow_origin=config.cors_origin, allow_headers=_CORS_HEADERS, max_age=600
        )
    return options


def accepted_digests(config: AuthSettings | None = None) -> tuple[bytes, ...]:
    """The SHA-256 digests of the accepted API keys; ``ConfigError`` when none is valid."""
    return _config(config).key_digests()


def allows(headers: Mapping[str, str], config: AuthSettings | None = None) -> bool:
    """Whether the request may use the routes; ``ConfigError`` when auth is misconfigured.

    In api_key mode the key is compared with each accepted one through their digests, with
    ``hmac.compare_digest``: the time taken says nothing about how much of a guess was right.
    IAM mode is enforced by API Gateway alone (the signature is checked before the app runs).
    """
    config = _config(config)
    if config.mode != API_KEY:
        return True
    digests = config.key_digests()
    given = headers.get(API_KEY_HEADER)
    if not given:
        return False
    offered = hashlib.sha256(given.encode("utf-8", "surrogatepass")).digest()
    # Every digest is compared, so the time does not tell which one (if any) matched.
    matches = [hmac.compare_digest(offered, accepted) for accepted in digests]
    return any(matches)
