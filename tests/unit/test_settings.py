"""Settings: defaults, and every invalid value is a one-line error naming its variable."""

from __future__ import annotations

import dataclasses
import os

import pytest

from chalicelib.errors import ConfigError
from chalicelib.settings import (
    AgentSettings,
    ControlPlaneSettings,
    DatabaseLocation,
    default_lease_name,
)

MINIMAL = {"DB_S3_BUCKET": "my-db-bucket", "WAKEFUL_LEASE_TABLE": "leases"}
CONTROL = {**MINIMAL, "WAKEFUL_CLUSTER": "wakeful", "WAKEFUL_TASK_DEFINITION": "app:3"}


def agent(**overrides: str) -> AgentSettings:
    return AgentSettings.from_env({**MINIMAL, **overrides})


def refused(build, env: dict[str, str]) -> ConfigError:
    with pytest.raises(ConfigError) as error:
        build(env)
    message = str(error.value)
    assert "\n" not in message, "the error must be one line"
    return error.value


# -- defaults -------------------------------------------------------------------------------


def test_agent_defaults():
    settings = AgentSettings.from_env(MINIMAL)

    assert settings.location == DatabaseLocation(
        bucket="my-db-bucket",
        key="db.sqlite3",
        lease_table="leases",
        lease_name="my-db-bucket/db.sqlite3",
        region=None,
        backup_retention=30,
    )
    assert settings.local_path == "/app/db.sqlite3"
    assert settings.sync_interval == 1.0
    assert settings.lease_ttl == 30.0
    assert settings.idle_timeout == 0.0
    assert settings.reservation_id is None
    assert settings.acquire_timeout == 60.0  # two TTLs
    assert settings.stop_grace == 10.0
    assert settings.stop_budget == 100.0
    assert settings.app_port is None
    # The whole stop must fit in what Fargate allows (stopTimeout <= 120 s).
    assert settings.stop_grace + settings.stop_budget <= 120


def test_agent_values_are_read():
    settings = AgentSettings.from_env(
        {
            **MINIMAL,
            "DB_S3_KEY": "prod/app.sqlite3",
            "DB_LOCAL_PATH": "data/db.sqlite3",
            "WAKEFUL_LEASE_NAME": "app-lease",
            "WAKEFUL_SYNC_INTERVAL": "0",
            "WAKEFUL_LEASE_TTL": "12.5",
            "WAKEFUL_IDLE_TIMEOUT": "900",
            "WAKEFUL_RESERVATION_ID": "res-123",
            "WAKEFUL_STOP_GRACE": "5",
            "WAKEFUL_STOP_BUDGET": "60",
            "WAKEFUL_APP_PORT": "8080",
            "WAKEFUL_BACKUP_RETENTION": "7",
            "AWS_REGION": "eu-west-1",
            "AWS_ENDPOINT_URL": "http://127.0.0.1:5000",
        }
    )
    assert settings.location.key == "prod/app.sqlite3"
    assert settings.location.lease_name == "app-lease"
    assert settings.location.region == "eu-west-1"
    assert settings.location.backup_retention == 7
    assert settings.local_path == os.path.abspath("data/db.sqlite3")
    assert settings.sync_interval == 0.0  # only at shutdown
    assert settings.lease_ttl == 12.5
    assert settings.acquire_timeout == 25.0
    assert settings.idle_timeout == 900.0
    assert settings.reservation_id == "res-123"
    assert (settings.stop_grace, settings.stop_budget) == (5.0, 60.0)
    assert settings.app_port == 8080


def test_default_lease_name_derives_from_bucket_and_key():
    assert default_lease_name("b-1", "x/db.sqlite3") == "b-1/x/db.sqlite3"
    assert agent(DB_S3_KEY="x/db.sqlite3").location.lease_name == "my-db-bucket/x/db.sqlite3"


def test_region_falls_back_to_aws_default_region():
    assert agent(AWS_DEFAULT_REGION="us-west-2").location.region == "us-west-2"
    assert agent(AWS_DEFAULT_REGION="us-west-2", AWS_REGION="eu-central-1").location.region == (
        "eu-central-1"
    )


