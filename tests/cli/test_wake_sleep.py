"""``wakeful wake`` and ``wakeful sleep`` through the control plane API served over HTTP."""

from __future__ import annotations

import io
import json

import boto3

from chalicelib.lease import FREE, LeaseTable
from tests.agent_harness import wait_for
from tests.cli.conftest import (
    API_KEY,
    finish,
    lines,
    run,
    run_script,
    serve_api,
    start_script,
    woken,
)
from tests.controlplane.agent_double import AgentDouble
from tests.controlplane.conftest import CLUSTER, build_plane, ecs_tasks, event, lease_table
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


# -- the installed script: a wake after a sleep, and a sleep that waits ---------------------


def until(process, predicate, what: str):
    """Wait for ``predicate`` while the background ``wakeful`` still runs."""

    def check():
        if process.poll() is not None:
            result = finish(process)
            raise AssertionError(f"wakeful exited {result.code} before {what}:\n{result.err}")
        return predicate()

    return wait_for(check, 30.0, what)


def running(settings, workdir) -> tuple[dict, AgentDouble]:
    """A backend that runs: its agent holds the lease and ECS said RUNNING."""
    workdir.mkdir(parents=True, exist_ok=True)
    task, agent = woken(settings, workdir)
    assert build_plane(settings).handle_event(event("task-running.json", task)) == "running"
    agent.write(3)
    return task, agent


def stops_cleanly(settings, task: dict, agent: AgentDouble) -> None:
    """What a task asked to stop does: the final upload, the release, then ECS says STOPPED."""
    agent.upload("shutdown")
    agent.release()
    stopped = event("task-stopped-user-initiated.json", task)
    assert build_plane(settings).handle_event(stopped) == "verified"


def test_wake_wait_right_after_a_sleep_wakes_the_backend_again(api_env, settings, tmp_path):
    old, agent = running(settings, tmp_path / "old")
    table = lease_table(settings)
    assert run_script(api_env, "sleep").code == 0
    woke_before = table.read().last_wake or 0.0

    waiting = start_script(api_env, "wake", "--wait", "--interval", "0.2", "--timeout", "120")
    # The wake found the backend stopping (the lease is still the old task's) ...
    until(waiting, lambda: (table.read().last_wake or 0.0) > woke_before, "the wake")
    # ... which then finishes its final upload and releases: the lease is free again.
    stops_cleanly(settings, old, agent)
    [new] = until(waiting, lambda: [t for t in ecs_tasks() if t["taskArn"] != old["taskArn"]],
                  "a new task started by the waiting wake")
    (tmp_path / "new").mkdir()
    AgentDouble(settings, new["taskArn"], tmp_path / "new").acquire(new["startedBy"])
    assert build_plane(settings).handle_event(event("task-running.json", new)) == "running"

    result = finish(waiting)
    assert result.code == 0, result.err
    assert result.out == "http://10.0.0.139:8000\n"
    assert table.read().holder == new["taskArn"]
    assert "stopping" in result.err


def test_wake_wait_gives_up_when_the_task_it_started_fails(api_env, settings, tmp_path):
    waiting = start_script(api_env, "wake", "--wait", "--interval", "0.2", "--timeout", "120")
    [task] = until(waiting, ecs_tasks, "the task the wake started")
    failed = event("task-failed-to-start.json", task)
    assert build_plane(settings).handle_event(failed) == "failed_to_start"
    result = finish(waiting)
    assert result.code == 1
    assert result.err.splitlines()[-1].startswith("wakeful: error: the backend did not start: ")
    # No second task was started behind the one that failed.
    assert [t["taskArn"] for t in ecs_tasks()] == [task["taskArn"]]


def test_sleep_wait_returns_once_the_stop_is_verified(api_env, settings, tmp_path):
    task, agent = running(settings, tmp_path)
    sleeping = start_script(api_env, "sleep", "--wait", "--interval", "0.2", "--timeout", "120")
    until(sleeping, lambda: ecs_tasks("STOPPED"), "the stop request")
    stops_cleanly(settings, task, agent)

    result = finish(sleeping)
    assert result.code == 0, result.err
    lease = lease_table(settings).read()
    assert lease.state == FREE
    assert result.out.startswith(f"asleep: {task['taskArn']} stopped; its final upload "
                                 f"(version {lease.last_upload['version_id']}, token "
                                 f"{lease.token}) is verified")


def test_sleep_wait_fails_when_the_stop_was_unsynced(api_env, settings, tmp_path):
    task, _agent = running(settings, tmp_path)
    sleeping = start_script(api_env, "--json", "sleep", "--wait", "--interval", "0.2")
    until(sleeping, lambda: ecs_tasks("STOPPED"), "the stop request")
    # The task was killed before its final upload.
    killed = event("task-stopped-exit-137.json", task)
    assert build_plane(settings).handle_event(killed) == "unsynced"

    result = finish(sleeping)
    assert result.code == 1
    assert json.loads(result.out)["stops"][task["taskArn"]] == "unsynced"
    assert "stopped without its final upload" in result.err


def test_sleep_wait_when_already_asleep(api_env):
    result = run_script(api_env, "sleep", "--wait")
    assert result.code == 0, result.err
    assert result.out == "asleep\n"


def test_sleep_wait_times_out_while_the_task_still_uploads(api_env, settings, tmp_path):
    task, _agent = running(settings, tmp_path)
    result = run_script(api_env, "sleep", "--wait", "--interval", "0.2", "--timeout", "1")
    assert result.code == 1
    [error] = [line for line in lines(result.err) if line.startswith("wakeful:")]
    assert "timed out after 1.0s" in error and task["taskArn"] in error
