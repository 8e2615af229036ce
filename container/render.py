"""What the manual verbs print: the seed's ``[INFO]`` lines, the status and backups tables, JSON."""

from __future__ import annotations

import json
from typing import Any

from chalicelib.listing import Listing
from chalicelib.report import Facts
from wakeful_replica import summary
from wakeful_replica.restore import VerifyReport


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


def chain_lines(chain: dict[str, Any] | None, now: float) -> list[str]:
    """The chain's rows under the status lines (none for a bucket of the whole-file layout)."""
    if chain is None:
        return []  # a bucket of the whole-file layout: what it always said
    return [f"{name:<10} {value}" for name, value in summary.status_rows(chain, now)]


def verify_lines(report: VerifyReport, url: str) -> list[str]:
    """What ``verify`` says of a chain: every problem, then what it walked."""
    walked = (f"{report.positions} positions of {len(report.generations)} generation(s) "
              f"({', '.join(report.generations)}), {report.bases} base(s)")
    end = f"; end at txid {report.end[1]} of {report.end[0]}" if report.end else ""
    lines = [f"[ERROR] {problem}" for problem in report.problems]
    if report.ok:
        lines.append(f"[INFO] The chain of {url} is whole: {walked}{end}")
    else:
        lines.append(f"[ERROR] The chain of {url} has {len(report.problems)} problem(s): "
                     f"walked {walked}{end}")
    return lines
