"""The task ledger: the newest ECS event version handled for each task, in the lease table.

EventBridge delivers at least once and in no particular order. ECS numbers each task's changes
(``detail.version``), so an event no newer than the one already handled is a duplicate or a
late arrival and is dropped. One small item per task, beside the lease item:
``pk = "<lease name>#task#<task id>"``. Items carry ``purge_at`` (epoch seconds) so a DynamoDB
TTL on that attribute can clean them up; the lease item never has it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from chalicelib import aws
from chalicelib.errors import LeaseUnavailable

# "Nothing was recorded for this task yet, or only older versions."
COND_NEWER = "attribute_not_exists(pk) OR version < :version"

KEEP_SECONDS = 30 * 24 * 3600


class TaskLedger:
    def __init__(
        self,
        table: str,
        lease_name: str,
        client: Any | None = None,
        clock: Callable[[], float] = time.time,
        region: str | None = None,
        endpoint_url: str | None = None,
    ) -> None:
        self.table = table
        self.lease_name = lease_name
        self._client = client or aws.client("dynamodb", region, endpoint_url)
        self._clock = clock

    def key(self, task_arn: str) -> str:
        return f"{self.lease_name}#task#{task_arn.rsplit('/', 1)[-1]}"

    def seen(self, task_arn: str) -> int | None:
        """The newest version handled for the task, ``None`` if none was."""
        try:
            response = self._client.get_item(
                TableName=self.table,
                Key={"pk": {"S": self.key(task_arn)}},
                ConsistentRead=True,
                ProjectionExpression="version",
            )
        except (aws.ClientError, *aws.TRANSPORT_ERRORS) as exc:
            raise self._unavailable("read", exc) from exc
        item = response.get("Item") or {}
        raw = item.get("version", {}).get("N")
        return int(raw) if raw is not None else None

    def record(self, task_arn: str, version: int, status: str, outcome: str) -> bool:
        """Mark ``version`` handled; ``False`` when a newer one was recorded meanwhile."""
        now = self._clock()
        try:
            self._client.put_item(
                TableName=self.table,
                Item={
                    "pk": {"S": self.key(task_arn)},
                    "task_arn": {"S": task_arn},
                    "version": {"N": str(version)},
                    "last_status": {"S": status},
                    "outcome": {"S": outcome},
                    "updated_at": {"N": f"{now:.3f}"},
                    "purge_at": {"N": str(int(now + KEEP_SECONDS))},
                },
                ConditionExpression=COND_NEWER,
                ExpressionAttributeValues={":version": {"N": str(version)}},
            )
        except aws.ClientError as exc:
            if aws.error_code(exc) == "ConditionalCheckFailedException":
                return False
            raise self._unavailable("write", exc) from exc
        except aws.TRANSPORT_ERRORS as exc:
            raise self._unavailable("write", exc) from exc
        return True

    def _unavailable(self, what: str, exc: BaseException) -> LeaseUnavailable:
        error = LeaseUnavailable(f"task ledger {what} on table {self.table!r} failed: {exc}")
        error.retryable = aws.is_transient(exc)
        return error
