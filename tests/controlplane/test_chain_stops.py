"""Stops of chain-mode agents (WAKEFUL_REPLICATION=chain), accounted from the chain's layout.

A graceful stop records itself in the manifest (``K.wakeful/manifest.json``, ``stopped``) and
rewrites ``K`` only when the database changed since the last snapshot; a SIGKILL leaves the
task's last segment as the last thing it made durable. Real agent processes (or the replica
store writing a real chain), moto over HTTP, the control plane's own event handler.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import boto3
import pytest

from chalicelib import report
from chalicelib.chain import MAX_PROBES, manifest_key
from chalicelib.chain_store import ChainReader
from chalicelib.control import ControlPlane
from chalicelib.errors import StoreUnavailable
from chalicelib.events import parse_event
from chalicelib.lease import FREE
from chalicelib.store import DatabaseStore
from tests.agent_harness import (
    IDLE,
    AgentProcess,
    child_pid,
    committed_ids,
    current_object,
    env_for,
    lease_item,
    wait_for,
    writer,
)
from tests.conftest import BUCKET, TABLE
from tests.controlplane.agent_double import AgentDouble
from tests.controlplane.conftest import build_plane, ecs_tasks, event
from tests.controlplane.test_end_to_end import task_metadata  # noqa: F401 - a fixture
from tests.fault_proxy import FaultProxy, fault_proxy
from tests.replica.holder import Holder
from wakeful_replica import cadence
from wakeful_replica.chain import Writer
from wakeful_replica.manifest import Manifest
from wakeful_replica.store import ChainStore

KEY = "db.sqlite3"
LEASE = f"{BUCKET}/{KEY}"
MANIFEST = manifest_key(KEY)


def woken(plane: ControlPlane) -> tuple[dict[str, Any], str]:
    """Wake the backend: the task ECS started, and its reservation."""
    reply = plane.wake()
    assert reply.status == 202, reply.body
    [task] = [t for t in ecs_tasks() if t["taskArn"] == reply.body["task_arn"]]
    return task, reply.body["reservation_id"]


def chain_agent(
    agent_env: dict[str, str], metadata: dict[str, Any], tmp_path: Path, task: dict[str, Any],
    reservation: str, name: str, app: list[str] | None = None,
) -> tuple[AgentProcess, Path]:
    """The real agent in chain mode, as the task ECS started for ``reservation``."""
    metadata["TaskARN"] = task["taskArn"]
    env = env_for(agent_env, tmp_path, name, WAKEFUL_REPLICATION="chain",
                  WAKEFUL_SYNC_INTERVAL="0.5", WAKEFUL_RESERVATION_ID=reservation,
                  ECS_CONTAINER_METADATA_URI_V4=metadata["_uri"])
    log = tmp_path / f"{name}.log"
    agent = AgentProcess(env, app or writer(env, log), tmp_path, name)
    agent.wait_running()
    assert lease_item().holder == task["taskArn"]
    return agent, log


def remove_the_lease_record_of_the_stop() -> None:
    """The lease's ``last_upload``, which today's chain agent still writes at its stop as a
    bridge: without it, the chain's own layout is all the control plane has."""
    boto3.client("dynamodb").update_item(
        TableName=TABLE, Key={"pk": {"S": LEASE}}, UpdateExpression="REMOVE last_upload"
    )


def chain_end(store: ChainStore) -> tuple[str, int, float]:
    """Where the chain ends, read with the replica library: generation, position, and the
    capture time of that last segment (its LTX timestamp)."""
    manifest = store.read_manifest()
    assert manifest is not None
    position = manifest.position
    while store.segments.head(manifest.generation, position + 1) is not None:
        position += 1
    found = store.segments.get(manifest.generation, position)
    assert found is not None
    return manifest.generation, position, found.segment.header.timestamp_ms / 1000


