"""wiring.Edges: the one place that builds a location's clients, lease table, ledger and store.

Real clients against the moto server; the factory only notes which services it was asked for.
"""

from __future__ import annotations

from typing import Any

from chalicelib import aws
from chalicelib.settings import DatabaseLocation
from chalicelib.store import MiB
from chalicelib.wiring import Edges
from tests.conftest import BUCKET, REGION, TABLE

TASK = "arn:aws:ecs:us-east-1:123456789012:task/wakeful-test/wired"


def location() -> DatabaseLocation:
    return DatabaseLocation.from_env(
        {"DB_S3_BUCKET": BUCKET, "WAKEFUL_LEASE_TABLE": TABLE, "WAKEFUL_BACKUP_RETENTION": "7"}
    )


def test_one_client_per_service_is_shared_and_made_on_its_first_call(resources):
    made: list[str] = []

    def clients(service: str) -> Any:
        made.append(service)
        return aws.client(service, REGION)

    edges = Edges(location(), clients)
    table, ledger, store = edges.table, edges.ledger, edges.store()
    assert made == []  # building made no client: a cold start pays for the ones it calls
    assert table.read().state == "FREE"
    assert ledger.entry(TASK).version is None
    assert made == ["dynamodb"]  # the lease and the ledger share one
    assert store.head() is None and store.backups() == []
    agents = edges.store(multipart_threshold=8 * MiB)
    assert agents.head() is None
    assert made == ["dynamodb", "s3"]  # every store of the location shares one
    assert (agents.multipart_threshold, agents.backup_retention) == (8 * MiB, 7)
    assert edges.table is table


def test_a_client_that_cannot_be_made_fails_the_first_call_as_a_typed_error(resources):
    from botocore.exceptions import NoRegionError

    from chalicelib.errors import LeaseUnavailable

    def no_region(service: str) -> Any:
        raise NoRegionError()  # what botocore raises making a client with no region anywhere

    table = Edges(location(), no_region).table  # built all the same: nothing is called yet
    try:
        table.read()
    except LeaseUnavailable as exc:
        assert not exc.retryable  # asking again will not give it a region
        assert "region" in str(exc)
    else:
        raise AssertionError("a lease read without a client succeeded")
