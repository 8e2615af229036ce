"""Who this agent is: the ECS task ARN when running on ECS, else host and pid; and which
process of it (a boot nonce), so that a restarted or duplicated agent is another holder."""

from __future__ import annotations

import json
import os
import secrets
import socket
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field

METADATA_VARIABLE = "ECS_CONTAINER_METADATA_URI_V4"


@dataclass(frozen=True)
class Identity:
    holder: str
    task_arn: str | None
    # Drawn once per process: the holder id names the task, this names the agent process.
    boot: str = field(default_factory=lambda: secrets.token_hex(8))

    def __str__(self) -> str:
        return self.holder


def discover(env: Mapping[str, str] | None = None, timeout: float = 2.0) -> Identity:
    """Ask the ECS task metadata endpoint for our task ARN; fall back to host and pid.

    The task ARN is what the control plane knows the holder by, but a task can run an agent
    twice (a restarted container, a duplicated entrypoint): the boot nonce tells them apart.
    """
    env = os.environ if env is None else env
    uri = env.get(METADATA_VARIABLE)
    if uri:
        try:
            with urllib.request.urlopen(f"{uri.rstrip('/')}/task", timeout=timeout) as response:
                arn = json.load(response).get("TaskARN")
            if arn:
                return Identity(holder=str(arn), task_arn=str(arn))
        except (OSError, ValueError):
            pass
    return Identity(holder=f"{socket.gethostname()}:{os.getpid()}", task_arn=None)