def test_a_graceful_stop_that_changed_nothing_is_verified_from_the_manifest_alone(
    settings, agent_env, task_metadata, tmp_path  # noqa: F811 - the fixture
):
    plane = build_plane(settings)
    task_a, reservation_a = woken(plane)
    agent_a, log = chain_agent(agent_env, task_metadata, tmp_path, task_a, reservation_a, "a")
    wait_for(lambda: len(committed_ids(log)) >= 10, what="rows written by A's app")
    agent_a.signal(signal.SIGTERM)
    assert agent_a.wait() == 0, agent_a.output()
    assert plane.handle_event(event("task-stopped-exit-0.json", task_a)) == "verified"
    snapshot_by_a = current_object()

    # B boots on A's chain, its app writes nothing, and it stops: nothing changed since A's
    # snapshot, so K is not rewritten. Only the manifest's stop record names B.
    task_b, reservation_b = woken(plane)
    agent_b, _ = chain_agent(agent_env, task_metadata, tmp_path, task_b, reservation_b, "b",
                             app=[sys.executable, IDLE])
    agent_b.signal(signal.SIGTERM)
    assert agent_b.wait() == 0, agent_b.output()
    after = current_object()
    assert after["VersionId"] == snapshot_by_a["VersionId"]
    assert after["Metadata"]["wakeful-holder"] == task_a["taskArn"]
    manifest = ChainStore(BUCKET, KEY).read_manifest()
    assert manifest is not None and manifest.stopped is not None
    assert manifest.stopped.holder == task_b["taskArn"]
    remove_the_lease_record_of_the_stop()
    assert lease_item().last_upload is None

    assert plane.handle_event(event("task-stopped-user-initiated.json", task_b)) == "verified"
    assert plane.metrics.names().count("VerifiedStop") == 2
    assert "UnsyncedStop" not in plane.metrics.names()
    [(_, proof)] = [(m, x) for m, x in plane.log.at("INFO") if m.startswith("Verified stop")
                    and x["task_arn"] == task_b["taskArn"]]
    assert proof["upload"]["source"] == "manifest"
    assert proof["upload"]["position"] == manifest.stopped.position
    lease = lease_item()
    assert lease.state == FREE and lease.last_unsynced_stop is None

    # ``GET /status`` shows where the chain is and who stopped it last.
    status = plane.status().body
    assert status["chain"]["position"] == manifest.position
    assert status["chain"]["stopped"]["holder"] == task_b["taskArn"]
    assert status["chain"]["stopped"]["position"] == manifest.stopped.position
    # Every door's report says the same (the CLI's --direct, the agent's status).
    direct = report.read_facts(plane.lease, DatabaseStore(BUCKET, KEY))
    assert direct.chain == status["chain"]


def test_a_sigkilled_chain_agent_is_unsynced_with_the_window_from_its_last_segment(
    settings, agent_env, task_metadata, tmp_path  # noqa: F811 - the fixture
):
    plane = build_plane(settings)
    task, reservation = woken(plane)
    agent, _log = chain_agent(agent_env, task_metadata, tmp_path, task, reservation, "a")
    wait_for(lambda: sum(m == "Segments shipped" for m in agent.messages()) >= 3,
             what="three shipped syncs")
    app = child_pid(agent.pid)
    agent.kill()
    if app is not None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(app, signal.SIGKILL)
    generation, position, captured_at = chain_end(ChainStore(BUCKET, KEY))
    killed = event("task-stopped-exit-137.json", task)
    stopped_at = time.time() + 1.0  # ECS notices a little later
    killed["detail"]["stoppedAt"] = stopped_at

    assert plane.handle_event(killed) == "unsynced"
    window = stopped_at - captured_at
    assert plane.metrics.value("UnsyncedWindow") == window
    record = lease_item().last_unsynced_stop
    assert record["window_seconds"] == window
    assert record["last_segment"]["generation"] == generation
    assert record["last_segment"]["position"] == position
    [(message, extra)] = plane.log.at("ERROR")
    assert message.startswith("Unsynced stop")
    assert extra["last_segment"]["position"] == position
    assert lease_item().state == FREE


