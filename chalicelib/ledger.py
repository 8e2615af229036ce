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
from dataclasses import dataclass
from typing import Any

from chalicelib import aws
from chalicelib.errors import LeaseUnavailable

# "Nothing was recorded for this task yet, or only older versions."
COND_NEWER = "attribute_not_exists(pk) OR version < :version"

KEEP_SECONDS = 30 * 24 * 3600


@dataclass(frozen=True)
class LedgerEntry:
    version: int | None = None
    held_token: int | None = None


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
        return self.entry(task_arn).version

    def entry(self, task_arn: str) -> LedgerEntry:
        """What is known of the task: the newest event version handled, and whether its agent
        ever held the lease (the agent marks that itself when it acquires)."""
        try:
            response = self._client.get_item(
                TableName=self.table,
                Key={"pk": {"S": self.key(task_arn)}},
                ConsistentRead=True,
                ProjectionExpression="version, held_token",
            )
        except (aws.ClientError, *aws.TRANSPORT_ERRORS) as exc:
            raise self._unavailable("read", exc) from exc
        item = response.get("Item") or {}
        version = item.get("version", {}).get("N")
        held = item.get("held_token", {}).get("N")
        return LedgerEntry(
            version=int(version) if version is not None else None,
            held_token=int(held) if held is not None else None,
        )

    def mark_held(self, task_arn: str, token: int) -> None:
        """Called by the agent on acquiring: proof, kept apart from the lease item that the
        next holder overwrites, that this task held the lease (so its stop must be proven)."""
        now = self._clock()
        try:
            self._client.update_item(
                TableName=self.table,
                Key={"pk": {"S": self.key(task_arn)}},
                UpdateExpression="SET task_arn = :task, held_token = :token, purge_at = :purge",
                ExpressionAttributeValues={
                    ":task": {"S": task_arn},
                    ":token": {"N": str(token)},
                    ":purge": {"N": str(int(now + KEEP_SECONDS))},
                },
            )
        except (aws.ClientError, *aws.TRANSPORT_ERRORS) as exc:
            raise self._unavailable("write", exc) from exc

    def record(self, task_arn: str, version: int, status: str, outcome: str) -> bool:
        """Mark ``version`` handled; ``False`` when a newer one was recorded meanwhile."""
        now = self._clock()
        try:
            # An update, not a put: the agent's held_token on the same item must survive.
            self._client.update_item(
                TableName=self.table,
                Key={"pk": {"S": self.key(task_arn)}},
                UpdateExpression=(
                    "SET task_arn = :task, version = :version, last_status = :status, "
                    "outcome = :outcome, updated_at = :now, purge_at = :purge"
                ),
                ConditionExpression=COND_NEWER,
                ExpressionAttributeValues={
                    ":task": {"S": task_arn},
                    ":version": {"N": str(version)},
                    ":status": {"S": status},
                    ":outcome": {"S": outcome},
                    ":now": {"N": f"{now:.3f}"},
                    ":purge": {"N": str(int(now + KEEP_SECONDS))},
                },
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
