"""``wakeful lease show`` and ``wakeful lease release``: only a dead holder's lease is freed."""

from __future__ import annotations

import json
import time

import boto3

from chalicelib.lease import FREE, HELD, LeaseTable
from tests.cli.conftest import field, run, woken
from tests.conftest import BUCKET, TABLE
from tests.controlplane.conftest import CLUSTER

LEASE = f"{BUCKET}/db.sqlite3"


def test_lease_show_table_and_json(cli_env, settings, tmp_path):
    task, _ = woken(settings, tmp_path)
    result = run(cli_env, "lease", "show")
    assert result.code == 0, result.err
    assert field(result.out, "name") == LEASE
    assert field(result.out, "table") == TABLE
    assert field(result.out, "state") == HELD
    assert field(result.out, "holder") == task["taskArn"]
    assert field(result.out, "reservation") == task["startedBy"]
    assert field(result.out, "expires").startswith("in ")
    data = json.loads(run(cli_env, "lease", "show", "--json").out)
    assert data["holder"] == task["taskArn"] and data["token"] == 1 and data["state"] == HELD


def test_release_is_refused_while_ecs_runs_the_holder_and_allowed_once_it_stopped(
    cli_env, settings, tmp_path
):
    task, _ = woken(settings, tmp_path)
    arn = task["taskArn"]
    running = run(cli_env, "lease", "release", "--force")
    assert running.code == 3
    assert running.err == (
        f"wakeful: release refused: ECS says the holder task {arn} is RUNNING; "
        "a live holder may still be writing\n"
    )
    boto3.client("ecs").stop_task(cluster=CLUSTER, task=arn, reason="test: the task died")
    unforced = run(cli_env, "lease", "release")
    assert unforced.code == 3
    assert unforced.err.count("\n") == 1
    assert "refused without --force" in unforced.err
    assert "`wakeful lease release --force`" in unforced.err
    table = LeaseTable(TABLE, LEASE)
    assert table.read().holder == arn
    released = run(cli_env, "lease", "release", "--force")
    assert released.code == 0, released.err
    assert f"from {arn} (ECS says task {arn} is STOPPED)" in released.out
    lease = table.read()
    assert lease.state == FREE and lease.token == 1 and lease.last_holder == arn
    again = run(cli_env, "lease", "release", "--force")
    assert again.code == 0 and "FREE: nothing to release" in again.out


def test_release_of_a_holder_that_is_not_a_task_waits_for_expiry(store_env):
    table = LeaseTable(TABLE, LEASE)
    table.acquire("laptop:4242", ttl=60)
    live = run(store_env, "lease", "release", "--force")
    assert live.code == 3
    assert "holder laptop:4242 is not an ECS task and its lease has not expired" in live.err
    assert table.read().holder == "laptop:4242"
    # The holder stopped renewing long ago (its last renewal is two minutes old).
    past = LeaseTable(TABLE, LEASE, clock=lambda: time.time() - 120)
    past.renew("laptop:4242", table.read().token, ttl=1)
    released = run(store_env, "lease", "release", "--force")
    assert released.code == 0, released.err
    assert table.read().state == FREE


def test_release_of_a_task_holder_needs_to_know_the_cluster(store_env):
    table = LeaseTable(TABLE, LEASE)
    arn = "arn:aws:ecs:us-east-1:123456789012:task/0123456789abcdef"  # old short ARN format
    table.acquire(arn, ttl=60, task_arn=arn)
    result = run(store_env, "lease", "release", "--force")
    assert result.code == 3
    assert "no cluster (set WAKEFUL_CLUSTER or pass --cluster)" in result.err
