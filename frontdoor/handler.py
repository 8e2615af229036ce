"""The front door's Lambda entry point: ``frontdoor.handler.handler`` behind a function URL.

A plain handler, not a Chalice route: Chalice's router has no working greedy catch-all
(``{proxy+}``; aws/chalice#2072), and a function URL hands every method and path to one
function as it is. The front door is built on the first invocation from the same variables
as the control plane (it wakes the backend with the control plane's own code, in-process),
plus ``WAKEFUL_FRONT_DOOR_*``; a bad setting is a clear 500 naming the variable.
"""

from __future__ import annotations

import threading
from typing import Any

from chalicelib.errors import ConfigError
from frontdoor import pages
from frontdoor.door import FrontDoor
from frontdoor.messages import to_result

_built: dict[str, Any] = {}
_lock = threading.Lock()


def reset() -> None:
    """Forget what was built (tests and the local server change the environment)."""
    with _lock:
        _built.clear()


def log() -> Any:
    if "log" not in _built:
        from chalicelib.observability import logger

        _built["log"] = logger("front-door")
    return _built["log"]


def front_door() -> FrontDoor:
    """The front door of this Lambda container, built once from validated settings."""
    with _lock:
        if "door" not in _built:
            _built["door"] = build(log())
        return _built["door"]


def build(logger: Any, env: Any = None, wake: Any = None) -> FrontDoor:
    """A front door wired to the real lease, wake and app, from the environment.

    ``wake`` replaces the in-process wake (the local stack wakes through its control plane).
    """
    from chalicelib.control import ControlPlane
    from chalicelib.settings import ControlPlaneSettings, DatabaseLocation
    from chalicelib.wiring import Edges
    from frontdoor.metrics import LockedMetrics
    from frontdoor.settings import FrontDoorSettings
    from frontdoor.upstream import HttpTransport

    settings = FrontDoorSettings.from_env(env)
    metrics = LockedMetrics("front-door")
    if wake is None:
        plane = ControlPlane.from_settings(ControlPlaneSettings.from_env(env), logger, metrics)
        lease, wake = plane.lease, plane.wake
    else:
        lease = Edges(DatabaseLocation.from_env(env)).table
    return FrontDoor(
        settings=settings,
        lease=lease,
        wake=wake,
        transport=HttpTransport(),
        log=logger,
        metrics=metrics,
    )


def handler(event: Any, context: Any) -> dict[str, Any]:
    try:
        door = front_door()
    except ConfigError as exc:
        log().error("Invalid configuration", extra={"variable": exc.variable, "error": str(exc)})
        return to_result(pages.problem(500, "configuration", str(exc)))
    except Exception:
        log().exception("The front door could not be built")
        return to_result(pages.problem(500, "internal error", "the front door failed to start"))
    return door.handle(event, context)
