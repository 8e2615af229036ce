"""Pure decisions of the front door: where a request goes, given the lease. No I/O here.

``decide`` reads the lease as the control plane's wake does (``chalicelib.decisions``): the
backend is running only when an agent holds the lease and its own endpoint is recorded. A
holder that is uploading to sleep (``stopping`` names it) is never sent a request.
``next_step`` is the hold loop: wake, wait with backoff, forward, or give up.
"""

from __future__ import annotations

from dataclasses import dataclass

from chalicelib.lease import HELD, Lease

STARTING = "starting"
STOPPING = "stopping"

# More than one wake per request only if the lease falls asleep again while it waits (the
# stop it waited for finished, or the task failed to start); never a stream of RunTasks.
MAX_WAKES = 3
FIRST_POLL = 0.2
POLL_GROWTH = 1.5
POLL_CAP = 2.0


# -- what the lease says -------------------------------------------------------------------


@dataclass(frozen=True)
class Forward:
    """The backend runs and answers at ``endpoint``."""

    endpoint: str


@dataclass(frozen=True)
class Wake:
    """Nobody holds the lease (or the holder's time ran out): the backend is asleep."""


@dataclass(frozen=True)
class Hold:
    """A task is on its way up (``starting``) or uploading to sleep (``stopping``)."""

    state: str


Decision = Forward | Wake | Hold


def decide(lease: Lease, now: float) -> Decision:
    if not lease.is_live(now):
        return Wake()
    if lease.state == HELD and lease.holder and lease.extra.get("stopping") == lease.holder:
        return Hold(STOPPING)
    endpoint = lease.serving_endpoint()
    if endpoint:
        return Forward(endpoint)
    return Hold(STARTING)


# -- the hold loop -------------------------------------------------------------------------


@dataclass(frozen=True)
class Progress:
    """What this request has done so far while it waits."""

    wakes: int = 0
    polls: int = 0

    def woke(self) -> Progress:
        return Progress(self.wakes + 1, self.polls)

    def polled(self) -> Progress:
        return Progress(self.wakes, self.polls + 1)


@dataclass(frozen=True)
class CallWake:
    """Ask the control plane to start the backend (idempotent: one task for many callers)."""


@dataclass(frozen=True)
class Poll:
    """Read the lease again after ``delay`` seconds."""

    delay: float


@dataclass(frozen=True)
class GiveUp:
    """The hold is over: answer "waking up" (503, ``Retry-After``)."""

    state: str


Step = Forward | CallWake | Poll | GiveUp


def next_step(decision: Decision, progress: Progress, now: float, hold_until: float) -> Step:
    """The next thing a request does, ``now`` and ``hold_until`` on a monotonic clock."""
    if isinstance(decision, Forward):
        return decision
    if progress.wakes == 0:
        # Whatever the state, the first look that is not "running" wakes: for a starting
        # task it also recovers an endpoint ECS knows but the lease does not yet.
        return CallWake()
    if isinstance(decision, Wake) and progress.wakes < MAX_WAKES:
        return CallWake()
    state = decision.state if isinstance(decision, Hold) else STARTING
    if now >= hold_until:
        return GiveUp(state)
    return Poll(min(backoff(progress.polls), hold_until - now))


def backoff(polls: int) -> float:
    """Seconds before the next read of the lease: quick at first, then every two seconds."""
    return min(POLL_CAP, FIRST_POLL * POLL_GROWTH ** max(0, polls))


# -- keepalive -----------------------------------------------------------------------------


def keepalive_due(last_sent: float | None, now: float, interval: float) -> bool:
    """A ``last_wake`` refresh is due: never sent by this instance, or ``interval`` ago."""
    return last_sent is None or now - last_sent >= interval


# -- content negotiation -------------------------------------------------------------------


def wants_html(accept: str | None) -> bool:
    """A browser's navigation (``text/html`` preferred over JSON), not an API client's."""
    if not accept:
        return False
    html = json_q = 0.0
    for part in accept.split(","):
        media, *params = (p.strip() for p in part.split(";"))
        quality = 1.0
        for param in params:
            key, _, value = param.partition("=")
            if key.strip().lower() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        media = media.lower()
        if media in ("text/html", "application/xhtml+xml"):
            html = max(html, quality)
        elif media == "application/json":
            json_q = max(json_q, quality)
    return html > 0 and html >= json_q
