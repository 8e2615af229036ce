"""One place that builds a database's edges from its settings: clients, lease, ledger, store.

Every door (the control plane's Lambdas, the front door, the agent, the operator CLI) works on
the same edges of one ``DatabaseLocation``; ``Edges`` builds each on first use, on clients it
shares between them (one DynamoDB client for the lease and the ledger) and makes only when
first called: each client costs cold-start time, and most invocations need one or two."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import cached_property
from typing import Any

from chalicelib import aws
from chalicelib.lease import LeaseTable
from chalicelib.ledger import TaskLedger
from chalicelib.settings import DatabaseLocation
from chalicelib.store import DatabaseStore

# ``clients("s3")`` -> a boto3 client; the CLI's comes from its own profile-aware session.
ClientFactory = Callable[[str], Any]


def region_clients(
    region: str | None, timeouts: Mapping[str, aws.CallTimeouts | None] | None = None
) -> ClientFactory:
    """``aws.client`` in ``region``, with the call timeouts given for a service (an agent that
    holds a lease must hear back before it runs out). Endpoints are left to boto3, which
    honours ``AWS_ENDPOINT_URL`` and the per-service ``AWS_ENDPOINT_URL_<SERVICE>``."""
    limits = dict(timeouts or {})

    def create(service: str) -> Any:
        return aws.client(service, region, timeouts=limits.get(service))

    return create


class Edges:
    """The lease table, the task ledger and the database object of one location."""

    def __init__(self, location: DatabaseLocation, clients: ClientFactory | None = None) -> None:
        self.location = location
        self._create = clients or region_clients(location.region)
        self._clients: dict[str, Any] = {}

    def client(self, service: str) -> Any:
        """One client per service, shared by every edge built here, made on its first call."""
        if service not in self._clients:
            create = self._create
            self._clients[service] = aws.LazyClient(lambda: create(service))
        return self._clients[service]

    @cached_property
    def table(self) -> LeaseTable:
        location = self.location
        return LeaseTable(location.lease_table, location.lease_name, client=self.client("dynamodb"))

    @cached_property
    def ledger(self) -> TaskLedger:
        location = self.location
        return TaskLedger(location.lease_table, location.lease_name,
                          client=self.client("dynamodb"))

    def store(self, **options: Any) -> DatabaseStore:
        """The database object's store on the shared S3 client, with the location's backup
        retention and ``options`` (the agent's multipart threshold and part size)."""
        location = self.location
        return DatabaseStore(location.bucket, location.key, client=self.client("s3"),
                             backup_retention=location.backup_retention, **options)
