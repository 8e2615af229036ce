"""What the manual verbs print: the seed's ``[INFO]`` lines, the status and backups tables, JSON."""

from __future__ import annotations

import json
from typing import Any

from chalicelib.listing import Listing
from chalicelib.report import Facts


def as_json(data: Any) -> str:
    return json.dumps(data, indent=2, default=str)


def listing_lines(listing: Listing, now: float) -> list[str]:
    """The backups (and versions) table: the kernel's, the same ``wakeful backups`` prints."""
    return listing.lines(now)


def status_lines(facts: Facts, url: str, local_path: str, agent_pid: int | None) -> list[str]:
    lease, current = facts.lease, facts.current
    lines = [f"lease      {lease.name}: {lease.state} by {lease.holder or '-'} "
             f"(token {lease.token})"]
    if current:
        lines.append(
            f"database   {url}: {current.size} bytes, {current.reason or '?'} upload by "
            f"{current.holder or '?'} at {current.last_modified.isoformat()}"
        )
    else:
        lines.append(f"database   {url}: none yet")
    lines.append(f"backups    {facts.backups}")
    lines.append(f"local      {local_path}: agent {agent_pid or 'not running'}")
    return lines
