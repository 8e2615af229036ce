"""How long each attempt of the agent's AWS calls may take, sized from the lease TTL.

botocore's defaults (a 60 s read timeout, several attempts with backoff) let one call outlast a
30 s lease several times over. The agent's own waits are bounded by the lease's trust (see
``container.deadline``); these bound the calls themselves, so the heartbeat can try again
while the lease still holds, and a call given up on does not linger.
"""

from __future__ import annotations

from chalicelib.aws import CallTimeouts


def _clamp(value: float, low: float, high: float) -> float:
    return max(low, min(high, value))


def lease_calls(ttl: float) -> CallTimeouts:
    """DynamoDB: one short attempt; the heartbeat and the agent's loops do the retrying, on a
    schedule that knows when the lease runs out (botocore's backoff does not)."""
    return CallTimeouts(
        connect=_clamp(ttl / 10, 0.2, 3.0), read=_clamp(ttl / 6, 0.25, 5.0), attempts=1
    )


def store_calls(ttl: float) -> CallTimeouts:
    """S3: longer reads (a large part's answer can take a while), a few attempts."""
    return CallTimeouts(
        connect=_clamp(ttl / 6, 0.5, 3.0), read=_clamp(ttl, 5.0, 30.0), attempts=3
    )
