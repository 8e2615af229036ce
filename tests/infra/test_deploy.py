"""``terraform apply`` of infra/ to a moto server, then the real agent and control plane against
what it created, then ``terraform destroy``.

Excluded from this apply (``enable_api = false``): the REST API, its deployment and stage, the
API key, the usage plan and the API's invoke permission. Chalice emits the API as Swagger 2.0
and moto's API Gateway imports only OpenAPI 3. Everything else is applied as a user would.

Also set for moto only: ``noncurrent_versions_to_keep = 0`` (moto drops
``NewerNoncurrentVersions`` from the lifecycle rule it stores, and the provider then waits for
the rule it wrote), ``deletion_protection = false`` and ``bucket_force_destroy = true`` so the
stack can be destroyed at the end.

The tests run in file order: apply (fixture), inspection, the agent and control plane, then
destroy, which the last test asserts.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import pytest

from tests.infra.harness import ROOT, Terraform, as_list, moto_override, state_resources
from tests.moto_server import MotoServer

pytestmark = pytest.mark.slow

REGION = "us-east-1"
ECR_IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/wakeful-app:test"
SECRET = "arn:aws:secretsmanager:us-east-1:123456789012:secret:app-AbCdEf:SECRET_KEY::"
PARAMETER = "arn:aws:ssm:us-east-1:123456789012:parameter/app/dsn"

AGENT_VARIABLES = {
    "DB_S3_BUCKET",
    "DB_S3_KEY",
    "DB_LOCAL_PATH",
    "WAKEFUL_LEASE_TABLE",
    "WAKEFUL_LEASE_NAME",
    "WAKEFUL_SYNC_INTERVAL",
    "WAKEFUL_LEASE_TTL",
    "WAKEFUL_IDLE_TIMEOUT",
    "WAKEFUL_BACKUP_RETENTION",
    "WAKEFUL_RETENTION",
    "WAKEFUL_STOP_GRACE",
    "WAKEFUL_STOP_BUDGET",
    "WAKEFUL_APP_PORT",
    "AWS_REGION",
    "POWERTOOLS_METRICS_NAMESPACE",
}
CONTROL_PLANE_VARIABLES = {
    "DB_S3_BUCKET",
    "DB_S3_KEY",
    "WAKEFUL_LEASE_TABLE",
    "WAKEFUL_LEASE_NAME",
    "WAKEFUL_CLUSTER",
    "WAKEFUL_TASK_DEFINITION",
    "WAKEFUL_CONTAINER_NAME",
    "WAKEFUL_SUBNETS",
    "WAKEFUL_SECURITY_GROUPS",
    "WAKEFUL_ASSIGN_PUBLIC_IP",
    "WAKEFUL_APP_PORT",
    "WAKEFUL_START_TIMEOUT",
    "WAKEFUL_LEASE_TTL",
    "WAKEFUL_TASK_TAGS",
    "WAKEFUL_TASK_LAUNCHER",
    "POWERTOOLS_METRICS_NAMESPACE",
}

# Allow statements whose Resource may be "*", and why (mirrors the comment in infra/iam.tf).
WILDCARD_RESOURCE_ALLOWED = {
    # GetAuthorizationToken has no resource type: AWS accepts only "*".
    "ecr:GetAuthorizationToken": None,
    # ListTasks is authorised against container instances, which Fargate does not have;
    # the ecs:cluster condition is what scopes it, so it must be present.
    "ecs:ListTasks": "ecs:cluster",
    # The front door runs in the VPC: Lambda describes its network interfaces and subnets,
    # and EC2's Describe calls accept only "*".
    "ec2:DescribeNetworkInterfaces": None,
    "ec2:DescribeSubnets": None,
}


@dataclass
class Stack:
    tf: Terraform
    moto_url: str
    outputs: dict[str, Any]
    state: dict[str, Any]
    destroyed: bool = False
    subnets: list[str] = field(default_factory=list)

    def client(self, service: str) -> Any:
        return boto3.client(
            service,
            endpoint_url=self.moto_url,
            region_name=REGION,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )

    def aws_env(self) -> dict[str, str]:
        return {
            "AWS_ENDPOINT_URL": self.moto_url,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_REGION": REGION,
            "AWS_DEFAULT_REGION": REGION,
        }

    def resources(self, kind: str) -> list[dict[str, Any]]:
        return [r for r in state_resources(self.state) if r["type"] == kind]


@pytest.fixture(scope="module")
def moto() -> Iterator[MotoServer]:
    server = MotoServer().start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def stack(
    tmp_path_factory: pytest.TempPathFactory, terraform: Terraform, moto: MotoServer
) -> Iterator[Stack]:
    # A copy of the initialised folder of its own, so the moto override, the variables and
    # the state never reach the folder that fmt, validate and checkov look at.
    workdir = tmp_path_factory.mktemp("deploy") / "infra"
    shutil.copytree(terraform.workdir, workdir, ignore=shutil.ignore_patterns("*.tfstate*"))
    tf = Terraform(terraform.binary, workdir, terraform.env)

    probe = Stack(tf, moto.url, {}, {})
    ec2 = probe.client("ec2")
    vpc = ec2.describe_vpcs(Filters=[{"Name": "isDefault", "Values": ["true"]}])["Vpcs"][0]
    subnets = [
        s["SubnetId"]
        for s in ec2.describe_subnets(Filters=[{"Name": "vpc-id", "Values": [vpc["VpcId"]]}])[
            "Subnets"
        ]
    ][:2]

    (workdir / "moto_override.tf").write_text(moto_override(moto.url, REGION))
    variables = {
        "image": ECR_IMAGE,
        "vpc_id": vpc["VpcId"],
        "subnet_ids": subnets,
        "app_ingress_cidr_blocks": [vpc["CidrBlock"]],
        "enable_api": False,
        "deletion_protection": False,
        "bucket_force_destroy": True,
        "noncurrent_versions_to_keep": 0,
        "alarm_email": "ops@example.com",
        "task_tags": {"team": "web"},
        "app_environment": {"DJANGO_SETTINGS_MODULE": "config.settings", "DB_S3_KEY": "ignored"},
        "app_secrets": {"SECRET_KEY": SECRET, "DATABASE_DSN": PARAMETER},
    }
    (workdir / "moto.auto.tfvars.json").write_text(json.dumps(variables))

    tf.run("apply", "-auto-approve", "-no-color", "-parallelism=20")
    deployed = Stack(tf, moto.url, tf.outputs(), tf.json("show", "-json"), subnets=subnets)
    yield deployed
    if not deployed.destroyed:
        tf.run("destroy", "-auto-approve", "-no-color", "-refresh=false", "-parallelism=20")


# ---------------------------------------------------------------------------
# What apply created
# ---------------------------------------------------------------------------


def test_bucket_is_versioned_encrypted_private_and_tls_only(stack: Stack) -> None:
    s3 = stack.client("s3")
    bucket = stack.outputs["bucket"]
    assert s3.get_bucket_versioning(Bucket=bucket)["Status"] == "Enabled"
    rule = s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]["Rules"][0]
    assert rule["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
    block = s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"]
    assert all(block.values()) and len(block) == 4
    policy = json.loads(s3.get_bucket_policy(Bucket=bucket)["Policy"])
    deny = next(s for s in policy["Statement"] if s["Effect"] == "Deny")
    assert deny["Condition"]["Bool"]["aws:SecureTransport"] == "false"
    rules = {r["ID"]: r for r in s3.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]}
    assert rules["expire-backups"]["Filter"]["Prefix"] == "db.sqlite3.backup."
    assert rules["expire-backups"]["Expiration"]["Days"] == 90
    assert rules["expire-noncurrent-versions"]["NoncurrentVersionExpiration"]["NoncurrentDays"]
    assert rules["abort-incomplete-multipart-uploads"]["AbortIncompleteMultipartUpload"]
    # Every base a restore point inside the chain's window needs outlives it by a day...
    (container,) = stack.client("ecs").describe_task_definition(
        taskDefinition=stack.outputs["task_definition"]
    )["taskDefinition"]["containerDefinitions"]
    env = {e["name"]: e["value"] for e in container["environment"]}
    window_days = float(env["WAKEFUL_RETENTION"]) / 86400
    noncurrent = rules["expire-noncurrent-versions"]["NoncurrentVersionExpiration"]
    assert noncurrent["NoncurrentDays"] >= window_days + 1
    # ...and no rule expires a current segment by age: the tail must survive any sleep.
    for rule in rules.values():
        if "Days" in rule.get("Expiration", {}):
            assert rule["Filter"]["Prefix"] == "db.sqlite3.backup.", rule


def test_lease_table_keeps_its_items_forever(stack: Stack) -> None:
    dynamodb = stack.client("dynamodb")
    table = dynamodb.describe_table(TableName=stack.outputs["lease_table"])["Table"]
    assert table["KeySchema"] == [{"AttributeName": "pk", "KeyType": "HASH"}]
    assert table["AttributeDefinitions"] == [{"AttributeName": "pk", "AttributeType": "S"}]
    assert table["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
    backups = dynamodb.describe_continuous_backups(TableName=table["TableName"])
    pitr = backups["ContinuousBackupsDescription"]["PointInTimeRecoveryDescription"]
    assert pitr["PointInTimeRecoveryStatus"] == "ENABLED"
    # TTL only on the ledger's purge_at: never on the lease's expiry, whose token must stay.
    ttl = dynamodb.describe_time_to_live(TableName=table["TableName"])["TimeToLiveDescription"]
    assert ttl.get("AttributeName") == "purge_at"
    assert ttl.get("AttributeName") not in ("expires_at", "expiry", "ttl")


def test_task_definition_carries_the_agent_contract(stack: Stack) -> None:
    ecs = stack.client("ecs")
    out = stack.outputs
    definition = ecs.describe_task_definition(taskDefinition=out["task_definition"])[
        "taskDefinition"
    ]
    assert definition["requiresCompatibilities"] == ["FARGATE"]
    assert definition["networkMode"] == "awsvpc"
    assert definition["taskRoleArn"] == out["task_role_arn"]
    assert definition["executionRoleArn"] == out["execution_role_arn"]
    assert out["task_role_arn"] != out["execution_role_arn"]
    (container,) = definition["containerDefinitions"]
    assert container["name"] == "app" and container["image"] == ECR_IMAGE
    assert container["stopTimeout"] == 120
    assert container["logConfiguration"]["logDriver"] == "awslogs"
    assert container["logConfiguration"]["options"]["awslogs-group"] == out["task_log_group"]
    env = {e["name"]: e["value"] for e in container["environment"]}
    assert set(env) >= AGENT_VARIABLES
    assert env["DB_S3_BUCKET"] == out["bucket"]
    assert env["DB_S3_KEY"] == out["db_key"] == "db.sqlite3"  # app_environment cannot override
    assert env["WAKEFUL_LEASE_TABLE"] == out["lease_table"]
    assert env["WAKEFUL_LEASE_NAME"] == out["lease_name"] == f"{out['bucket']}/db.sqlite3"
    assert env["DJANGO_SETTINGS_MODULE"] == "config.settings"
    # The final upload must fit in the 120 s ECS gives between SIGTERM and SIGKILL.
    assert float(env["WAKEFUL_STOP_BUDGET"]) < container["stopTimeout"]
    # The container health check asks what the agent's readiness asks: does the app answer?
    check = container["healthCheck"]
    assert check["command"][0] == "CMD-SHELL" and "create_connection" in check["command"][1]
    assert f'"127.0.0.1", {env["WAKEFUL_APP_PORT"]})' in check["command"][1]
    assert 0 < check["startPeriod"] <= 300
    secrets = {s["name"]: s["valueFrom"] for s in container["secrets"]}
    assert secrets == {"SECRET_KEY": SECRET, "DATABASE_DSN": PARAMETER}
    cluster = ecs.describe_clusters(clusters=[out["cluster"]], include=["SETTINGS"])["clusters"]
    assert {"name": "containerInsights", "value": "enabled"} in cluster[0]["settings"]


def test_control_plane_lambdas_rules_and_schedule(stack: Stack) -> None:
    out = stack.outputs
    functions = out["control_plane_functions"]
    assert set(functions) == {"api_handler", "on_task_state_change", "reconcile"}
    lam = stack.client("lambda")
    for name in functions.values():
        config = lam.get_function_configuration(FunctionName=name)
        assert config["Role"] == out["control_plane_role_arn"]
        env = config["Environment"]["Variables"]
        assert set(env) >= CONTROL_PLANE_VARIABLES
        assert env["WAKEFUL_CLUSTER"] == out["cluster_arn"]
        assert env["WAKEFUL_TASK_DEFINITION"] == out["task_definition"]
        assert env["WAKEFUL_SUBNETS"] == ",".join(stack.subnets)
        assert env["WAKEFUL_SECURITY_GROUPS"] == out["task_security_group"]
        assert env["WAKEFUL_TASK_TAGS"] == "app=wakeful,stage=dev,team=web"
    events = stack.client("events")
    rules = {r["Name"]: r for r in events.list_rules(NamePrefix="wakeful-dev-")["Rules"]}
    pattern = json.loads(rules["wakeful-dev-on_task_state_change"]["EventPattern"])
    assert pattern["source"] == ["aws.ecs"]
    assert pattern["detail-type"] == ["ECS Task State Change"]
    assert pattern["detail"]["clusterArn"] == [out["cluster_arn"]]
    assert rules["wakeful-dev-reconcile"]["ScheduleExpression"].startswith("rate(")
    for rule, handler in (
        ("wakeful-dev-on_task_state_change", "on_task_state_change"),
        ("wakeful-dev-reconcile", "reconcile"),
    ):
        (target,) = events.list_targets_by_rule(Rule=rule)["Targets"]
        assert target["Arn"].endswith(f":function:{functions[handler]}")
    # enable_api = false: null outputs, which `terraform output -json` leaves out.
    assert out.get("api_url") is None and out.get("api_key_id") is None


def test_unsynced_stop_alarm_pages_the_topic(stack: Stack) -> None:
    out = stack.outputs
    cloudwatch = stack.client("cloudwatch")
    alarms = {
        a["AlarmName"]: a
        for a in cloudwatch.describe_alarms(AlarmNamePrefix="wakeful-dev-")["MetricAlarms"]
    }
    unsynced = alarms["wakeful-dev-unsynced-stop"]
    assert unsynced["AlarmActions"] == [out["alarm_topic_arn"]]
    assert unsynced["Threshold"] == 1
    assert unsynced["ComparisonOperator"] == "GreaterThanOrEqualToThreshold"
    # Its own stage's namespace only: another stage's unsynced stops never page this one.
    assert unsynced["Metrics"][0]["Expression"] == 'SELECT SUM(UnsyncedStop) FROM "wakeful-dev"'
    assert {f"wakeful-dev-{h}-errors" for h in out["control_plane_functions"]} <= set(alarms)
    subscriptions = stack.client("sns").list_subscriptions_by_topic(
        TopicArn=out["alarm_topic_arn"]
    )["Subscriptions"]
    assert [(s["Protocol"], s["Endpoint"]) for s in subscriptions] == [("email", "ops@example.com")]
    body = json.loads(cloudwatch.get_dashboard(DashboardName=out["dashboard"])["DashboardBody"])
    shown = json.dumps(body)
    for metric in ("Wake", "TaskStarted", "TaskStopped", "SyncDuration", "DatabaseSize"):
        assert metric in shown
    assert "VerifiedStop" in shown and "UnsyncedStop" in shown


def test_a_task_event_that_fails_every_retry_goes_to_a_queue_that_pages(stack: Stack) -> None:
    out = stack.outputs
    sqs = stack.client("sqs")
    queue = sqs.get_queue_attributes(
        QueueUrl=out["failed_task_events_queue"], AttributeNames=["QueueArn"]
    )["Attributes"]["QueueArn"]
    lam = stack.client("lambda")
    config = lam.get_function_event_invoke_config(
        FunctionName=out["control_plane_functions"]["on_task_state_change"]
    )
    assert config["MaximumRetryAttempts"] == 2
    assert config["DestinationConfig"]["OnFailure"]["Destination"] == queue
    alarms = stack.client("cloudwatch").describe_alarms(
        AlarmNames=["wakeful-dev-failed-task-events"]
    )["MetricAlarms"]
    [alarm] = alarms
    assert alarm["Namespace"] == "AWS/SQS"
    assert alarm["MetricName"] == "ApproximateNumberOfMessagesVisible"
    assert alarm["Dimensions"] == [{"Name": "QueueName", "Value": queue.rsplit(":", 1)[-1]}]
    assert alarm["Threshold"] == 1 and alarm["AlarmActions"] == [out["alarm_topic_arn"]]
    # Lambda sends to the destination as the function's role: it may send there, and only there.
    grants = _grants(_role_policies(stack)["wakeful-dev-control-plane"])
    assert grants["sqs:SendMessage"] == {queue}


# ---------------------------------------------------------------------------
# IAM: rendered policies, no wildcard beyond what AWS requires
# ---------------------------------------------------------------------------


def _role_policies(stack: Stack) -> dict[str, list[dict[str, Any]]]:
    policies = {}
    for resource in stack.resources("aws_iam_role_policy"):
        document = json.loads(resource["values"]["policy"])
        policies[resource["values"]["role"]] = as_statement_list(document)
    return policies


def as_statement_list(document: dict[str, Any]) -> list[dict[str, Any]]:
    statements = document["Statement"]
    return [statements] if isinstance(statements, dict) else statements


def test_iam_policies_name_no_wildcard_beyond_what_aws_requires(stack: Stack) -> None:
    policies = _role_policies(stack)
    assert set(policies) == {
        "wakeful-dev-execution",
        "wakeful-dev-task",
        "wakeful-dev-control-plane",
        "wakeful-dev-front-door",
    }
    for role, statements in policies.items():
        for statement in statements:
            assert statement["Effect"] == "Allow", (role, statement)
            actions = as_list(statement["Action"])
            resources = as_list(statement["Resource"])
            assert "NotAction" not in statement and "NotResource" not in statement
            for action in actions:
                verb = action.partition(":")[2]
                assert "*" not in verb and action != "*", (role, action)
            if "*" in resources:
                assert resources == ["*"], (role, statement)
                for action in actions:
                    assert action in WILDCARD_RESOURCE_ALLOWED, (role, action)
                    key = WILDCARD_RESOURCE_ALLOWED[action]
                    if key:
                        conditions = statement.get("Condition", {})
                        assert any(key in c for c in conditions.values()), (role, action)
            for resource in resources:
                # A pattern may end in "*" inside one key, family or cluster, never span one.
                assert resource == "*" or not resource.endswith(":*:*"), resource
    # Trust: each role is assumable by exactly its service.
    principals = {
        r["values"]["name"]: json.loads(r["values"]["assume_role_policy"])["Statement"][0][
            "Principal"
        ]["Service"]
        for r in stack.resources("aws_iam_role")
    }
    assert principals == {
        "wakeful-dev-execution": "ecs-tasks.amazonaws.com",
        "wakeful-dev-task": "ecs-tasks.amazonaws.com",
        "wakeful-dev-control-plane": "lambda.amazonaws.com",
        "wakeful-dev-front-door": "lambda.amazonaws.com",
    }


def _grants(statements: list[dict[str, Any]]) -> dict[str, set[str]]:
    grants: dict[str, set[str]] = {}
    for statement in statements:
        for action in as_list(statement["Action"]):
            grants.setdefault(action, set()).update(as_list(statement["Resource"]))
    return grants


def test_task_role_reaches_only_the_database_key_its_backups_and_the_lease(stack: Stack) -> None:
    out = stack.outputs
    grants = _grants(_role_policies(stack)["wakeful-dev-task"])
    bucket_arn = f"arn:aws:s3:::{out['bucket']}"
    key, backups = f"{bucket_arn}/db.sqlite3", f"{bucket_arn}/db.sqlite3.backup.*"
    chain = f"{bucket_arn}/db.sqlite3.wakeful/*"
    table_arn = stack.resources("aws_dynamodb_table")[0]["values"]["arn"]
    assert grants == {
        "dynamodb:GetItem": {table_arn},
        "dynamodb:PutItem": {table_arn},
        "dynamodb:UpdateItem": {table_arn},
        "s3:ListBucket": {bucket_arn},
        "s3:ListBucketVersions": {bucket_arn},
        "s3:GetObject": {key, backups, chain},
        "s3:GetObjectVersion": {key, backups},
        "s3:PutObject": {key, backups, chain},
        "s3:AbortMultipartUpload": {key, backups},
        "s3:ListMultipartUploadParts": {key, backups},
        # Backup and chain retention only: the current database is never deleted.
        "s3:DeleteObject": {backups, chain},
    }
    assert key not in grants["s3:DeleteObject"]


def test_control_plane_role_is_bound_to_this_cluster_family_and_roles(stack: Stack) -> None:
    out = stack.outputs
    statements = _role_policies(stack)["wakeful-dev-control-plane"]
    grants = _grants(statements)
    assert grants["ecs:RunTask"] == {
        f"arn:aws:ecs:{REGION}:123456789012:task-definition/{out['task_family']}:*"
    }
    cluster_tasks = {f"arn:aws:ecs:{REGION}:123456789012:task/{out['cluster']}/*"}
    assert grants["ecs:StopTask"] == grants["ecs:DescribeTasks"] == cluster_tasks
    assert grants["iam:PassRole"] == {out["task_role_arn"], out["execution_role_arn"]}
    for statement in statements:
        if {"ecs:RunTask", "ecs:StopTask", "ecs:ListTasks"} & set(as_list(statement["Action"])):
            assert statement["Condition"]["ArnEquals"]["ecs:cluster"] == out["cluster_arn"]
    assert not any(a.startswith(("s3:Put", "s3:Delete")) for a in grants)
    bucket_arn = f"arn:aws:s3:::{out['bucket']}"
    key, backups = f"{bucket_arn}/db.sqlite3", f"{bucket_arn}/db.sqlite3.backup.*"
    # The chain's manifest and segments are read (a chain-mode stop's proof), never written.
    assert grants["s3:GetObject"] == {key, backups, f"{bucket_arn}/db.sqlite3.wakeful/*"}
    assert grants["s3:GetObjectVersion"] == {key, backups}
    assert "logs:CreateLogGroup" not in grants  # the log groups exist before the functions
    execution = _grants(_role_policies(stack)["wakeful-dev-execution"])
    assert execution["ecr:BatchGetImage"] == {
        "arn:aws:ecr:us-east-1:123456789012:repository/wakeful-app"
    }
    assert execution["secretsmanager:GetSecretValue"] == {SECRET.rsplit(":", 3)[0]}
    assert execution["ssm:GetParameters"] == {PARAMETER}


# ---------------------------------------------------------------------------
# The real agent and control plane against what Terraform created
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def plain_http_allowed(stack: Stack) -> Stack:
    """moto serves plain HTTP, which the bucket's TLS-only policy refuses (moto enforces it).

    Prove the refusal, then lift the policy for the runs below; everything else they use is
    exactly as applied.
    """
    s3 = stack.client("s3")
    bucket = stack.outputs["bucket"]
    with pytest.raises(s3.exceptions.ClientError) as refused:
        s3.put_object(Bucket=bucket, Key="probe", Body=b"over plain HTTP")
    assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    s3.delete_bucket_policy(Bucket=bucket)
    return stack


APP = """
import os, sqlite3
db = sqlite3.connect(os.environ["DB_LOCAL_PATH"])
db.execute("create table if not exists visits (n integer)")
db.execute("insert into visits values (42)")
db.commit()
"""


def test_agent_syncs_through_the_created_bucket_and_lease(
    plain_http_allowed: Stack, tmp_path: Path
) -> None:
    stack = plain_http_allowed
    ecs = stack.client("ecs")
    definition = ecs.describe_task_definition(taskDefinition=stack.outputs["task_definition"])
    (container,) = definition["taskDefinition"]["containerDefinitions"]
    env = {e["name"]: e["value"] for e in container["environment"]}
    # What ECS would give the container, except the path (no /app here) and the endpoint.
    env.update(stack.aws_env(), DB_LOCAL_PATH=str(tmp_path / "db.sqlite3"))
    env.update({k: os.environ[k] for k in ("PATH", "HOME") if k in os.environ})
    result = subprocess.run(
        [sys.executable, "-m", "container", "run", "--", sys.executable, "-c", APP],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr

    out = stack.outputs
    head = stack.client("s3").head_object(Bucket=out["bucket"], Key=out["db_key"])
    assert head["Metadata"].get("wakeful-reason") == "shutdown", head["Metadata"]
    item = stack.client("dynamodb").get_item(
        TableName=out["lease_table"], Key={"pk": {"S": out["lease_name"]}}, ConsistentRead=True
    )["Item"]
    assert item["state"]["S"] == "FREE"
    assert int(item["token"]["N"]) == 1


def test_control_plane_wakes_a_task_on_the_created_cluster(
    plain_http_allowed: Stack, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    stack = plain_http_allowed
    from chalice.test import Client

    import app as control_plane_app

    lam = stack.client("lambda")
    name = stack.outputs["control_plane_functions"]["api_handler"]
    env = lam.get_function_configuration(FunctionName=name)["Environment"]["Variables"]
    # No API in moto, so no API key: the function is given the digest of one to compare with.
    assert env["WAKEFUL_API_KEY_SHA256"] == ""
    digest = hashlib.sha256(b"test").hexdigest()
    for key, value in {**env, **stack.aws_env(), "WAKEFUL_API_KEY_SHA256": digest}.items():
        monkeypatch.setenv(key, value)
    control_plane_app.reset()
    try:
        # A project folder without .chalice/config.json: the test client would otherwise
        # overlay the stage's placeholder variables on the deployed environment.
        with Client(control_plane_app.app, project_dir=str(tmp_path)) as client:
            headers = {"x-api-key": "test", "Content-Type": "application/json"}
            status = client.http.get("/status", headers=headers)
            assert status.status_code == 200, status.body
            woke = client.http.post("/wake", headers=headers, body=b"{}")
            assert woke.status_code == 202, woke.body
    finally:
        control_plane_app.reset()

    ecs = stack.client("ecs")
    tasks = ecs.list_tasks(cluster=stack.outputs["cluster"])["taskArns"]
    assert len(tasks) == 1
    (task,) = ecs.describe_tasks(cluster=stack.outputs["cluster"], tasks=tasks)["tasks"]
    assert task["taskDefinitionArn"] == stack.outputs["task_definition"]
    ecs.stop_task(cluster=stack.outputs["cluster"], task=tasks[0], reason="test done")


# ---------------------------------------------------------------------------
# The front door
# ---------------------------------------------------------------------------


def test_front_door_is_a_public_url_in_the_tasks_vpc(stack: Stack) -> None:
    out = stack.outputs
    lam = stack.client("lambda")
    name = out["front_door_function"]
    config = lam.get_function_configuration(FunctionName=name)
    assert config["Handler"] == "frontdoor.handler.handler"
    assert config["Timeout"] == 30
    env = config["Environment"]["Variables"]
    assert set(env) >= CONTROL_PLANE_VARIABLES  # it wakes with the control plane's code
    assert env["WAKEFUL_FRONT_DOOR_HOLD"] == "20"
    assert env["WAKEFUL_FRONT_DOOR_TIMEOUT"] == "30"
    assert sorted(config["VpcConfig"]["SubnetIds"]) == sorted(stack.subnets)
    (group,) = config["VpcConfig"]["SecurityGroupIds"]
    url = lam.get_function_url_config(FunctionName=name)
    assert url["AuthType"] == "NONE" and url["FunctionUrl"] == out["front_door_url"]
    statements = json.loads(lam.get_policy(FunctionName=name)["Policy"])["Statement"]
    actions = {s["Action"]: s for s in statements}
    assert actions["lambda:InvokeFunctionUrl"]["Principal"] in ("*", {"AWS": "*"})
    # Direct invocation only through the URL (the CloudFormation-carried permission).
    assert "lambda:InvokeFunction" in actions

    ec2 = stack.client("ec2")
    task_group = ec2.describe_security_groups(GroupIds=[out["task_security_group"]])
    ingress = task_group["SecurityGroups"][0]["IpPermissions"]
    from_front_door = [
        p for p in ingress if any(u["GroupId"] == group for u in p.get("UserIdGroupPairs", []))
    ]
    assert [(p["FromPort"], p["ToPort"]) for p in from_front_door] == [(8000, 8000)]
    rules = ec2.describe_security_group_rules(
        Filters=[{"Name": "group-id", "Values": [group]}]
    )["SecurityGroupRules"]
    to_app = [r for r in rules if r.get("ReferencedGroupInfo", {}).get("GroupId")
              == out["task_security_group"]]
    assert [(r["IsEgress"], r["FromPort"], r["ToPort"]) for r in to_app] == [(True, 8000, 8000)]

    logs = stack.client("logs").describe_log_groups(logGroupNamePrefix=f"/aws/lambda/{name}")
    assert [g["retentionInDays"] for g in logs["logGroups"]] == [30]
    alarms = {a["AlarmName"]: a for a in stack.client("cloudwatch").describe_alarms(
        AlarmNamePrefix="wakeful-dev-front-door")["MetricAlarms"]}
    errors = alarms["wakeful-dev-front-door-errors"]
    assert errors["MetricName"] == "Errors"
    assert errors["Dimensions"] == [{"Name": "FunctionName", "Value": name}]
    assert errors["AlarmActions"] == [out["alarm_topic_arn"]]
    assert "wakeful-dev-front-door-bugs" in alarms


def test_front_door_role_reads_the_lease_and_wakes_and_nothing_more(stack: Stack) -> None:
    out = stack.outputs
    grants = _grants(_role_policies(stack)["wakeful-dev-front-door"])
    table_arn = stack.resources("aws_dynamodb_table")[0]["values"]["arn"]
    cluster_tasks = {f"arn:aws:ecs:{REGION}:123456789012:task/{out['cluster']}/*"}
    assert grants["dynamodb:GetItem"] == grants["dynamodb:UpdateItem"] == {table_arn}
    assert grants["ecs:RunTask"] == {
        f"arn:aws:ecs:{REGION}:123456789012:task-definition/{out['task_family']}:*"
    }
    assert grants["ecs:DescribeTasks"] == grants["ecs:TagResource"] == cluster_tasks
    assert grants["iam:PassRole"] == {out["task_role_arn"], out["execution_role_arn"]}
    # No stopping tasks, no S3, no listing: only what a read and a wake need.
    assert not any(a.startswith(("s3:", "ecs:Stop", "ecs:List", "dynamodb:Put")) for a in grants)
    assert "logs:CreateLogGroup" not in grants
    created = grants["ec2:CreateNetworkInterface"]
    assert {f"arn:aws:ec2:{REGION}:123456789012:subnet/{s}" for s in stack.subnets} <= created


def test_front_door_wakes_a_task_on_the_created_cluster(
    plain_http_allowed: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    stack = plain_http_allowed
    from chalicelib.lease import RESERVED, LeaseTable
    from frontdoor import handler

    lam = stack.client("lambda")
    name = stack.outputs["front_door_function"]
    env = lam.get_function_configuration(FunctionName=name)["Environment"]["Variables"]
    for key, value in {**env, **stack.aws_env(), "WAKEFUL_FRONT_DOOR_HOLD": "0"}.items():
        monkeypatch.setenv(key, value)
    out = stack.outputs
    table = LeaseTable(out["lease_table"], out["lease_name"])
    lease = table.read()
    if lease.state == RESERVED and lease.holder:
        table.force_release(lease.holder)  # the control plane test's wake, never taken
    handler.reset()
    try:
        event = {"version": "2.0", "rawPath": "/", "rawQueryString": "",
                 "headers": {"host": "front.example", "accept": "application/json"},
                 "requestContext": {"http": {"method": "GET", "path": "/",
                                             "sourceIp": "203.0.113.1"}}}
        result = handler.handler(event, None)
    finally:
        handler.reset()
    assert result["statusCode"] == 503, result
    assert json.loads(result["body"])["state"] == "starting"
    reservation = table.read().holder
    ecs = stack.client("ecs")
    tasks = ecs.describe_tasks(
        cluster=out["cluster"], tasks=ecs.list_tasks(cluster=out["cluster"])["taskArns"]
    )["tasks"]
    started = [t for t in tasks if t.get("startedBy") == reservation]
    assert len(started) == 1
    assert started[0]["taskDefinitionArn"] == out["task_definition"]
    ecs.stop_task(cluster=out["cluster"], task=started[0]["taskArn"], reason="test done")


def test_terraform_output_writes_a_profile_the_cli_runs_on(
    plain_http_allowed: Stack, tmp_path: Path
) -> None:
    """``terraform output -raw wakeful_profile > wakeful.toml``, then ``wakeful`` with no
    exports but AWS access (here: moto's endpoint and keys)."""
    stack = plain_http_allowed
    text = stack.tf.run("output", "-raw", "wakeful_profile").stdout
    (tmp_path / "wakeful.toml").write_text(text)
    out = stack.outputs
    profile = tomllib.loads(text)["profile"]["dev"]
    assert profile["bucket"] == out["bucket"] and profile["lease_table"] == out["lease_table"]
    assert profile["agent_log_group"] == out["task_log_group"]
    assert sorted(profile["control_plane_log_groups"]) == sorted(
        [f"/aws/lambda/{name}" for name in out["control_plane_functions"].values()]
        + [f"/aws/lambda/{out['front_door_function']}"]
    )
    assert "api_url" not in profile  # enable_api = false here

    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("WAKEFUL_", "DB_", "AWS_"))}
    env.update(stack.aws_env(), XDG_CONFIG_HOME=str(tmp_path / "no-config"))
    del env["AWS_REGION"], env["AWS_DEFAULT_REGION"]  # the profile's region is used
    wakeful = str(Path(sys.executable).parent / "wakeful")

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([wakeful, *args], cwd=tmp_path, env=env, capture_output=True,
                              text=True, timeout=120, check=False)

    lease = cli("--json", "lease", "show")
    assert lease.returncode == 0, lease.stderr
    assert json.loads(lease.stdout)["name"] == out["lease_name"]
    for args in (["status"], ["backups", "--versions"], ["history"], ["logs", "--since", "1h"]):
        result = cli(*args)
        assert result.returncode == 0, (args, result.stderr)


