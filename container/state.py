"""The agent's local state file, beside the database: ``DB_LOCAL_PATH.wakeful.json``.

It tells manual commands run in the same container (``docker exec ... wakeful-agent upload``)
whether an agent is live and which pid to ask for a sync, and it remembers the S3 object the
local file was downloaded from, so a manual upload never overwrites newer data blindly.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Mapping
from typing import Any


def path_for(local_path: str) -> str:
    return local_path + ".wakeful.json"


def read(local_path: str) -> dict[str, Any]:
    try:
        with open(path_for(local_path), encoding="utf-8") as handle:
            data = json.load(handle)
    except (FileNotFoundError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def update(local_path: str, changes: Mapping[str, Any]) -> dict[str, Any]:
    """Merge ``changes`` into the state file atomically (rename over the old one)."""
    data = {**read(local_path), **changes}
    target = path_for(local_path)
    tmp = f"{target}.{os.getpid()}.tmp"
    os.makedirs(os.path.dirname(target) or ".", exist_ok=True)
    with open(tmp, "w", encoding="utf-8") as handle:
        json.dump(data, handle, indent=2, sort_keys=True, default=str)
    os.replace(tmp, target)
    return data


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return _not_zombie(pid)


def _not_zombie(pid: int) -> bool:
    with contextlib.suppress(OSError), open(f"/proc/{pid}/stat", encoding="ascii") as handle:
        return handle.read().rsplit(")", 1)[-1].split()[0] != "Z"
    return True


def process_start(pid: int) -> str | None:
    """When ``pid`` started (clock ticks since boot): with the pid, names one process."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as handle:
            return handle.read().rsplit(")", 1)[-1].split()[19]
    except (OSError, IndexError):
        return None


def live_agent(local_path: str) -> int | None:
    """The pid of a running agent for this database, if there is one.

    A state file left by a killed agent may name a pid the system has since given to another
    process: the recorded start time must match too, so nobody else is ever signalled.
    """
    data = read(local_path)
    pid = data.get("pid")
    live = data.get("state") in ("starting", "running", "stopping") and isinstance(pid, int)
    if not live or pid == os.getpid() or not pid_alive(pid):
        return None
    if data.get("pid_start") != process_start(pid):
        return None
    return pid


def _request_path(local_path: str) -> str:
    return path_for(local_path) + ".sync-request"


def next_sync_request(local_path: str) -> int:
    """Number a new sync request. Kept in a file of its own: only requesters write it."""
    number = sync_requested(local_path) + 1
    target = _request_path(local_path)
    tmp = f"{target}.{os.getpid()}.tmp"
    with open(tmp, "w", encoding="ascii") as handle:
        handle.write(str(number))
    os.replace(tmp, target)
    return number


def sync_requested(local_path: str) -> int:
    """The newest sync request number (0 when none was made)."""
    try:
        with open(_request_path(local_path), encoding="ascii") as handle:
            return int(handle.read().strip() or 0)
    except (FileNotFoundError, ValueError):
        return 0
