"""``wakeful wake`` and ``wakeful sleep`` through the control plane API served over HTTP."""

from __future__ import annotations

import io
import json

import boto3

from chalicelib.lease import LeaseTable
from tests.cli.conftest import API_KEY, lines, run, serve_api
from tests.controlplane.agent_double import AgentDouble
from tests.controlplane.conftest import CLUSTER, build_plane, ecs_tasks, event
from wakeful_cli.cli import main


def test_wake_starts_the_backend_then_answers_its_endpoint(api_env, settings, tmp_path):
    first = run(api_env, "wake")
    assert first.code == 0, first.err
    assert first.out.startswith("starting (task arn:aws:ecs:")
    [task] = ecs_tasks()
    # The task's agent boots and takes the lease; ECS reports it RUNNING with its address.
    AgentDouble(settings, task["taskArn"], tmp_path).acquire(task["startedBy"])
    assert build_plane(settings).handle_event(event("task-running.json", task)) == "running"
    again = run(api_env, "wake", "--json")
    assert again.code == 0, again.err
    assert json.loads(again.out) == {
        "state": "running", "endpoint": "http://10.0.0.139:8000", "task_arn": task["taskArn"]
    }
    waited = run(api_env, "wake", "--wait")
    assert waited.code == 0 and waited.out == "http://10.0.0.139:8000\n"
    assert len(ecs_tasks()) == 1


def test_wake_wait_follows_the_start_until_the_endpoint(api_env, settings, tmp_path):
    booted: list[str] = []

    def agent_boots_meanwhile(seconds: float) -> None:
        # Stands in for the time ECS takes: after the first poll the agent is up.
        if not booted:
            [task] = ecs_tasks()
            AgentDouble(settings, task["taskArn"], tmp_path).acquire(task["startedBy"])
            build_plane(settings).handle_event(event("task-running.json", task))
            booted.append(task["taskArn"])

    out, err = io.StringIO(), io.StringIO()
    code = main(["wake", "--wait", "--interval", "0.1"], stdout=out, stderr=err, env=api_env,
                sleep=agent_boots_meanwhile)
    assert code == 0, err.getvalue()
    assert out.getvalue() == "http://10.0.0.139:8000\n"
    assert len(booted) == 1
    # Not a terminal: one plain progress line per change instead of a spinner.
    assert lines(err.getvalue()) == [lines(err.getvalue())[0]]
    assert err.getvalue().startswith("starting: task RUNNING (")
    assert "\r" not in err.getvalue()


def test_wake_wait_times_out_with_a_non_zero_exit(api_env):
    result = run(api_env, "wake", "--wait", "--timeout", "0.6", "--interval", "0.2")
    assert result.code == 1
    assert result.out == ""
    assert "starting: task RUNNING" in result.err
    [error] = [line for line in lines(result.err) if line.startswith("wakeful:")]
    assert "timed out after 0.6s" in error and "still starting" in error


def test_wake_that_ecs_refuses_is_a_failure_with_the_reason(cli_env, control_env, monkeypatch):
    server = serve_api(monkeypatch, {**control_env, "WAKEFUL_TASK_DEFINITION": "no-such-family"})
    try:
        env = {**cli_env, "WAKEFUL_API_URL": server.url, "WAKEFUL_API_KEY": API_KEY}
        result = run(env, "wake", "--wait")
    finally:
        server.stop()
    assert result.code == 1
    assert result.err.count("\n") == 1
    assert "wake failed with HTTP 503" in result.err
    assert "task could not be started" in result.err and "retry after 30s" in result.err
    assert ecs_tasks() == []


def test_wake_needs_the_api_url(cli_env):
    result = run(cli_env, "wake")
    assert result.code == 2
    assert result.err == (
        "wakeful: configuration error: WAKEFUL_API_URL: is required for wake "
        "(set it or pass --api-url)\n"
    )


def test_sleep_stops_the_running_task(api_env, settings, tmp_path):
    assert run(api_env, "sleep").out == "asleep\n"
    run(api_env, "wake")
    [task] = ecs_tasks()
    AgentDouble(settings, task["taskArn"], tmp_path).acquire(task["startedBy"])
    result = run(api_env, "sleep")
    assert result.code == 0, result.err
    assert result.out.startswith(f"stopping {task['taskArn']}")
    [stopped] = boto3.client("ecs").describe_tasks(cluster=CLUSTER,
                                                  tasks=[task["taskArn"]])["tasks"]
    assert stopped["desiredStatus"] == "STOPPED"
    # The lease stays with the task until its agent releases it after the final upload.
    lease = LeaseTable(settings.location.lease_table, settings.location.lease_name).read()
    assert lease.holder == task["taskArn"]
