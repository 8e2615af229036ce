"""The local stack's AWS resources, on moto: from ``infra/`` with Terraform when the CLI and a
provider mirror are here, otherwise created from Python with the same names."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3

from wakeful_local import terraform

ACCOUNT = "123456789012"  # moto's account
PREFIX = "wakeful-local"  # what infra/ names things for name=wakeful, stage=local
REGION = "us-east-1"


@dataclass(frozen=True)
class Timings:
    """The knobs the demo turns down so its story takes seconds, not minutes."""

    sync_interval: float = 2.0
    lease_ttl: float = 6.0
    idle_timeout: float = 60.0
    app_port: int = 0  # 0: a free port, chosen when the stack starts


@dataclass(frozen=True)
class Names:
    bucket: str
    key: str
    table: str
    lease_name: str
    cluster: str
    task_definition: str
    container: str
    subnets: tuple[str, ...]
    security_groups: tuple[str, ...]
    app_port: int

    def control_plane_env(self) -> dict[str, str]:
        return {
            "DB_S3_BUCKET": self.bucket,
            "DB_S3_KEY": self.key,
            "WAKEFUL_LEASE_TABLE": self.table,
            "WAKEFUL_LEASE_NAME": self.lease_name,
            "WAKEFUL_CLUSTER": self.cluster,
            "WAKEFUL_TASK_DEFINITION": self.task_definition,
            "WAKEFUL_CONTAINER_NAME": self.container,
            "WAKEFUL_SUBNETS": ",".join(self.subnets),
            "WAKEFUL_SECURITY_GROUPS": ",".join(self.security_groups),
            "WAKEFUL_APP_PORT": str(self.app_port),
            "WAKEFUL_START_TIMEOUT": "60",
        }


def provision(
    how: str,
    moto_url: str,
    env: dict[str, str],
    workdir: Path,
    timings: Timings,
    say: Callable[[str], None],
) -> Names:
    """Create the resources; ``how`` is ``terraform``, ``python`` or ``auto``."""
    pin_tasks(moto_url)
    if how == "auto":
        how = "terraform" if terraform.available() else "python"
    if how == "terraform":
        names = apply_infra(moto_url, workdir / "infra", timings, say)
    else:
        names = create(_session(env, moto_url), timings)
        say("resources created from Python (no Terraform CLI or provider mirror here)")
    say(
        f"bucket s3://{names.bucket}, lease table {names.table}, "
        f"cluster {names.cluster}, task definition {names.task_definition}"
    )
    return names


def apply_infra(
    moto_url: str, workdir: Path, timings: Timings, say: Callable[[str], None]
) -> Names:
    """infra/ itself, applied by Terraform to the moto server; the names it gave things."""
    variables = _terraform_variables(moto_url, timings)
    out = terraform.apply(moto_url, workdir, REGION, variables, say)
    _allow_plain_http(moto_url, out["bucket"])
    return Names(
        bucket=out["bucket"], key=out["db_key"], table=out["lease_table"],
        lease_name=out["lease_name"], cluster=out["cluster"],
        task_definition=out["task_definition"], container="app",
        subnets=tuple(variables["subnet_ids"]), security_groups=(out["task_security_group"],),
        app_port=timings.app_port,
    )


def _terraform_variables(moto_url: str, timings: Timings) -> dict[str, Any]:
    ec2 = _moto_client("ec2", moto_url)
    vpc = ec2.describe_vpcs(Filters=[{"Name": "isDefault", "Values": ["true"]}])["Vpcs"][0]
    ec2.modify_vpc_attribute(VpcId=vpc["VpcId"], EnableDnsHostnames={"Value": True})
    subnets = ec2.describe_subnets(Filters=[{"Name": "vpc-id", "Values": [vpc["VpcId"]]}])
    return {
        "stage": "local",
        "image": "wakeful-local/app:latest",
        "vpc_id": vpc["VpcId"],
        "subnet_ids": [s["SubnetId"] for s in subnets["Subnets"]][:2],
        "app_ingress_cidr_blocks": [vpc["CidrBlock"]],
        "app_port": timings.app_port,
        "sync_interval_seconds": int(timings.sync_interval),
        "lease_ttl_seconds": int(timings.lease_ttl),
        "idle_timeout_seconds": int(timings.idle_timeout),
        "enable_api": False,
        "deletion_protection": False,
        "bucket_force_destroy": True,
        "noncurrent_versions_to_keep": 0,
    }


def _allow_plain_http(moto_url: str, bucket: str) -> None:
    """moto serves plain HTTP, which the bucket's TLS-only policy refuses (moto enforces it)."""
    _moto_client("s3", moto_url).delete_bucket_policy(Bucket=bucket)


