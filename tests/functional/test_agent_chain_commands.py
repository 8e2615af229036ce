"""``wakeful-agent status|backups|restore|verify`` on a chain bucket, as real processes.

The chain is written by the replica library's own holder (``tests.cli.chain_history``), as an
agent in chain mode leaves it; the verbs run as ``python -m container …`` against moto.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import boto3
import pytest

from chalicelib.lease import LeaseTable
from tests.cli.chain_history import KEY, LEASE, epoch_arg, rows_in, written
from tests.conftest import BUCKET, ROOT, TABLE
from wakeful_replica.boot import boot
from wakeful_replica.chain import Writer
from wakeful_replica.store import ChainStore

TASK = "arn:aws:ecs:us-east-1:123456789012:task/wakeful-test/live"


def agent(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "container", *args], env=env, cwd=str(ROOT),
                          capture_output=True, text=True, timeout=120)


def current_object_rows(tmp_path: Path) -> set[str]:
    path = tmp_path / "k.sqlite3"
    path.write_bytes(boto3.client("s3").get_object(Bucket=BUCKET, Key=KEY)["Body"].read())
    return rows_in(path)


@pytest.fixture
def env(agent_env: dict[str, str]) -> dict[str, str]:
    # Chain mode said explicitly: these tests hold whichever mode is the default.
    return {**agent_env, "WAKEFUL_REPLICATION": "chain"}


def test_agent_restore_at_a_time_becomes_a_generation_the_next_boot_resumes(env, tmp_path):
    first, second, _ = written(tmp_path / "a")
    done = agent(env, "restore", "--at", epoch_arg(first.after_ms))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "[INFO] Restored the state as of " in done.stdout
    assert current_object_rows(tmp_path) == first.rows

    # The next boot (the library's, with the next token) resumes it: no upload from outside.
    lease = LeaseTable(TABLE, LEASE).acquire("agent-c", ttl=60)
    booted = boot(ChainStore(BUCKET, KEY), Writer("agent-c", lease.token),
                  str(tmp_path / "next.sqlite3"))
    assert booted.how == "resumed" and booted.warnings == ()
    assert rows_in(tmp_path / "next.sqlite3") == first.rows
    assert not (second.rows - first.rows) & rows_in(tmp_path / "next.sqlite3")


def test_agent_restore_txid_dry_run_and_refusal(env, tmp_path):
    first, second, _ = written(tmp_path / "a")
    before = ChainStore(BUCKET, KEY).read_manifest()
    dry = agent(env, "restore", "--txid", str(second.txid), "--dry-run")
    assert dry.returncode == 0, dry.stdout + dry.stderr
    assert f"would restore txid {second.txid}" in dry.stdout
    assert f"{len(second.rows)} rows" in dry.stdout and "nothing was changed" in dry.stdout
    assert ChainStore(BUCKET, KEY).read_manifest() == before

    LeaseTable(TABLE, LEASE).acquire(TASK, ttl=60, task_arn=TASK)
    refused = agent(env, "restore", "--txid", str(first.txid))
    assert refused.returncode == 3
    assert f"[ERROR] Refused: the lease 'wakeful-test-db/db.sqlite3' is HELD by '{TASK}'" in (
        refused.stdout)
    assert ChainStore(BUCKET, KEY).read_manifest() == before

    stray = agent(env, "restore", "--at", "2030-01-01T00:00:00Z", "--generation", "x")
    assert stray.returncode == 2 and "--generation goes with --txid" in stray.stderr


def test_agent_restore_past_the_end_fails_with_a_clear_error(env, tmp_path):
    _, _, third = written(tmp_path / "a")
    before = ChainStore(BUCKET, KEY).read_manifest()
    past = agent(env, "restore", "--txid", str(third.txid + 40))
    assert past.returncode == 1
    assert "[ERROR] Nothing to restore: txid" in past.stdout and "past the end" in past.stdout
    assert ChainStore(BUCKET, KEY).read_manifest() == before


def test_agent_status_and_backups_show_the_chain(env, tmp_path):
    first, _, _ = written(tmp_path / "a")
    manifest = ChainStore(BUCKET, KEY).read_manifest()
    status = json.loads(agent(env, "status", "--json").stdout)
    assert status["chain"]["generation"] == first.generation
    assert status["chain"]["stopped"]["position"] == manifest.stopped.position
    assert status["chain"]["retention_days"] == 7
    text = agent(env, "status").stdout
    assert f"chain      generation {first.generation} (epoch 1)" in text
    assert "clean stop agent-a (token 1)" in text
    listed = json.loads(agent(env, "backups", "--json").stdout)
    assert listed["chain"]["window"]["oldest"] <= listed["chain"]["window"]["newest"]
    assert [g["generation"] for g in listed["chain"]["generations"]] == [first.generation]
    assert "Chain of s3://wakeful-test-db/db.sqlite3: restore --at" in agent(
        env, "backups").stdout


def test_agent_verify_walks_the_chain_and_names_a_bad_position(env, tmp_path):
    _, second, _ = written(tmp_path / "a", stop=False)
    whole = agent(env, "verify")
    assert whole.returncode == 0, whole.stdout + whole.stderr
    assert "[INFO] The chain of s3://wakeful-test-db/db.sqlite3 is whole" in whole.stdout
    key = ChainStore(BUCKET, KEY).segment_key(second.generation, second.txid)
    boto3.client("s3").delete_object(Bucket=BUCKET, Key=key)
    broken = agent(env, "verify")
    assert broken.returncode == 1
    assert f"position {second.txid} is missing" in broken.stdout and key in broken.stdout
    assert "[ERROR] The chain of s3://wakeful-test-db/db.sqlite3 has 1 problem(s)" in (
        broken.stdout)
    refused = agent(env, "restore", "--at", "2099-01-01T00:00:00Z")
    assert refused.returncode == 1 and "cannot be restored" in refused.stdout