def test_an_earlier_holders_stop_record_does_not_verify_the_next_task(
    settings, agent_env, task_metadata, tmp_path  # noqa: F811 - the fixture
):
    plane = build_plane(settings)
    task_a, reservation_a = woken(plane)
    one_row = [sys.executable, IDLE, "--one-row", str(tmp_path / "a" / "db.sqlite3")]
    agent_a, _ = chain_agent(agent_env, task_metadata, tmp_path, task_a, reservation_a, "a",
                             app=one_row)
    agent_a.signal(signal.SIGTERM)
    assert agent_a.wait() == 0, agent_a.output()
    store = ChainStore(BUCKET, KEY)
    stopped = store.read_manifest()
    assert stopped is not None and stopped.stopped is not None
    assert stopped.stopped.holder == task_a["taskArn"]

    # B acquires and claims the next position, and dies before its manifest update: the
    # manifest still carries A's clean stop.
    task_b, reservation_b = woken(plane)
    b = AgentDouble(settings, task_b["taskArn"], tmp_path)
    lease = b.acquire(reservation_b)
    last = store.segments.get(stopped.generation, stopped.position)
    assert last is not None
    claimed = store.segments.claim(
        stopped.generation, stopped.position, Writer(b.holder, lease.token),
        last.segment.header.page_size, last.segment.header.commit,
    )
    assert claimed.position == stopped.position + 1 and not claimed.adopted
    assert store.read_manifest() == stopped
    _, _, claimed_at = chain_end(store)
    killed = event("task-stopped-exit-137.json", task_b)
    killed["detail"]["stoppedAt"] = claimed_at + 5

    assert plane.handle_event(killed) == "unsynced"
    assert "VerifiedStop" not in plane.metrics.names()
    record = lease_item().last_unsynced_stop
    assert record["task_arn"] == task_b["taskArn"]
    assert record["last_segment"]["position"] == claimed.position
    assert record["last_segment"]["kind"] == "claim"
    assert record["window_seconds"] == 5


def test_a_malformed_manifest_is_logged_and_the_stop_accounted_without_it(settings, tmp_path):
    plane = build_plane(settings)
    boto3.client("s3").put_object(Bucket=BUCKET, Key=MANIFEST, Body=b'{"generation": ')
    task, reservation = woken(plane)
    agent = AgentDouble(settings, task["taskArn"], tmp_path / "a")
    (tmp_path / "a").mkdir()
    agent.acquire(reservation)
    agent.write(3)
    agent.upload("shutdown")

    assert plane.handle_event(event("task-stopped-exit-0.json", task)) == "verified"
    [(message, extra)] = plane.log.at("ERROR")
    assert message == "The chain's manifest is malformed: this stop is accounted without it"
    assert extra["manifest"] == f"s3://{BUCKET}/{MANIFEST}"
    assert "not JSON" in extra["error"]
    assert "MalformedManifest" in plane.metrics.names()

    # A killed task is accounted too (from the lease and the object), not an error.
    task_b, reservation_b = woken(plane)
    (tmp_path / "b").mkdir()
    AgentDouble(settings, task_b["taskArn"], tmp_path / "b").acquire(reservation_b)
    assert plane.handle_event(event("task-stopped-exit-137.json", task_b)) == "unsynced"
    assert lease_item().state == FREE

    # And the status report says what is wrong with the chain instead of failing.
    reply = plane.status()
    assert reply.status == 200
    assert "malformed manifest" in reply.body["chain"]["error"]
    assert reply.body["lease"]["state"] == FREE


def test_status_of_a_bucket_without_a_chain_has_no_chain(settings):
    reply = build_plane(settings).status()
    assert reply.status == 200
    assert reply.body["chain"] is None


# -- the chain's reads at the network edge ----------------------------------------------------


def chain_through(plane: ControlPlane, proxy: FaultProxy) -> None:
    """The control plane reads the chain through ``proxy`` (everything else goes direct)."""
    plane.chain = ChainReader(BUCKET, KEY, client=boto3.client("s3", endpoint_url=proxy.url))


def killed_holder(
    plane: ControlPlane, settings: Any, tmp_path: Path, syncs: int
) -> dict[str, Any]:
    """A task whose holder shipped ``syncs`` segments past its boot with the replica store,
    then died: the manifest stays at the boot (it moves every 64 positions or 60 s, and with
    each compaction: none here, so the probe has the whole run to cover)."""
    task, reservation = woken(plane)
    lease = AgentDouble(settings, task["taskArn"], tmp_path).acquire(reservation)
    holder = Holder(ChainStore(BUCKET, KEY), task["taskArn"], lease.token, tmp_path / "holder",
                    policy=cadence.Policy(compaction_spans=()))
    for _ in range(syncs):
        holder.insert(3)
        holder.sync()
    holder.close()
    return task


