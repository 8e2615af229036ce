"""Shared fixtures: one moto server for the session, reset between tests.

Tests reach AWS only through real boto3 clients and ``AWS_ENDPOINT_URL``.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.moto_server import MotoServer  # noqa: E402

REGION = "us-east-1"
BUCKET = "wakeful-test-db"
TABLE = "wakeful-test-leases"


@pytest.fixture(scope="session")
def moto_server() -> Iterator[MotoServer]:
    server = MotoServer().start()
    saved = {k: os.environ.get(k) for k in _AWS_ENV}
    os.environ.update(
        {
            "AWS_ENDPOINT_URL": server.url,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_SESSION_TOKEN": "testing",
            "AWS_REGION": REGION,
            "AWS_DEFAULT_REGION": REGION,
        }
    )
    try:
        yield server
    finally:
        server.stop()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


_AWS_ENV = (
    "AWS_ENDPOINT_URL",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
)


@pytest.fixture
def aws(moto_server: MotoServer) -> Iterator[MotoServer]:
    """A clean moto server for this test."""
    moto_server.reset()
    yield moto_server


def create_bucket(bucket: str = BUCKET, versioned: bool = True) -> None:
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket=bucket)
    if versioned:
        s3.put_bucket_versioning(
            Bucket=bucket, VersioningConfiguration={"Status": "Enabled"}
        )


def create_lease_table(table: str = TABLE) -> None:
    boto3.client("dynamodb").create_table(
        TableName=table,
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )


@pytest.fixture
def resources(aws: MotoServer) -> MotoServer:
    """A versioned bucket and a lease table on a clean server."""
    create_bucket()
    create_lease_table()
    return aws


@pytest.fixture
def agent_env(
    resources: MotoServer, tmp_path: Path, request: pytest.FixtureRequest
) -> dict[str, str]:
    """Environment for an agent process against the test resources.

    The default replication (chain) unless the test is marked ``snapshot_layout``: a test of
    the whole-file layout's own mechanics (its ETag fence, its multipart upload of ``K``).
    """
    layout = {"WAKEFUL_REPLICATION": "snapshot"} if request.node.get_closest_marker(
        "snapshot_layout") else {}
    return {
        **os.environ,
        "AWS_ENDPOINT_URL": resources.url,
        "DB_S3_BUCKET": BUCKET,
        "DB_S3_KEY": "db.sqlite3",
        "DB_LOCAL_PATH": str(tmp_path / "app" / "db.sqlite3"),
        "WAKEFUL_LEASE_TABLE": TABLE,
        "WAKEFUL_LEASE_TTL": "3",
        "WAKEFUL_SYNC_INTERVAL": "0",
        "WAKEFUL_STOP_GRACE": "5",
        "WAKEFUL_STOP_BUDGET": "20",
        "PYTHONPATH": str(ROOT),
        "PYTHONUNBUFFERED": "1",
        **layout,
    }


@pytest.fixture(autouse=True)
def _no_agent_left_running() -> Iterator[None]:
    """A test that fails halfway must not leave its agent processes running."""
    yield
    from tests.agent_harness import AgentProcess

    AgentProcess.kill_leftovers()
