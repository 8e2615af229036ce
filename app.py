"""The wakeful control plane: wake/status/sleep routes, the ECS task-state handler, the reconciler.

Thin on purpose: parse, call ``chalicelib.control``, answer. Importing this module reads only the
auth and CORS choices (Chalice needs them for the API definition); everything else is built on
the first invocation, so a cold start pays for nothing it does not use and a bad setting becomes
a clear error instead of an import failure. Every invocation by Lambda goes through Powertools:
its log lines carry the request id, and a container's first one counts a cold start.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from chalice import Chalice, ConvertToMiddleware, Rate, Response
from chalice.app import Request

from chalicelib import auth
from chalicelib.errors import ConfigError
from chalicelib.settings import AuthSettings

app = Chalice(app_name="wakeful")

ROUTE = auth.route_options(AuthSettings.from_env())

_built: dict[str, Any] = {}


def reset() -> None:
    """Forget what was built, so the next invocation reads the settings again.

    A Lambda container never needs this (its environment does not change); tests and the
    benchmark that change the environment do.
    """
    _built.clear()


def _log() -> Any:
    if "log" not in _built:
        from chalicelib.observability import logger

        _built["log"] = logger("control-plane")
    return _built["log"]


def _auth() -> AuthSettings:
    if "auth" not in _built:
        _built["auth"] = AuthSettings.from_env()
    return _built["auth"]


def control() -> Any:
    """The control plane, built once per Lambda container from validated settings."""
    if "control" not in _built:
        from chalicelib.control import ControlPlane
        from chalicelib.settings import ControlPlaneSettings

        auth.check_config(_auth())
        settings = ControlPlaneSettings.from_env()
        _enable_tracing()
        _built["control"] = ControlPlane.from_settings(settings, _log())
    return _built["control"]


def _enable_tracing() -> None:
    """X-Ray through Powertools' Tracer, only when asked for (it costs ~200 ms of cold start)."""
    from chalicelib.settings import ObservabilitySettings

    if ObservabilitySettings.from_env().tracing:
        from aws_lambda_powertools import Tracer

        _built["tracer"] = Tracer(service="control-plane")


@app.middleware("all")
def _powertools(event: Any, get_response: Callable[[Any], Any]) -> Any:
    """Run each invocation inside Powertools' Lambda wrappers (request id, cold start)."""
    context = event.lambda_context if isinstance(event, Request) else event.context
    if context is None:
        # Called in-process, not by Lambda (the local stack delivers its task events so).
        return get_response(event)
    if "powertools" not in _built:
        from chalicelib.observability import lambda_handler

        _built["powertools"] = ConvertToMiddleware(lambda_handler(_log(), "control-plane"))
    return _built["powertools"](event, get_response)


def _config_error(exc: ConfigError) -> Response:
    _log().error("Invalid configuration", extra={"variable": exc.variable, "error": str(exc)})
    return _json(500, {"error": "configuration", "variable": exc.variable, "message": str(exc)})


def _json(status: int, body: Any, headers: dict[str, str] | None = None) -> Response:
    return Response(
        body=json.dumps(body, default=str),
        status_code=status,
        headers={"Content-Type": "application/json", **(headers or {})},
    )


def _serve(method: str, with_body: bool = False) -> Response:
    request = app.current_request
    try:
        allowed = auth.allows(request.headers, _auth())
    except ConfigError as exc:
        return _config_error(exc)
    if not allowed:
        return _json(403, {"message": "Forbidden"})
    problem = _body_problem() if with_body else None
    if problem:
        return _json(400, {"error": "bad request", "message": problem})
    try:
        reply = getattr(control(), method)()
    except ConfigError as exc:
        return _config_error(exc)
    return _json(reply.status, reply.body, dict(reply.headers))


def _body_problem() -> str | None:
    """Why the request body is unacceptable; an empty body or a JSON object is fine."""
    raw = app.current_request.raw_body
    if not raw or not raw.strip():
        return None
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError):
        # RecursionError: nesting deeper than the parser's stack ("[[[[..."), not a crash.
        return "the body must be empty or a JSON object"
    if not isinstance(body, dict):
        return "the body must be empty or a JSON object"
    return None


@app.route("/wake", methods=["POST"], **ROUTE)
def wake() -> Response:
    return _serve("wake", with_body=True)


@app.route("/status", methods=["GET"], **ROUTE)
def status() -> Response:
    return _serve("status")


@app.route("/sleep", methods=["POST"], **ROUTE)
def sleep() -> Response:
    return _serve("sleep", with_body=True)


@app.on_cw_event(
    {"source": ["aws.ecs"], "detail-type": ["ECS Task State Change"]},
    name="on_task_state_change",
)
def on_task_state_change(event: Any) -> dict[str, str]:
    try:
        plane = control()
    except ConfigError as exc:
        # Raising would only make Lambda retry an event that cannot succeed.
        _log().error("Invalid configuration; event dropped",
                     extra={"variable": exc.variable, "error": str(exc)})
        return {"outcome": "config_error"}
    return {"outcome": plane.handle_event(event.to_dict())}


@app.schedule(Rate(5, unit=Rate.MINUTES), name="reconcile")
def reconcile(event: Any) -> dict[str, Any]:
    try:
        plane = control()
    except ConfigError as exc:
        _log().error("Invalid configuration; reconciler skipped",
                     extra={"variable": exc.variable, "error": str(exc)})
        return {"actions": ["config_error"]}
    return {"actions": plane.reconcile()}