def test_blank_values_count_as_unset():
    settings = agent(DB_S3_KEY="  ", WAKEFUL_SYNC_INTERVAL="", DB_LOCAL_PATH=" ")
    assert settings.location.key == "db.sqlite3"
    assert settings.sync_interval == 1.0
    assert settings.local_path == "/app/db.sqlite3"


def test_values_are_trimmed():
    settings = agent(DB_S3_BUCKET=" my-db-bucket ", WAKEFUL_LEASE_TTL=" 9 ")
    assert settings.location.bucket == "my-db-bucket"
    assert settings.lease_ttl == 9.0


def test_settings_are_frozen():
    settings = AgentSettings.from_env(MINIMAL)
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.lease_ttl = 1.0  # type: ignore[misc]


def test_reads_os_environ_by_default(monkeypatch):
    monkeypatch.setenv("DB_S3_BUCKET", "from-environ")
    monkeypatch.setenv("WAKEFUL_LEASE_TABLE", "t")
    assert AgentSettings.from_env().location.bucket == "from-environ"


# -- invalid values -------------------------------------------------------------------------

AGENT_INVALID = [
    ("DB_S3_BUCKET", None, "required"),
    ("DB_S3_BUCKET", "   ", "required"),
    ("DB_S3_BUCKET", "My_Bucket", "bucket name"),
    ("DB_S3_BUCKET", "s3://my-db-bucket", "bucket name"),
    ("DB_S3_BUCKET", "x", "bucket name"),
    ("DB_S3_KEY", "/db.sqlite3", "object key"),
    ("DB_S3_KEY", "backups/", "object key"),
    ("WAKEFUL_LEASE_TABLE", None, "required"),
    ("DB_LOCAL_PATH", "/app/", "file path"),
    ("WAKEFUL_SYNC_INTERVAL", "abc", "number"),
    ("WAKEFUL_SYNC_INTERVAL", "-1", ">= 0"),
    ("WAKEFUL_SYNC_INTERVAL", "nan", ">= 0"),
    ("WAKEFUL_SYNC_INTERVAL", "60s", "number"),
    ("WAKEFUL_LEASE_TTL", "0.5", ">= 1"),
    ("WAKEFUL_LEASE_TTL", "ten", "number"),
    ("WAKEFUL_IDLE_TIMEOUT", "-5", ">= 0"),
    ("WAKEFUL_IDLE_TIMEOUT", "15m", "number"),
    ("WAKEFUL_ACQUIRE_TIMEOUT", "soon", "number"),
    ("WAKEFUL_STOP_GRACE", "-0.1", ">= 0"),
    ("WAKEFUL_STOP_BUDGET", "0", ">= 1"),
    ("WAKEFUL_APP_PORT", "http", "integer"),
    ("WAKEFUL_APP_PORT", "0", ">= 1"),
    ("WAKEFUL_BACKUP_RETENTION", "0", ">= 1"),
    ("WAKEFUL_BACKUP_RETENTION", "2.5", "integer"),
    ("WAKEFUL_BACKUP_RETENTION", "many", "integer"),
    ("WAKEFUL_RETENTION", "7d", "number"),
    ("WAKEFUL_RETENTION", "0.5", ">= 1"),
]


@pytest.mark.parametrize(
    "variable, value, problem",
    AGENT_INVALID,
    ids=[f"{name}={value!r}" for name, value, _ in AGENT_INVALID],
)
def test_agent_invalid_value_names_its_variable(variable, value, problem):
    env = dict(MINIMAL)
    if value is None:
        env.pop(variable, None)
    else:
        env[variable] = value

    error = refused(AgentSettings.from_env, env)

    assert error.variable == variable
    assert str(error).startswith(f"{variable}: ")
    assert problem in str(error)
    if value and value.strip():
        assert repr(value.strip()) in str(error), "the error quotes the bad value"


@pytest.mark.parametrize("variable", ["WAKEFUL_LEASE_TTL", "WAKEFUL_SYNC_INTERVAL"])
def test_infinite_durations_are_refused(variable):
    error = refused(AgentSettings.from_env, {**MINIMAL, variable: "inf"})
    assert error.variable == variable


