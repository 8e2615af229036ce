"""``wakeful logs [--follow] [--since 10m] [--source agent|control-plane|all]``.

The task's log group (the agent and the app it supervises) and the control plane Lambdas' log
groups, merged by time. The agent and the Lambdas log JSON (Powertools): a line shows its
time, its source, its level and message, then the fields an operator greps for.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
from collections.abc import Iterable, Mapping
from typing import Any

from chalicelib.errors import ConfigError
from chalicelib.exits import EXIT_OK
from wakeful_cli.cloudwatch import LogEvent, LogGroups
from wakeful_cli.config import Target
from wakeful_cli.terminal import Io

# Powertools fields every line carries; left out of the one-line view (``--json`` keeps them).
QUIET_FIELDS = frozenset({
    "level", "message", "timestamp", "service", "location", "sampling_rate", "xray_trace_id",
    "cold_start", "function_name", "function_memory_size", "function_arn",
    "function_request_id", "logger",
})

# A follow re-reads this far back on each poll: CloudWatch makes an event searchable a little
# after its timestamp, so a window that only moves forward would skip late ones.
FOLLOW_OVERLAP_MS = 30_000


def groups_for(source: str, target: Target) -> dict[str, str]:
    """Log group -> the source label its lines carry."""
    chosen: dict[str, str] = {}
    if source in ("agent", "all") and target.agent_log_group:
        chosen[target.agent_log_group] = "agent"
    if source in ("control-plane", "all"):
        for group in target.control_plane_log_groups:
            chosen[group] = "control-plane/" + group.rstrip("/").rsplit("/", 1)[-1]
    if not chosen:
        if source == "agent":
            raise ConfigError("WAKEFUL_AGENT_LOG_GROUP",
                              "is required for logs (set it, pass --agent-log-group, or put "
                              "agent_log_group in the profile)")
        raise ConfigError("WAKEFUL_CONTROL_PLANE_LOG_GROUPS" if source == "control-plane"
                          else "WAKEFUL_AGENT_LOG_GROUP",
                          "no log group to read (set WAKEFUL_AGENT_LOG_GROUP / "
                          "WAKEFUL_CONTROL_PLANE_LOG_GROUPS, pass --agent-log-group / "
                          "--control-plane-log-group, or use a profile from terraform output)")
    return chosen


def merged(batches: Iterable[list[LogEvent]]) -> list[LogEvent]:
    """The events of several groups as one timeline, oldest first."""
    events = [event for batch in batches for event in batch]
    events.sort(key=lambda event: (event.timestamp_ms, event.group, event.event_id))
    return events


def line(event: LogEvent, label: str) -> str:
    """``2026-11-28 14:30:00.123  agent  INFO  Database uploaded successfully  task_arn=...``."""
    when = dt.datetime.fromtimestamp(event.timestamp_ms / 1000, dt.UTC)
    stamp = when.strftime("%Y-%m-%d %H:%M:%S.") + f"{when.microsecond // 1000:03d}"
    return f"{stamp}  {label}  {_readable(event.message)}"


def _readable(message: str) -> str:
    try:
        record = json.loads(message)
    except ValueError:
        return message
    if not isinstance(record, Mapping) or "message" not in record:
        return message
    extras = " ".join(f"{key}={_value(value)}" for key, value in record.items()
                      if key not in QUIET_FIELDS)
    head = f"{record.get('level', '-')}  {record['message']}"
    return f"{head}  {extras}" if extras else head


def _value(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, default=str)


def run(args: argparse.Namespace, target: Target, io: Io) -> int:
    chosen = groups_for(args.source, target)
    reader = LogGroups(target.session.client("logs"))
    start = int((io.clock() - args.since) * 1000)
    # Events already printed (id -> time), to skip them when the window is read again; only
    # the overlap's worth is kept, so a follow of days does not grow without bound.
    seen: dict[str, int] = {}
    newest = start

    def show(events: list[LogEvent]) -> None:
        nonlocal newest
        for event in events:
            if event.event_id in seen:
                continue
            seen[event.event_id] = event.timestamp_ms
            newest = max(newest, event.timestamp_ms)
            if args.json:
                io.print(json.dumps({"source": chosen[event.group], "group": event.group,
                                     "stream": event.stream, "timestamp": event.timestamp_ms,
                                     "message": event.message}))
            else:
                io.print(line(event, chosen[event.group]))

    show(merged(reader.events(group, start) for group in chosen))
    if not args.follow:
        return EXIT_OK
    try:
        while True:
            io.sleep(args.interval)
            since = max(start, newest - FOLLOW_OVERLAP_MS)
            for old in [key for key, at in seen.items() if at < since]:
                del seen[old]
            show(merged(reader.events(group, since) for group in chosen))
    except KeyboardInterrupt:
        # Ctrl-C is how a follow ends.
        return EXIT_OK
