"""The fault proxy itself: each fault does what the tests that use it rely on."""

from __future__ import annotations

import time

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError, ConnectionClosedError, ReadTimeoutError

from tests.conftest import BUCKET, TABLE
from tests.fault_proxy import fault_proxy, s3_put, service

NO_RETRY = Config(
    retries={"total_max_attempts": 1, "mode": "standard"}, read_timeout=2, connect_timeout=2
)


def _clients(url: str) -> tuple[object, object]:
    return (
        boto3.client("s3", endpoint_url=url, config=NO_RETRY),
        boto3.client("dynamodb", endpoint_url=url, config=NO_RETRY),
    )


def test_requests_pass_through_and_are_logged(resources):
    with fault_proxy(resources.url) as proxy:
        s3, dynamo = _clients(proxy.url)
        s3.put_object(Bucket=BUCKET, Key="k", Body=b"hello")
        assert s3.get_object(Bucket=BUCKET, Key="k")["Body"].read() == b"hello"
        s3.list_objects_v2(Bucket=BUCKET)
        dynamo.get_item(TableName=TABLE, Key={"pk": {"S": "x"}})
        seen = proxy.requests
    assert [r.service for r in seen] == ["s3", "s3", "s3", "dynamodb"]
    assert [r.is_list for r in seen] == [False, False, True, False]
    assert seen[3].target == "GetItem"


def test_lost_answer_lands_the_write_but_the_client_sees_an_error(resources):
    with fault_proxy(resources.url) as proxy:
        s3, _ = _clients(proxy.url)
        proxy.lose_answer(s3_put("/k"))
        with pytest.raises(ConnectionClosedError):
            s3.put_object(Bucket=BUCKET, Key="k", Body=b"landed")
        body = boto3.client("s3").get_object(Bucket=BUCKET, Key="k")["Body"].read()
    assert body == b"landed"


def test_fail_answers_a_service_error_for_a_count(resources):
    with fault_proxy(resources.url) as proxy:
        _, dynamo = _clients(proxy.url)
        proxy.fail(503, service("dynamodb", "GetItem"), count=1)
        with pytest.raises(ClientError) as caught:
            dynamo.get_item(TableName=TABLE, Key={"pk": {"S": "x"}})
        assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 503
        dynamo.get_item(TableName=TABLE, Key={"pk": {"S": "x"}})  # the count is spent


def test_hang_holds_until_healed(resources):
    with fault_proxy(resources.url) as proxy:
        s3, _ = _clients(proxy.url)
        proxy.hang(service("s3"))
        with pytest.raises(ReadTimeoutError):
            s3.head_bucket(Bucket=BUCKET)
        proxy.heal()
        s3.head_bucket(Bucket=BUCKET)


def test_delay_holds_each_answer(resources):
    with fault_proxy(resources.url) as proxy:
        s3, _ = _clients(proxy.url)
        proxy.delay(0.5, service("s3"), count=1)
        started = time.monotonic()
        s3.head_bucket(Bucket=BUCKET)
        held = time.monotonic() - started
    assert held >= 0.5


def test_fail_can_name_the_error_code(resources):
    with fault_proxy(resources.url) as proxy:
        s3, _ = _clients(proxy.url)
        proxy.fail(409, s3_put("/k"), count=1, code="ConditionalRequestConflict")
        with pytest.raises(ClientError) as caught:
            s3.put_object(Bucket=BUCKET, Key="k", Body=b"x")
    assert caught.value.response["Error"]["Code"] == "ConditionalRequestConflict"
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 409


def test_hold_forwards_the_request_only_once_released(resources):
    import threading

    with fault_proxy(resources.url) as proxy:
        s3, _ = _clients(proxy.url)
        held = proxy.hold(s3_put("/k"))
        sent = threading.Thread(
            target=lambda: s3.put_object(Bucket=BUCKET, Key="k", Body=b"late"), daemon=True
        )
        sent.start()
        while not held.hits:
            time.sleep(0.01)
        direct = boto3.client("s3")
        with pytest.raises(ClientError):
            direct.head_object(Bucket=BUCKET, Key="k")  # not landed while held
        proxy.release(held)
        sent.join(5)
    assert direct.get_object(Bucket=BUCKET, Key="k")["Body"].read() == b"late"


def test_a_head_answers_the_objects_length(resources):
    with fault_proxy(resources.url) as proxy:
        s3, _ = _clients(proxy.url)
        s3.put_object(Bucket=BUCKET, Key="k", Body=b"twelve bytes")
        assert s3.head_object(Bucket=BUCKET, Key="k")["ContentLength"] == 12
