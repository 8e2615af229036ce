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
from chalicelib.model import from_attribute

# "No version of this task was handled yet, or only older ones." The item may exist without
# one: the agent creates it when it marks itself a holder.
COND_NEWER = "attribute_not_exists(version) OR version < :version"

# "Nobody has accounted for this task's stop, and nobody is at it now (or whoever started
# gave up long ago without an outcome)": each stop is accounted once, by whichever of the
# event handler and the reconciler gets there first.
COND_STOP_UNCLAIMED = (
    "attribute_not_exists(stop_claimed_at) "
    "OR (attribute_not_exists(stop_outcome) AND stop_claimed_at < :stale)"
)

# "The stop is still claimed by this attempt (and has no outcome yet)."
COND_STOP_CLAIMED_BY = "stop_claimed_at = :claimed AND attribute_not_exists(stop_outcome)"

# "The item is one of this lease's task items" (its key starts "<lease name>#task#").
COND_TASK_ITEM = "begins_with(pk, :prefix)"

KEEP_SECONDS = 30 * 24 * 3600

# A claim older than this was abandoned (its Lambda died): longer than any handler may run.
CLAIM_SECONDS = 900


@dataclass(frozen=True)
class LedgerEntry:
    version: int | None = None
    held_token: int | None = None
    # The agent's acquire itself marks its task a holder, atomically with the lease.
    held_at: float | None = None
    # How the task's stop was accounted (verified, unsynced, ...), once it was.
    stop_outcome: str | None = None

    @property
    def held(self) -> bool:
        return self.held_token is not None or self.held_at is not None


def ledger_key(lease_name: str, task_arn: str) -> str:
    """The partition key of a task's ledger item, beside the lease item ``lease_name``."""
    return f"{lease_name}#task#{task_arn.rsplit('/', 1)[-1]}"


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
        return ledger_key(self.lease_name, task_arn)

    def entry(self, task_arn: str) -> LedgerEntry:
        """What is known of the task: the newest event version handled, and whether its agent
        ever held the lease (the agent marks that itself when it acquires)."""
        try:
            response = self._client.get_item(
                TableName=self.table,
                Key={"pk": {"S": self.key(task_arn)}},
                ConsistentRead=True,
                ProjectionExpression="version, held_token, held_at, stop_outcome",
            )
        except aws.CALL_ERRORS as exc:
            raise self._unavailable("read", exc) from exc
        item = response.get("Item") or {}
        version = item.get("version", {}).get("N")
        held = item.get("held_token", {}).get("N")
        held_at = item.get("held_at", {}).get("N")
        return LedgerEntry(
            version=int(version) if version is not None else None,
            held_token=int(held) if held is not None else None,
            held_at=float(held_at) if held_at is not None else None,
            stop_outcome=item.get("stop_outcome", {}).get("S"),
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
        except aws.CALL_ERRORS as exc:
            raise self._unavailable("write", exc) from exc

    def claim_stop(self, task_arn: str) -> float | None:
        """Claim the accounting of the task's stop; the claim's time, or ``None`` when it was
        accounted already or someone is at it (a duplicate event, the reconciler)."""
        now = self._clock()
        try:
            self._client.update_item(
                TableName=self.table,
                Key={"pk": {"S": self.key(task_arn)}},
                UpdateExpression=(
                    "SET task_arn = :task, stop_claimed_at = :now, purge_at = :purge"
                ),
                ConditionExpression=COND_STOP_UNCLAIMED,
                ExpressionAttributeValues={
                    ":task": {"S": task_arn},
                    ":now": {"N": f"{now:.6f}"},
                    ":stale": {"N": f"{now - CLAIM_SECONDS:.6f}"},
                    ":purge": {"N": str(int(now + KEEP_SECONDS))},
                },
            )
        except aws.CALL_ERRORS as exc:
            if _condition_failed(exc):
                return None
            raise self._unavailable("write", exc) from exc
        return float(f"{now:.6f}")

    def record_stop(self, task_arn: str, version: int, outcome: str, claimed_at: float) -> bool:
        """The stop is accounted: ``outcome`` is final. ``False`` if the claim was lost (it
        outlived ``CLAIM_SECONDS`` and another attempt took it)."""
        now = self._clock()
        try:
            self._client.update_item(
                TableName=self.table,
                Key={"pk": {"S": self.key(task_arn)}},
                UpdateExpression=(
                    "SET version = :version, last_status = :status, outcome = :outcome, "
                    "stop_outcome = :outcome, updated_at = :now"
                ),
                ConditionExpression=COND_STOP_CLAIMED_BY,
                ExpressionAttributeValues={
                    ":version": {"N": str(version)},
                    ":status": {"S": "STOPPED"},
                    ":outcome": {"S": outcome},
                    ":now": {"N": f"{now:.3f}"},
                    ":claimed": {"N": f"{claimed_at:.6f}"},
                },
            )
        except aws.CALL_ERRORS as exc:
            if _condition_failed(exc):
                return False
            raise self._unavailable("write", exc) from exc
        return True

    def release_stop(self, task_arn: str, claimed_at: float) -> None:
        """Give up a claim whose accounting failed, so the next attempt need not wait for it
        to go stale (a claim left behind goes stale after ``CLAIM_SECONDS``)."""
        try:
            self._client.update_item(
                TableName=self.table,
                Key={"pk": {"S": self.key(task_arn)}},
                UpdateExpression="REMOVE stop_claimed_at",
                ConditionExpression=COND_STOP_CLAIMED_BY,
                ExpressionAttributeValues={":claimed": {"N": f"{claimed_at:.6f}"}},
            )
        except aws.CALL_ERRORS as exc:
            if not _condition_failed(exc):
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
        except aws.CALL_ERRORS as exc:
            if _condition_failed(exc):
                return False
            raise self._unavailable("write", exc) from exc
        return True

    def tasks(self) -> list[dict[str, Any]]:
        """Every task item of this lease (what ``wakeful history`` tells), as plain data.

        A scan: the table holds one lease item and a small item per task of the last
        ``KEEP_SECONDS``, so it stays small; this is an operator's read, never on a hot path.
        """
        found: list[dict[str, Any]] = []
        try:
            paginator = self._client.get_paginator("scan")
            for page in paginator.paginate(
                TableName=self.table,
                ConsistentRead=True,
                FilterExpression=COND_TASK_ITEM,
                ExpressionAttributeValues={":prefix": {"S": f"{self.lease_name}#task#"}},
            ):
                for item in page.get("Items", []):
                    found.append({k: from_attribute(v) for k, v in item.items()})
        except aws.CALL_ERRORS as exc:
            raise self._unavailable("scan", exc) from exc
        return found

    def _unavailable(self, what: str, exc: BaseException) -> LeaseUnavailable:
        error = LeaseUnavailable(f"task ledger {what} on table {self.table!r} failed: {exc}")
        error.retryable = aws.translate(exc).transient
        return error


def _condition_failed(exc: BaseException) -> bool:
    """The write's condition did not hold: an answer, not a failure of the call."""
    return aws.translate(exc).code == "ConditionalCheckFailedException"
