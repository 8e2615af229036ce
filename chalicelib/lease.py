"""The lease: one DynamoDB item per database that says who may write it.

Safety never depends on clocks: every write is conditioned on the holder and its fencing
token. Clocks decide only when an expired lease may be taken over. The item is never deleted
(release keeps it) so the token only ever grows.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any

from boto3.dynamodb.types import TypeSerializer

from chalicelib import aws
from chalicelib.errors import LeaseHeld, LeaseLost, LeaseUnavailable
from chalicelib.ledger import KEEP_SECONDS, ledger_key
from chalicelib.model import Lease

FREE = "FREE"
RESERVED = "RESERVED"
HELD = "HELD"

# "Nobody may be relying on it": the item does not exist yet, or it is FREE,
# or whoever had it let its time run out.
COND_TAKEABLE = "attribute_not_exists(pk) OR #state = :free OR expires_at < :now"

# "Takeable, or reserved for exactly this reservation" (a task started by a wake).
COND_ACQUIRABLE = f"{COND_TAKEABLE} OR (#state = :reserved AND holder = :reservation)"

# "I still hold it": HELD, by me, with the fencing token I was given.
COND_HOLDER = "#state = :held AND holder = :holder AND #token = :token"

# "It is still held or reserved by the holder ECS just reported dead."
COND_HELD_BY = "holder = :holder AND (#state = :held OR #state = :reserved)"

# "It is held by this task, or still reserved for the reservation that started it, and the
# task has not been asked to stop" (a stopping app's endpoint must never be handed out again).
COND_TASK_OWNS = (
    "((#state = :held AND holder = :task) OR (#state = :reserved AND holder = :reservation))"
    " AND (attribute_not_exists(stopping) OR stopping <> :task)"
)

# "It is still this holder's" (whatever the state): only its own endpoint may be cleared.
COND_HOLDS = "holder = :holder"

# "The item exists" (wake keepalives must not create a lease out of thin air).
COND_EXISTS = "attribute_exists(pk)"

_NAMES = {"#state": "state", "#token": "token"}

_serializer = TypeSerializer()


# DynamoDB numbers: at most 38 significant digits, magnitude in [1e-130, 1e126).
_NUMBER_DIGITS = 38
_NUMBER_EXPONENTS = (-130, 125)


def _to_dynamo(value: Any) -> dict[str, Any]:
    """A DynamoDB attribute value; never raises for plain data (numbers, text, maps, lists).

    A number DynamoDB cannot store (NaN, inf, 1e300, a 40-digit integer) is kept as its text:
    a record with one odd field must still be written, or the alarm it carries is lost.
    """
    if isinstance(value, bool) or value is None:
        return _serializer.serialize(value)
    if isinstance(value, int | float | Decimal):
        return _number(value)
    if isinstance(value, Mapping):
        return {"M": {str(k): _to_dynamo(v) for k, v in value.items() if v is not None}}
    if isinstance(value, list | tuple):
        return {"L": [_to_dynamo(v) for v in value]}
    return _serializer.serialize(value)


def _number(value: int | float | Decimal) -> dict[str, Any]:
    number = Decimal(repr(value)) if isinstance(value, float) else Decimal(value)
    if not number.is_finite():
        return {"S": repr(value) if isinstance(value, float) else str(value)}
    if number.is_zero():
        return {"N": "0"}
    digits = len(number.as_tuple().digits)
    exponent = number.adjusted()
    if digits > _NUMBER_DIGITS or not _NUMBER_EXPONENTS[0] <= exponent <= _NUMBER_EXPONENTS[1]:
        return {"S": repr(value) if isinstance(value, float) else str(value)}
    return {"N": str(number)}


class LeaseTable:
    """DynamoDB edge of the lease. All writes are conditional; see the COND_* constants."""

    def __init__(
        self,
        table: str,
        name: str,
        client: Any | None = None,
        clock: Callable[[], float] = time.time,
        region: str | None = None,
        endpoint_url: str | None = None,
    ) -> None:
        self.table = table
        self.name = name
        self._client = client or aws.client("dynamodb", region, endpoint_url)
        self._clock = clock

    # -- reads -----------------------------------------------------------------------------

    def read(self) -> Lease:
        try:
            response = self._client.get_item(
                TableName=self.table, Key=self._key(), ConsistentRead=True
            )
        except aws.ClientError as exc:
            raise self._unavailable("read", exc) from exc
        except aws.TRANSPORT_ERRORS as exc:
            raise self._unavailable("read", exc) from exc
        return Lease.from_item(self.name, response.get("Item"))

    # -- the agent's operations ------------------------------------------------------------

    def acquire(
        self,
        holder: str,
        ttl: float,
        reservation_id: str | None = None,
        task_arn: str | None = None,
        boot: str | None = None,
    ) -> Lease:
        """Take the lease for ``holder``; the fencing token goes up by one.

        With a ``task_arn``, the same transaction marks the task a holder in the task ledger,
        where the next holder cannot erase it: a task that ran the app is never accounted as
        "never held", whatever fails after the acquire. Taking over from a holder whose time
        ran out names it ``last_holder``, as its release would have.

        ``boot`` names this process of the holder (a nonce drawn at start): only an item with
        the same holder *and* boot is our own earlier attempt. Raises ``LeaseHeld`` when
        someone else is live on it, a process of the same holder that is not this one included.
        """
        now = self._clock()
        values: dict[str, Any] = {
            ":free": FREE,
            ":reserved": RESERVED,
            ":held": HELD,
            ":now": now,
            ":reservation": reservation_id or "\x00no-reservation",
            ":holder": holder,
            ":expires": now + ttl,
            ":one": 1,
            ":zero": 0,
        }
        sets = [
            "#state = :held",
            "holder = :holder",
            "#token = if_not_exists(#token, :zero) + :one",
            "expires_at = :expires",
            "acquired_at = :now",
            "updated_at = :now",
        ]
        if task_arn:
            sets.append("task_arn = :task")
            values[":task"] = task_arn
        if reservation_id:
            sets.append("reservation_id = :reservation")
        if boot:
            sets.append("holder_boot = :boot")
            values[":boot"] = boot
        expression = "SET " + ", ".join(sets)
        # A new holder's app has not answered yet, whatever the last one's did.
        removed = ["ready_at"] + ([] if boot else ["holder_boot"])
        if not reservation_id:
            # Not started by a wake: whatever task and endpoint the item names are someone
            # else's, and a wake must not send clients there.
            removed += ["reservation_id", "endpoint", "endpoint_task"] + (
                [] if task_arn else ["task_arn"]
            )
        if removed:
            expression += " REMOVE " + ", ".join(removed)
        prior = self.read()
        if prior.state == HELD and prior.holder and prior.holder != holder:
            expression = expression.replace("SET ", "SET last_holder = :prior, ", 1)
            values[":prior"] = prior.holder
        try:
            return self._acquire_write(expression, values, task_arn)
        except _ConditionFailed as failed:
            current = failed.lease or self.read()
            if current.state == HELD and current.holder == holder and current.holder_boot == boot:
                # Our own first attempt succeeded and only its answer was lost (a retry).
                return current
            raise LeaseHeld(
                self.name, current.holder, current.state, current.expires_at
            ) from failed.__cause__

    def _acquire_write(
        self, expression: str, values: dict[str, Any], task_arn: str | None
    ) -> Lease:
        """The acquire's update, in one transaction with the task's ledger mark if a task."""
        if not task_arn:
            return self._update(expression, COND_ACQUIRABLE, values)
        mark = {
            "TableName": self.table,
            "Key": {"pk": {"S": ledger_key(self.name, task_arn)}},
            "UpdateExpression": "SET task_arn = :task, held_at = :now, purge_at = :purge",
            "ExpressionAttributeValues": {
                ":task": _to_dynamo(task_arn),
                ":now": _to_dynamo(values[":now"]),
                ":purge": _to_dynamo(int(values[":now"] + KEEP_SECONDS)),
            },
        }
        request = self._request(expression, COND_ACQUIRABLE, values)
        request.pop("ReturnValues")
        try:
            self._client.transact_write_items(
                TransactItems=[{"Update": request}, {"Update": mark}]
            )
        except aws.ClientError as exc:
            reasons = exc.response.get("CancellationReasons") or [{}]
            if reasons[0].get("Code") == "ConditionalCheckFailed":
                item = reasons[0].get("Item")
                raise _ConditionFailed(Lease.from_item(self.name, item) if item else None) from exc
            error = self._unavailable("acquire", exc)
            # Another transaction on one of the items at the same moment: try again.
            error.retryable = error.retryable or any(
                r.get("Code") == "TransactionConflict" for r in reasons
            )
            raise error from exc
        except aws.TRANSPORT_ERRORS as exc:
            raise self._unavailable("acquire", exc) from exc
        # A transaction returns no item; nobody can move a lease just taken, so read it.
        return self.read()

    def renew(self, holder: str, token: int, ttl: float) -> Lease:
        """Extend the lease; ``LeaseLost`` if it is no longer ours."""
        now = self._clock()
        return self._as_holder(
            holder,
            token,
            "SET expires_at = :expires, updated_at = :now",
            {":expires": now + ttl, ":now": now},
            "renew",
        )

    def record_upload(self, holder: str, token: int, upload: Mapping[str, Any]) -> Lease:
        """Note the last verified upload on the lease (the control plane's proof of sync)."""
        return self._as_holder(
            holder,
            token,
            "SET last_upload = :upload, updated_at = :now",
            {":upload": dict(upload), ":now": self._clock()},
            "record upload",
        )

    def release(self, holder: str, token: int) -> Lease:
        """Give the lease back; the token is kept so the next holder's is larger."""
        values = {
            ":free": FREE, ":zero": 0, ":now": self._clock(),
            ":held": HELD, ":holder": holder, ":token": token,
        }
        try:
            return self._update(
                "SET #state = :free, expires_at = :zero, last_holder = holder, "
                "updated_at = :now REMOVE holder, reservation_id",
                COND_HOLDER,
                values,
            )
        except _ConditionFailed as failed:
            current = failed.lease or self.read()
            if current.state == FREE and current.last_holder == holder and current.token == token:
                # Our own release went through and only its answer was lost (a retry).
                return current
            raise LeaseLost(
                self.name, holder, token,
                f"release refused; now {current.state} by {current.holder!r} "
                f"token {current.token}",
            ) from failed.__cause__

    # -- the control plane's operations ----------------------------------------------------

    def reserve(self, reservation_id: str, timeout: float) -> Lease:
        """Reserve a free lease for a task about to be started; ``LeaseHeld`` if not free.

        Idempotent: a reservation id is new for each wake, so finding the lease reserved for
        exactly this id means an earlier attempt of this call made it.
        """
        now = self._clock()
        values = {
            ":free": FREE,
            ":reserved": RESERVED,
            ":now": now,
            ":holder": reservation_id,
            ":expires": now + timeout,
        }
        try:
            return self._update(
                "SET #state = :reserved, holder = :holder, reservation_id = :holder, "
                "expires_at = :expires, reserved_at = :now, last_wake = :now, updated_at = :now "
                "REMOVE task_arn, endpoint, endpoint_task",
                COND_TAKEABLE,
                values,
            )
        except _ConditionFailed as failed:
            current = failed.lease or self.read()
            if current.state == RESERVED and current.holder == reservation_id:
                # Our own first attempt landed and only its answer was lost (the SDK retried):
                # the reservation is ours, and its task must be started.
                return current
            raise LeaseHeld(
                self.name, current.holder, current.state, current.expires_at
            ) from failed.__cause__

    def force_release(self, holder: str) -> Lease:
        """Free a lease whose holder (a reservation or a task) is known to be dead.

        ``LeaseLost`` if it is no longer held or reserved by that holder (nothing to do).
        """
        values = {
            ":holder": holder,
            ":held": HELD,
            ":reserved": RESERVED,
            ":free": FREE,
            ":zero": 0,
            ":now": self._clock(),
        }
        try:
            return self._update(
                "SET #state = :free, expires_at = :zero, last_holder = holder, updated_at = :now "
                "REMOVE holder, reservation_id",
                COND_HELD_BY,
                values,
            )
        except _ConditionFailed as failed:
            raise LeaseLost(self.name, holder, -1, "not held by it") from failed.__cause__

    def touch_wake(self) -> Lease:
        """Record a wake request: the agent's idle timer starts again from now."""
        now = self._clock()
        try:
            return self._update(
                "SET last_wake = :now", COND_EXISTS, {":now": now}, names=False
            )
        except _ConditionFailed:
            return self.read()

    def record_task(
        self, task_arn: str, reservation_id: str | None, endpoint: str | None
    ) -> Lease:
        """Note the task (and where it listens) on the lease it holds or was reserved for.

        ``LeaseLost`` when the lease has moved on (a late event for an old task) or the task
        is stopping (``clear_endpoint`` named it).
        """
        values: dict[str, Any] = {
            ":held": HELD,
            ":reserved": RESERVED,
            ":task": task_arn,
            ":reservation": reservation_id or "\x00no-reservation",
            ":now": self._clock(),
        }
        expression = "SET task_arn = :task, updated_at = :now"
        if endpoint:
            # The endpoint names its task, so a wake never sends clients to another task's.
            expression += ", endpoint = :endpoint, endpoint_task = :task"
            values[":endpoint"] = endpoint
        try:
            return self._update(expression, COND_TASK_OWNS, values)
        except _ConditionFailed as failed:
            raise LeaseLost(self.name, task_arn, -1, "not held by or reserved for it") from (
                failed.__cause__
            )

    def mark_ready(self, holder: str, token: int, now: float | None = None) -> Lease:
        """The holder's app answers on its port: from now on the backend counts as running."""
        return self._as_holder(
            holder, token, "SET ready_at = :now", {":now": self._clock() if now is None else now},
            "mark the app ready",
        )

    def clear_endpoint(self, holder: str) -> Lease:
        """Stop sending clients to ``holder``'s endpoint (it is stopping); a no-op otherwise.

        ``stopping`` names the holder, so nobody re-learns the endpoint from ECS (which shows
        the task RUNNING until its container exits).
        """
        values = {":holder": holder}
        try:
            return self._update(
                "SET stopping = :holder REMOVE endpoint, endpoint_task, ready_at",
                COND_HOLDS, values, names=False,
            )
        except _ConditionFailed:
            return self.read()

    def set_fields(self, fields: Mapping[str, Any], condition: str | None = None) -> Lease:
        """Set plain attributes (task ARN, endpoint, unsynced stop record, ...).

        ``condition`` (one without values, such as ``COND_EXISTS``) guards the write;
        ``LeaseLost`` when the guard fails.
        """
        sets = []
        all_values: dict[str, Any] = {}
        for index, (name, value) in enumerate(fields.items()):
            sets.append(f"{name} = :f{index}")
            all_values[f":f{index}"] = value
        try:
            return self._update(
                "SET " + ", ".join(sets),
                condition,
                all_values,
                names=condition is not None and "#" in condition,
            )
        except _ConditionFailed as failed:
            raise LeaseLost(self.name, "?", -1, "guard failed") from failed.__cause__

    # -- plumbing --------------------------------------------------------------------------

    def _key(self) -> dict[str, Any]:
        return {"pk": {"S": self.name}}

    def _as_holder(
        self, holder: str, token: int, expression: str, values: dict[str, Any], what: str
    ) -> Lease:
        values = {**values, ":held": HELD, ":holder": holder, ":token": token}
        try:
            return self._update(expression, COND_HOLDER, values)
        except _ConditionFailed as failed:
            current = failed.lease
            detail = f"{what} refused"
            if current is not None:
                detail += f"; now {current.state} by {current.holder!r} token {current.token}"
            raise LeaseLost(self.name, holder, token, detail) from failed.__cause__

    def _update(
        self,
        expression: str,
        condition: str | None,
        values: Mapping[str, Any],
        names: bool = True,
    ) -> Lease:
        kwargs = self._request(expression, condition, values, names)
        try:
            response = self._client.update_item(**kwargs)
        except aws.ClientError as exc:
            if aws.error_code(exc) == "ConditionalCheckFailedException":
                item = exc.response.get("Item")
                lease = Lease.from_item(self.name, item) if item else None
                raise _ConditionFailed(lease) from exc
            raise self._unavailable("update", exc) from exc
        except aws.TRANSPORT_ERRORS as exc:
            raise self._unavailable("update", exc) from exc
        return Lease.from_item(self.name, response.get("Attributes"))

    def _request(
        self,
        expression: str,
        condition: str | None,
        values: Mapping[str, Any],
        names: bool = True,
    ) -> dict[str, Any]:
        """The UpdateItem request for the lease item: only the values and names it uses."""
        used_values = {
            k: _to_dynamo(v) for k, v in values.items() if _mentions(k, expression, condition)
        }
        kwargs: dict[str, Any] = {
            "TableName": self.table,
            "Key": self._key(),
            "UpdateExpression": expression,
            "ReturnValues": "ALL_NEW",
        }
        if used_values:
            kwargs["ExpressionAttributeValues"] = used_values
        used_names = {k: v for k, v in _NAMES.items() if _mentions(k, expression, condition)}
        if names and used_names:
            kwargs["ExpressionAttributeNames"] = used_names
        if condition:
            kwargs["ConditionExpression"] = condition
            kwargs["ReturnValuesOnConditionCheckFailure"] = "ALL_OLD"
        return kwargs

    def _unavailable(self, what: str, exc: BaseException) -> LeaseUnavailable:
        error = LeaseUnavailable(f"lease {what} on table {self.table!r} failed: {exc}")
        error.retryable = aws.is_transient(exc)
        return error


def _mentions(token: str, expression: str, condition: str | None) -> bool:
    text = expression + " " + (condition or "")
    index = text.find(token)
    while index != -1:
        end = index + len(token)
        if end == len(text) or not (text[end].isalnum() or text[end] == "_"):
            return True
        index = text.find(token, end)
    return False


class _ConditionFailed(Exception):
    def __init__(self, lease: Lease | None) -> None:
        super().__init__("condition failed")
        self.lease = lease