def test_chalice_config_placeholders_name_what_infra_creates(stack: Stack) -> None:
    """``chalice deploy`` (without Terraform) must point at the resources infra/ would name
    for the same app and stage; only the account id (moto's here) is a placeholder."""
    out = stack.outputs
    config = json.loads((ROOT / ".chalice" / "config.json").read_text())
    roles = {r["values"]["name"] for r in stack.resources("aws_iam_role")}
    for stage in ("dev", "prod"):
        def named(value: str, stage: str = stage) -> str:
            return value.replace("-dev", f"-{stage}")

        env = config["stages"][stage]["environment_variables"]
        assert env["DB_S3_BUCKET"] == named(out["bucket"])
        assert env["WAKEFUL_LEASE_TABLE"] == named(out["lease_table"])
        assert env["WAKEFUL_CLUSTER"] == named(out["cluster"])
        assert env["WAKEFUL_TASK_DEFINITION"] == named(out["task_family"])
        assert env["WAKEFUL_CONTAINER_NAME"] == "app"
        assert env["WAKEFUL_TASK_TAGS"] == f"app=wakeful,stage={stage}"
        policy = (ROOT / ".chalice" / config["stages"][stage]["iam_policy_file"]).read_text()
        assert f"table/{named(out['lease_table'])}\"" in policy
        assert f"s3:::{named(out['bucket'])}/{out['db_key']}\"" in policy
        assert f"task-definition/{named(out['task_family'])}:*" in policy
        passed = {arn.rsplit("/", 1)[-1] for arn in
                  json.loads(policy)["Statement"][-1]["Resource"]}
        assert passed == {named(role) for role in roles
                          if role.endswith(("-task", "-execution"))}


