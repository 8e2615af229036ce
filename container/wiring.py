"""The agent's wiring: what every verb of ``wakeful-agent`` runs on, built in one place.

``run`` (the agent, ``container.agent``) and the manual verbs (``container.commands``) share one
set of collaborators; they differ only in how patient their AWS calls are: an agent holding a
lease must hear back from every call before its lease runs out, manual verbs keep botocore's
patient defaults.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from chalicelib import aws
from chalicelib.lease import LeaseTable
from chalicelib.ledger import TaskLedger
from chalicelib.observability import logger, metrics
from chalicelib.settings import AgentSettings
from chalicelib.store import DatabaseStore, MiB
from container import timeouts
from container.identity import Identity, discover
from wakeful_replica import sqlite
from wakeful_replica.store import ChainStore


@dataclass
class Clocks:
    """Injected time: ``wall`` for lease expiry, ``monotonic`` for budgets, ``sleep``."""

    wall: Callable[[], float] = time.time
    monotonic: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep


@dataclass
class Wiring:
    settings: AgentSettings
    table: LeaseTable
    store: DatabaseStore
    identity: Identity
    log: Any
    metrics: Any
    ledger: TaskLedger | None = None
    clocks: Clocks = field(default_factory=Clocks)
    # WAKEFUL_REPLICATION=chain: the chain in the same bucket, and the agent's SQLite.
    chain: ChainStore | None = None
    sqlite_versions: Callable[[], sqlite.Versions] = sqlite.versions


W = TypeVar("W", bound=Wiring)


def wire(settings: AgentSettings, kind: type[W], supervising: bool = False) -> W:
    """Build the clients and collaborators into ``kind`` (``Wiring`` or a verb's context).

    ``supervising``: for an agent that holds a lease, every call is bounded by it.
    """
    location = settings.location
    lease_timeouts = timeouts.lease_calls(settings.lease_ttl) if supervising else None
    store_timeouts = timeouts.store_calls(settings.lease_ttl) if supervising else None
    # Endpoints are left to boto3, which honours AWS_ENDPOINT_URL and the per-service
    # AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL_DYNAMODB.
    dynamodb = aws.client("dynamodb", location.region, timeouts=lease_timeouts)
    threshold = settings.multipart_threshold
    s3 = aws.client("s3", location.region, timeouts=store_timeouts)
    store = DatabaseStore(location.bucket, location.key, client=s3,
                          backup_retention=location.backup_retention,
                          multipart_threshold=threshold, part_size=min(16 * MiB, threshold))
    return kind(
        settings=settings,
        table=LeaseTable(location.lease_table, location.lease_name, client=dynamodb),
        store=store,
        identity=discover(),
        log=logger("wakeful-agent"),
        metrics=metrics("wakeful-agent"),
        ledger=TaskLedger(location.lease_table, location.lease_name, client=dynamodb),
        chain=ChainStore(location.bucket, location.key, client=s3, database=store,
                         retention_days=settings.retention_days)
        if settings.replication == "chain" else None,
    )
