"""How the HTTP routes are protected, and CORS for a browser front end.

These are read when ``app.py`` is imported, because Chalice writes them into the API definition
(``chalice package``) from the route decorators. An unknown ``WAKEFUL_AUTH`` still protects the
routes with an API key (never open); ``check_config`` then reports it on every request.

``WAKEFUL_AUTH=api_key`` (default): API Gateway requires a key of the stage's usage plan.
``WAKEFUL_AUTH=iam``: API Gateway requires a SigV4-signed request (``execute-api:Invoke``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from chalicelib.errors import ConfigError

API_KEY = "api_key"
IAM = "iam"
MODES = (API_KEY, IAM)
API_KEY_HEADER = "x-api-key"

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


def missing_api_key(headers: Mapping[str, str], env: Mapping[str, str] | None = None) -> bool:
    """A request that reached the app without any API key while keys are required.

    API Gateway checks the key's value before the app runs and passes the header on; the app
    refuses requests that carry none, so the function reached another way (``chalice local``,
    a function URL, a misconfigured stage) is not open.
    """
    return mode(env) == API_KEY and not headers.get(API_KEY_HEADER)