def test_plan_with_the_api_creates_stage_key_and_usage_plan(stack: Stack) -> None:
    """The API cannot be applied to moto (Swagger 2), but its wiring can be planned."""
    stack.tf.run(
        "plan", "-refresh=false", "-no-color", "-var", "enable_api=true", "-out", "api.tfplan"
    )
    plan = stack.tf.json("show", "-json", "api.tfplan")
    created = {
        change["address"]
        for change in plan["resource_changes"]
        if change["change"]["actions"] == ["create"]
    }
    assert {
        "module.control_plane.aws_api_gateway_rest_api.rest_api[0]",
        "module.control_plane.aws_api_gateway_deployment.rest_api[0]",
        "module.control_plane.aws_lambda_permission.rest_api_invoke[0]",
        "aws_api_gateway_stage.api[0]",
        "aws_api_gateway_method_settings.api[0]",
        "aws_api_gateway_api_key.client[0]",
        "aws_api_gateway_usage_plan.client[0]",
        "aws_api_gateway_usage_plan_key.client[0]",
    } <= created
    stage = next(
        c for c in plan["resource_changes"] if c["address"] == "aws_api_gateway_stage.api[0]"
    )
    assert stage["change"]["after"]["stage_name"] == "api"
    # Only additions, and the key's digest in the control plane's environment (the app
    # compares the key too): turning the API on touches nothing else that is deployed.
    changed = {
        c["address"]: c["change"]
        for c in plan["resource_changes"]
        if c["change"]["actions"] not in (["create"], ["no-op"], ["read"])
    }
    functions = {
        f"module.control_plane.aws_lambda_function.{name}"
        for name in stack.outputs["control_plane_functions"]
    }
    assert set(changed) == functions, list(changed)
    for change in changed.values():
        assert change["actions"] == ["update"]
        before, after = change["before"], change["after"]
        assert before["environment"][0]["variables"]["WAKEFUL_API_KEY_SHA256"] == ""
        # The digest of a key not yet created is known only after apply.
        unknown = change["after_unknown"]["environment"][0]["variables"]
        assert unknown is True or unknown["WAKEFUL_API_KEY_SHA256"] is True
        for key in ("handler", "runtime", "role", "memory_size", "timeout", "source_code_hash"):
            assert after[key] == before[key], key


# ---------------------------------------------------------------------------
# Destroy (last: the tests above use the stack)
# ---------------------------------------------------------------------------


def test_destroy_removes_the_stack(stack: Stack) -> None:
    stack.tf.run("destroy", "-auto-approve", "-no-color", "-refresh=false", "-parallelism=20")
    stack.destroyed = True
    assert stack.tf.json("show", "-json").get("values") is None
    out = stack.outputs
    names = [b["Name"] for b in stack.client("s3").list_buckets()["Buckets"]]
    assert out["bucket"] not in names
    assert out["lease_table"] not in stack.client("dynamodb").list_tables()["TableNames"]
    lam = stack.client("lambda")
    left = [f["FunctionName"] for f in lam.list_functions()["Functions"]]
    assert not set(out["control_plane_functions"].values()) & set(left)
    assert out["front_door_function"] not in left
