"""The benchmarks' AWS on a local moto server: clients with test credentials, and the bucket
and lease table an agent needs."""

from __future__ import annotations

from typing import Any

import boto3

REGION = "us-east-1"


def client(service: str, endpoint: str, region: str = REGION) -> Any:
    return boto3.client(
        service,
        endpoint_url=endpoint,
        region_name=region,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def create_resources(endpoint: str, bucket: str, table: str) -> None:
    """A versioned bucket and a lease table (partition key ``pk``), as infra/ makes them."""
    s3 = client("s3", endpoint)
    s3.create_bucket(Bucket=bucket)
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    client("dynamodb", endpoint).create_table(
        TableName=table,
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
