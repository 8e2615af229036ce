"""The CLI's CloudWatch Logs edge: the events of one log group in a time window.

botocore's errors are translated here (``AwsCallError``, or ``ConfigError`` for a log group
that does not exist), so ``wakeful_cli.logs`` above never sees botocore.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from chalicelib.errors import ConfigError
from wakeful_cli.session import AwsCallError


@dataclass(frozen=True)
class LogEvent:
    group: str
    stream: str
    timestamp_ms: int
    message: str
    event_id: str


class LogGroups:
    def __init__(self, client: Any) -> None:
        self._client = client

    def events(self, group: str, start_ms: int, end_ms: int | None = None) -> list[LogEvent]:
        """Every event of ``group`` from ``start_ms`` (inclusive), oldest first."""
        kwargs: dict[str, Any] = {"logGroupName": group, "startTime": start_ms}
        if end_ms is not None:
            kwargs["endTime"] = end_ms
        found: list[LogEvent] = []
        try:
            for page in self._client.get_paginator("filter_log_events").paginate(**kwargs):
                for item in page.get("events", []):
                    found.append(LogEvent(
                        group=group,
                        stream=str(item.get("logStreamName", "")),
                        timestamp_ms=int(item.get("timestamp", 0)),
                        message=str(item.get("message", "")).rstrip("\n"),
                        event_id=str(item.get("eventId")
                                     or f"{item.get('logStreamName')}:{item.get('timestamp')}"
                                        f":{item.get('message')}"),
                    ))
        except ClientError as exc:
            error = exc.response.get("Error", {})
            if error.get("Code") == "ResourceNotFoundException":
                raise ConfigError("log group", f"{group!r} does not exist "
                                               f"({error.get('Message', '')})") from exc
            raise AwsCallError(f"reading log group {group}",
                               f"{error.get('Code', '?')}: {error.get('Message', '')}") from exc
        except BotoCoreError as exc:
            raise AwsCallError(f"reading log group {group}", str(exc), retryable=True) from exc
        found.sort(key=lambda event: (event.timestamp_ms, event.event_id))
        return found