def test_the_first_problem_is_reported_even_when_several_are_wrong():
    error = refused(
        AgentSettings.from_env,
        {"WAKEFUL_LEASE_TABLE": "t", "WAKEFUL_SYNC_INTERVAL": "abc"},
    )
    assert error.variable == "DB_S3_BUCKET"


# -- the control plane ----------------------------------------------------------------------


def test_control_plane_defaults():
    settings = ControlPlaneSettings.from_env(CONTROL)
    assert settings.cluster == "wakeful"
    assert settings.task_definition == "app:3"
    assert settings.container_name == "app"
    assert settings.subnets == ()
    assert settings.security_groups == ()
    assert settings.assign_public_ip is False
    assert settings.app_port == 8000
    assert settings.start_timeout == 300.0
    assert settings.lease_ttl == 30.0
    assert settings.task_tags == ()
    assert settings.launcher == "ecs"


def test_control_plane_lists_booleans_and_tags():
    settings = ControlPlaneSettings.from_env(
        {
            **CONTROL,
            "WAKEFUL_SUBNETS": "subnet-1, subnet-2,",
            "WAKEFUL_SECURITY_GROUPS": "sg-1",
            "WAKEFUL_ASSIGN_PUBLIC_IP": "ENABLED",
            "WAKEFUL_TASK_TAGS": "team=web, env = prod",
            "WAKEFUL_TASK_LAUNCHER": "Local",
        }
    )
    assert settings.subnets == ("subnet-1", "subnet-2")
    assert settings.security_groups == ("sg-1",)
    assert settings.assign_public_ip is True
    assert settings.task_tags == (("team", "web"), ("env", "prod"))
    assert settings.launcher == "local"


CONTROL_INVALID = [
    ("WAKEFUL_CLUSTER", None, "required"),
    ("WAKEFUL_TASK_DEFINITION", None, "required"),
    ("WAKEFUL_ASSIGN_PUBLIC_IP", "maybe", "true or false"),
    ("WAKEFUL_APP_PORT", "eighty", "integer"),
    ("WAKEFUL_START_TIMEOUT", "0", ">= 1"),
    ("WAKEFUL_LEASE_TTL", "x", "number"),
    ("WAKEFUL_TASK_TAGS", "team", "key=value"),
    ("WAKEFUL_TASK_TAGS", "=web", "key=value"),
    ("WAKEFUL_TASK_LAUNCHER", "k8s", "ecs or local"),
    ("DB_S3_BUCKET", None, "required"),
]


@pytest.mark.parametrize(
    "variable, value, problem",
    CONTROL_INVALID,
    ids=[f"{name}={value!r}" for name, value, _ in CONTROL_INVALID],
)
def test_control_plane_invalid_value_names_its_variable(variable, value, problem):
    env = dict(CONTROL)
    if value is None:
        env.pop(variable, None)
    else:
        env[variable] = value
    error = refused(ControlPlaneSettings.from_env, env)
    assert error.variable == variable
    assert problem in str(error)


def test_replication_defaults_to_chain_and_the_whole_file_layout_is_opt_in():
    assert agent().replication == "chain"
    assert agent(WAKEFUL_REPLICATION="snapshot").replication == "snapshot"
    assert agent(WAKEFUL_REPLICATION="Chain").replication == "chain"
    error = refused(AgentSettings.from_env, {**MINIMAL, "WAKEFUL_REPLICATION": "litestream"})
    assert "WAKEFUL_REPLICATION" in str(error)


def test_the_chain_syncs_every_second_by_default_and_snapshots_every_minute():
    assert agent().sync_interval == 1.0
    assert agent(WAKEFUL_REPLICATION="snapshot").sync_interval == 60.0
    assert agent(WAKEFUL_REPLICATION="chain").sync_interval == 1.0
    assert agent(WAKEFUL_REPLICATION="chain", WAKEFUL_SYNC_INTERVAL="5").sync_interval == 5.0


def test_the_point_in_time_window_is_seven_days_by_default_and_read_in_seconds():
    assert agent().retention == 7 * 86400.0
    assert agent().retention_days == 7
    assert agent(WAKEFUL_RETENTION="172800").retention_days == 2
    assert agent(WAKEFUL_RETENTION="3").retention == 3.0