def test_the_probe_for_a_killed_holders_last_segment_sends_heads_and_no_list(
    settings, moto_server, tmp_path
):
    plane = build_plane(settings)
    task = killed_holder(plane, settings, tmp_path, syncs=40)
    store = ChainStore(BUCKET, KEY)
    manifest = store.read_manifest()
    generation, position, captured_at = chain_end(store)
    assert manifest is not None and position >= manifest.position + 40
    killed = event("task-stopped-exit-137.json", task)
    killed["detail"]["stoppedAt"] = captured_at + 2

    with fault_proxy(moto_server.url) as proxy:
        chain_through(plane, proxy)
        assert plane.handle_event(killed) == "unsynced"
        sent = proxy.requests
    record = lease_item().last_unsynced_stop
    assert (record["last_segment"]["generation"], record["last_segment"]["position"]) == (
        generation, position)
    assert record["window_seconds"] == 2
    assert not [r for r in sent if r.is_list]
    heads = [r for r in sent if r.method == "HEAD"]
    gets = [r for r in sent if r.method == "GET"]
    assert 0 < len(heads) <= MAX_PROBES
    assert len(gets) == 2  # the manifest, and the last segment's 100-byte header
    assert len(sent) == len(heads) + len(gets)


def test_a_refused_chain_read_is_logged_and_the_stop_accounted_without_it(
    settings, moto_server, tmp_path
):
    plane = build_plane(settings)
    task, reservation = woken(plane)
    agent = AgentDouble(settings, task["taskArn"], tmp_path)
    agent.acquire(reservation)
    agent.write(2)
    agent.upload("shutdown")
    boto3.client("s3").put_object(
        Bucket=BUCKET, Key=MANIFEST, Body=Manifest(generation="g", position=1, token=1,
                                                   holder=task["taskArn"]).body())
    with fault_proxy(moto_server.url) as proxy:
        chain_through(plane, proxy)
        # An IAM policy without KEY.wakeful/*: S3 answers 403.
        proxy.fail(403, lambda r: ".wakeful/" in r.path, code="AccessDenied")
        assert plane.handle_event(event("task-stopped-exit-0.json", task)) == "verified"
    [(message, extra)] = plane.log.at("ERROR")
    assert message == "Could not read the chain's manifest: this stop is accounted without it"
    assert extra["manifest"] == f"s3://{BUCKET}/{MANIFEST}"
    assert "s3:GetObject" in extra["error"] and "403" in extra["error"]


def test_refused_heads_leave_the_window_to_the_object_and_the_lease(
    settings, moto_server, tmp_path
):
    plane = build_plane(settings)
    task = killed_holder(plane, settings, tmp_path, syncs=3)
    killed = event("task-stopped-exit-137.json", task)
    killed["detail"]["stoppedAt"] = time.time()
    with fault_proxy(moto_server.url) as proxy:
        chain_through(plane, proxy)
        proxy.fail(403, lambda r: r.method == "HEAD" and "/g/" in r.path, code="AccessDenied")
        assert plane.handle_event(killed) == "unsynced"
    errors = dict(plane.log.at("ERROR"))
    assert "s3:GetObject" in errors["Could not probe the chain for the task's last segment"][
        "error"]
    record = lease_item().last_unsynced_stop
    assert "last_segment" not in record
    # From the task's start, as for an agent that never uploaded: never smaller than the truth.
    started = parse_event(killed).task.started_at
    assert record["window_seconds"] == killed["detail"]["stoppedAt"] - started


def test_a_manifest_read_that_fails_for_now_is_retried_and_then_accounted(
    settings, moto_server, tmp_path
):
    plane = build_plane(settings)
    task, reservation = woken(plane)
    agent = AgentDouble(settings, task["taskArn"], tmp_path)
    agent.acquire(reservation)
    agent.write(2)
    agent.upload("shutdown")
    stopped = event("task-stopped-exit-0.json", task)
    with fault_proxy(moto_server.url) as proxy:
        chain_through(plane, proxy)
        outage = proxy.fail(503, lambda r: r.path.endswith("manifest.json"))
        with pytest.raises(StoreUnavailable) as raised:
            plane.handle_event(stopped)  # Lambda retries the event
        assert raised.value.retryable
        assert lease_item().state == "HELD"
        proxy.remove(outage)
        assert plane.handle_event(stopped) == "verified"
    assert lease_item().state == FREE
