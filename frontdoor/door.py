"""The front door: every request to the app's public URL, whatever the backend is doing.

Running: forwarded to the holder's endpoint. Asleep, starting or stopping: the same idempotent
wake as ``POST /wake`` (in-process, so concurrent requests start one task), then the request
waits, reading the lease with backoff, until the backend runs, and is forwarded; past the hold
it gets "waking up" (503, ``Retry-After``). The decisions are ``frontdoor.decisions``; this
module performs them. ``handle`` never raises: a failure is an answer and a log line.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from chalicelib.errors import LeaseUnavailable
from chalicelib.lease import Lease
from frontdoor import decisions, pages
from frontdoor.decisions import CallWake, Forward, GiveUp, Poll, Progress
from frontdoor.messages import BadRequest, Request, Response, parse_event, result_size, to_result
from frontdoor.settings import FrontDoorSettings
from frontdoor.upstream import (
    Budget,
    ResponseTooLarge,
    Transport,
    Unreachable,
    UpstreamBroken,
    UpstreamTimeout,
)

# Time kept back from the Lambda's remaining time, to answer before Lambda ends the call.
SAFETY_MARGIN = 1.0
RETRY_UNAVAILABLE = 30


class LeaseView(Protocol):
    def read(self) -> Lease: ...

    def touch_wake(self) -> Lease: ...


class WakeReply(Protocol):
    status: int
    body: Mapping[str, Any]
    headers: Mapping[str, str]


class MetricSink(Protocol):
    def emit(self, name: str, value: float = 1, unit: str = "Count", **properties: Any) -> None:
        ...


class _Outcome(Exception):
    """A final answer found deep in the hold loop."""

    def __init__(self, response: Response) -> None:
        super().__init__(response.status)
        self.response = response


class FrontDoor:
    def __init__(
        self,
        settings: FrontDoorSettings,
        lease: LeaseView,
        wake: Callable[[], WakeReply],
        transport: Transport,
        log: Any,
        metrics: MetricSink,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.settings = settings
        self.lease = lease
        self.wake = wake
        self.transport = transport
        self.log = log
        self.metrics = metrics
        self.clock = clock
        self.monotonic = monotonic
        self.sleep = sleep
        self._keepalive_lock = threading.Lock()
        self._keepalive_sent: float | None = None

    # -- the Lambda contract ---------------------------------------------------------------

    def handle(self, event: Any, context: Any = None) -> dict[str, Any]:
        """A function URL event in, its answer out. Never raises."""
        try:
            return self._handle(event, _remaining(context))
        except Exception:
            # Only a bug gets here: every expected failure is an answer of its own.
            self.log.exception("Front door failed on a request")
            self.metrics.emit("FrontDoorBug")
            return to_result(pages.problem(500, "internal error", "the front door failed"))

    def _handle(self, event: Any, remaining: float | None) -> dict[str, Any]:
        started = self.monotonic()
        s = self.settings
        try:
            request = parse_event(event, s.max_header_bytes, s.max_body_bytes)
        except BadRequest as exc:
            self.log.info("Refused a malformed request",
                          extra={"status": exc.status, "reason": exc.reason})
            return to_result(pages.problem(exc.status, "bad request", exc.reason))
        budget = s.timeout if remaining is None else min(s.timeout, remaining - SAFETY_MARGIN)
        deadline = started + max(budget, 0.0)
        hold_until = started + max(0.0, min(s.hold, budget - s.connect_timeout))
        try:
            response = self._serve(request, hold_until, deadline)
        except _Outcome as outcome:
            response = outcome.response
        result = to_result(response)
        if result_size(result) > s.max_response_bytes:
            return to_result(self._too_large(request, f"{result_size(result)} bytes"))
        return result

    # -- one request -----------------------------------------------------------------------

    def _serve(self, request: Request, hold_until: float, deadline: float) -> Response:
        lease = self._read()
        progress = Progress()
        tried: set[str] = set()
        woke_at: str | None = None
        while True:
            if woke_at:
                # The wake answered "running" with the endpoint: go there, no need to wait
                # for the lease to say so too.
                step: decisions.Step = Forward(woke_at)
                woke_at = None
            else:
                decision = decisions.decide(lease, self.clock())
                step = decisions.next_step(decision, progress, self.monotonic(), hold_until)
            if isinstance(step, Forward):
                if step.endpoint in tried:
                    return self._unreachable(request, step.endpoint)
                tried.add(step.endpoint)
                self._keepalive()
                try:
                    return self._forward(request, step.endpoint, deadline, progress)
                except Unreachable as exc:
                    # Nothing was sent: look again, the backend may have moved on meanwhile
                    # (a stop began, a new task took over). Same endpoint twice: a 502.
                    self.log.warning("The app refused a connection; reading the lease again",
                                     extra={"endpoint": exc.endpoint, "reason": exc.reason})
                    lease = self._read()
                continue
            if isinstance(step, CallWake):
                progress = progress.woke()
                woke_at = self._wake(request)
                if not woke_at:
                    lease = self._read()
                continue
            if isinstance(step, Poll):
                self.sleep(step.delay)
                progress = progress.polled()
                lease = self._read()
                continue
            assert isinstance(step, GiveUp)
            return self._hold_expired(request, step.state, progress)

    def _read(self) -> Lease:
        try:
            return self.lease.read()
        except LeaseUnavailable as exc:
            self.log.error("The lease could not be read", extra={"error": str(exc)})
            self.metrics.emit("FrontDoorLeaseUnavailable")
            raise _Outcome(pages.problem(
                503, "unavailable", "the front door cannot read the backend's state; "
                "try again shortly", retry_after=RETRY_UNAVAILABLE,
            )) from exc

    def _wake(self, request: Request) -> str | None:
        """Call the wake; the endpoint when it answered "running"."""
        reply = self.wake()
        body = reply.body or {}
        self.log.info("Woke the backend for a request",
                      extra={"status": reply.status, "state": body.get("state"),
                             "method": request.method, "path": request.path})
        if not 200 <= reply.status < 300:
            # The start was refused (RunTask failed), a dependency is down, or the control
            # plane refused the call: holding the request would only delay the same answer.
            self.log.error("The wake failed", extra={"status": reply.status, "body": dict(body)})
            self.metrics.emit("FrontDoorWakeFailed")
            retry = _retry_after(reply.headers, RETRY_UNAVAILABLE)
            reason = str(body.get("reason") or body.get("error") or "the backend cannot start")
            raise _Outcome(pages.problem(
                503, "unavailable", f"the app could not be started: {reason}",
                _html(request), retry_after=retry,
            ))
        self.metrics.emit("FrontDoorWake", state=body.get("state"))
        # The wake wrote last_wake: no keepalive is due for another interval.
        with self._keepalive_lock:
            self._keepalive_sent = self.monotonic()
        endpoint = body.get("endpoint")
        return endpoint if reply.status == 200 and isinstance(endpoint, str) else None

    def _forward(
        self, request: Request, endpoint: str, deadline: float, progress: Progress
    ) -> Response:
        s = self.settings
        left = deadline - self.monotonic()
        budget = Budget(
            connect=max(0.05, min(s.connect_timeout, left)),
            answer=max(0.05, left),
            max_body=s.max_response_bytes,
        )
        try:
            response = self.transport.send(endpoint, request, budget)
        except UpstreamTimeout as exc:
            self.log.error("The app did not answer in time",
                           extra={"endpoint": endpoint, "path": request.path,
                                  "reason": exc.reason})
            self.metrics.emit("FrontDoorTimeout")
            return pages.problem(504, "gateway timeout", "the app did not answer in time",
                                 _html(request))
        except ResponseTooLarge as exc:
            return self._too_large(request, exc.reason)
        except UpstreamBroken as exc:
            self.log.error("The app's answer was broken",
                           extra={"endpoint": endpoint, "path": request.path,
                                  "reason": exc.reason})
            self.metrics.emit("FrontDoorBadGateway")
            return pages.problem(502, "bad gateway", "the app's answer was cut off or invalid",
                                 _html(request))
        if progress.wakes:
            self.log.info("Served a request that woke the backend",
                          extra={"status": response.status, "polls": progress.polls})
        else:
            self.log.debug("Forwarded", extra={"status": response.status,
                                               "method": request.method})
        return response

    def _keepalive(self) -> None:
        """At most one ``last_wake`` write per interval for this instance, however busy."""
        now = self.monotonic()
        with self._keepalive_lock:
            if not decisions.keepalive_due(self._keepalive_sent, now, self.settings.keepalive):
                return
            self._keepalive_sent = now
        try:
            self.lease.touch_wake()
        except LeaseUnavailable as exc:
            # The request still goes through; the next interval tries again.
            self.log.warning("Keepalive failed", extra={"error": str(exc)})

    # -- answers ---------------------------------------------------------------------------

    def _hold_expired(self, request: Request, state: str, progress: Progress) -> Response:
        self.log.info("Backend not ready within the hold",
                      extra={"state": state, "polls": progress.polls,
                             "hold": self.settings.hold})
        self.metrics.emit("FrontDoorHoldExpired", state=state)
        return pages.waking(state, request.method, self.settings.retry_after, _html(request))

    def _unreachable(self, request: Request, endpoint: str) -> Response:
        self.log.error("The app is unreachable while the lease says it runs",
                       extra={"endpoint": endpoint, "method": request.method,
                              "path": request.path})
        self.metrics.emit("FrontDoorUnreachable")
        return pages.problem(
            502, "bad gateway",
            "the app did not accept the connection (it may have just stopped); "
            "try again shortly", _html(request), retry_after=self.settings.retry_after,
        )

    def _too_large(self, request: Request, detail: str) -> Response:
        self.log.error("The app's answer is too large for the front door",
                       extra={"path": request.path, "detail": detail,
                              "limit": self.settings.max_response_bytes})
        self.metrics.emit("FrontDoorResponseTooLarge")
        return pages.problem(
            502, "bad gateway",
            f"the app's answer is larger than the {self.settings.max_response_bytes} bytes "
            "the front door can carry", _html(request),
        )


def _html(request: Request) -> bool:
    return decisions.wants_html(request.header("accept"))


def _remaining(context: Any) -> float | None:
    remaining = getattr(context, "get_remaining_time_in_millis", None)
    if not callable(remaining):
        return None
    try:
        return float(remaining()) / 1000.0
    except (TypeError, ValueError):
        return None


def _retry_after(headers: Mapping[str, str] | None, default: int) -> int:
    for name, value in (headers or {}).items():
        if name.lower() == "retry-after" and str(value).strip().isdigit():
            return int(str(value).strip())
    return default
