"""The front door's own settings, read once from the environment.

The wake needs the control plane's settings too (``chalicelib.settings.ControlPlaneSettings``):
the front door starts tasks exactly as ``POST /wake`` does, so it reads the same variables.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from chalicelib.errors import ConfigError
from chalicelib.settings import seconds as _seconds

# Lambda's limit on the request and on the response payload of a function URL (buffered).
LAMBDA_PAYLOAD_LIMIT = 6 * 1024 * 1024


@dataclass(frozen=True)
class FrontDoorSettings:
    """How long a request may wait, and the limits it must fit in.

    ``hold``: how long a request to a sleeping backend waits for it before the "waking up"
    answer. ``timeout``: the whole request's budget (the Lambda's own remaining time wins
    when it is shorter). The default hold, 20 s, leaves 10 s of a 30 s budget for the app to
    answer, and keeps the whole request under the 30 s origin timeout of CloudFront or API
    Gateway, should one be put in front of the function URL.
    """

    hold: float = 20.0
    timeout: float = 28.0
    keepalive: float = 60.0
    connect_timeout: float = 3.0
    retry_after: int = 5
    max_header_bytes: int = 32 * 1024
    max_body_bytes: int = LAMBDA_PAYLOAD_LIMIT
    max_response_bytes: int = LAMBDA_PAYLOAD_LIMIT

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> FrontDoorSettings:
        env = os.environ if env is None else env
        timeout = _seconds(env, "WAKEFUL_FRONT_DOOR_TIMEOUT", cls.timeout, minimum=1.0)
        # A shorter timeout shortens the default hold, so the app still has time to answer.
        default_hold = cls.hold if cls.hold <= timeout - 8 else timeout / 2
        hold = _seconds(env, "WAKEFUL_FRONT_DOOR_HOLD", default_hold)
        if hold >= timeout:
            raise ConfigError(
                "WAKEFUL_FRONT_DOOR_HOLD",
                f"must be shorter than WAKEFUL_FRONT_DOOR_TIMEOUT ({timeout:g} s), so a held "
                f"request still has time to reach the app; got {hold:g}",
            )
        # Traffic must refresh the agent's idle timer before it runs out: by default three
        # refreshes fit in one idle timeout.
        idle = _seconds(env, "WAKEFUL_IDLE_TIMEOUT", 0.0)
        default_keepalive = min(cls.keepalive, max(1.0, idle / 3)) if idle else cls.keepalive
        keepalive = _seconds(env, "WAKEFUL_FRONT_DOOR_KEEPALIVE", default_keepalive, minimum=1.0)
        retry_after = _seconds(env, "WAKEFUL_FRONT_DOOR_RETRY_AFTER", cls.retry_after, 1.0)
        return cls(
            hold=hold,
            timeout=timeout,
            keepalive=keepalive,
            connect_timeout=_seconds(
                env, "WAKEFUL_FRONT_DOOR_CONNECT_TIMEOUT", cls.connect_timeout, minimum=0.1
            ),
            retry_after=max(1, round(retry_after)),
        )