def _moto_client(service: str, moto_url: str) -> Any:
    return boto3.client(
        service, endpoint_url=moto_url, region_name=REGION,
        aws_access_key_id="local", aws_secret_access_key="local",
    )


def create(session: Any, timings: Timings) -> Names:
    """Everything infra/ creates that the loop uses, with the names infra/ gives them."""
    bucket = f"{PREFIX}-db-{ACCOUNT}"
    table = f"{PREFIX}-lease"
    key = "db.sqlite3"
    s3 = session.client("s3")
    s3.create_bucket(Bucket=bucket)
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    session.client("dynamodb").create_table(
        TableName=table,
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    ec2 = session.client("ec2")
    vpc = ec2.describe_vpcs(Filters=[{"Name": "isDefault", "Values": ["true"]}])["Vpcs"][0]
    # Fargate tasks need DNS hostnames in their VPC (moto too, to describe the task's ENI).
    ec2.modify_vpc_attribute(VpcId=vpc["VpcId"], EnableDnsHostnames={"Value": True})
    subnets = ec2.describe_subnets(
        Filters=[{"Name": "vpc-id", "Values": [vpc["VpcId"]]}]
    )["Subnets"]
    group = ec2.create_security_group(
        GroupName=f"{PREFIX}-task", Description="wakeful task", VpcId=vpc["VpcId"]
    )["GroupId"]
    ecs = session.client("ecs")
    ecs.create_cluster(clusterName=PREFIX)
    lease_name = f"{bucket}/{key}"
    environment = {
        "DB_S3_BUCKET": bucket,
        "DB_S3_KEY": key,
        "DB_LOCAL_PATH": "/app/db.sqlite3",
        "WAKEFUL_LEASE_TABLE": table,
        "WAKEFUL_LEASE_NAME": lease_name,
        "WAKEFUL_SYNC_INTERVAL": f"{timings.sync_interval:g}",
        "WAKEFUL_LEASE_TTL": f"{timings.lease_ttl:g}",
        "WAKEFUL_IDLE_TIMEOUT": f"{timings.idle_timeout:g}",
        "WAKEFUL_APP_PORT": str(timings.app_port),
        "WAKEFUL_STOP_GRACE": "10",
        "WAKEFUL_STOP_BUDGET": "100",
        "WAKEFUL_BACKUP_RETENTION": "30",
        "AWS_REGION": REGION,
    }
    ecs.register_task_definition(
        family=PREFIX,
        networkMode="awsvpc",
        requiresCompatibilities=["FARGATE"],
        cpu="256",
        memory="512",
        containerDefinitions=[
            {
                "name": "app",
                "image": "wakeful-local/app:latest",
                "memory": 512,
                "essential": True,
                "stopTimeout": 120,
                "portMappings": [{"containerPort": timings.app_port}],
                "environment": [{"name": k, "value": v} for k, v in environment.items()],
            }
        ],
    )
    return Names(
        bucket=bucket, key=key, table=table, lease_name=lease_name, cluster=PREFIX,
        task_definition=PREFIX, container="app",
        subnets=tuple(s["SubnetId"] for s in subnets[:2]), security_groups=(group,),
        app_port=timings.app_port,
    )


def pin_tasks(moto_url: str) -> None:
    """Keep moto's tasks where they are until StopTask, as a real task stays RUNNING."""
    body = json.dumps(
        {"model_name": "ecs::task", "transition": {"progression": "manual", "times": 10**9}}
    ).encode()
    request = urllib.request.Request(
        f"{moto_url}/moto-api/state-manager/set-transition", data=body, method="POST"
    )
    urllib.request.urlopen(request, timeout=10).close()


def _session(env: dict[str, str], moto_url: str) -> Any:
    return _EndpointSession(
        boto3.session.Session(
            aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
            region_name=REGION,
        ),
        moto_url,
    )


class _EndpointSession:
    def __init__(self, session: Any, url: str) -> None:
        self._session = session
        self._url = url

    def client(self, service: str) -> Any:
        return self._session.client(service, endpoint_url=self._url)
