"""``wakeful status``, ``backups``, ``restore`` and ``verify`` on a chain bucket.

The chain is written by the replica library's own holder (``tests.cli.chain_history``); the
next boot is a real agent process in chain mode. Everything over HTTP to moto.
"""

from __future__ import annotations

import datetime as dt
import json
import signal
import sys
from pathlib import Path

import boto3
import pytest

from chalicelib.lease import FREE, LeaseTable
from chalicelib.store import DatabaseStore
from tests.agent_harness import IDLE, AgentProcess, env_for
from tests.cli.chain_history import KEY, LEASE, epoch_arg, rows_in, written
from tests.cli.conftest import field, lines, run
from tests.conftest import BUCKET, TABLE
from wakeful_replica.store import ChainStore

TASK = "arn:aws:ecs:us-east-1:123456789012:task/wakeful-test/live"


def current_object_rows(tmp_path: Path) -> set[str]:
    """What the seed's ``aws s3 cp s3://bucket/db.sqlite3`` gives: a plain GET of ``K``."""
    path = tmp_path / "k.sqlite3"
    path.write_bytes(boto3.client("s3").get_object(Bucket=BUCKET, Key=KEY)["Body"].read())
    return rows_in(path)


def chain_rows(tmp_path: Path) -> set[str]:
    """The end of the chain, as the next boot restores it."""
    path = tmp_path / "end.sqlite3"
    ChainStore(BUCKET, KEY).restore(str(path))
    return rows_in(path)


def segment_key(generation: str, txid: int) -> str:
    return ChainStore(BUCKET, KEY).segment_key(generation, txid)


@pytest.fixture
def chain_env(store_env: dict[str, str]) -> dict[str, str]:
    # Chain mode said explicitly: these tests hold whichever mode is the default.
    return {**store_env, "WAKEFUL_REPLICATION": "chain"}


def test_restore_at_a_time_between_two_segments_and_the_next_boot_resumes_it(
    chain_env, agent_env, tmp_path
):
    first, second, third = written(tmp_path / "a")
    old = ChainStore(BUCKET, KEY).read_manifest()

    result = run(chain_env, "restore", "--at", epoch_arg(first.after_ms))
    assert result.code == 0, result.err
    assert result.out.startswith("restored the state as of ")
    assert "as generation " in result.out and "the old chain is kept" in result.out
    # Exactly the rows committed by then: in the chain's end and in K.
    assert chain_rows(tmp_path) == first.rows
    assert current_object_rows(tmp_path) == first.rows
    manifest = ChainStore(BUCKET, KEY).read_manifest()
    assert manifest.generation != old.generation
    assert manifest.lineage[-1].origin == "restore"
    assert manifest.generation_info(old.generation).end is not None  # the old chain ended, kept
    head = boto3.client("s3").head_object(Bucket=BUCKET, Key=KEY)
    assert manifest.accounted.version_id == head["VersionId"]  # K is the chain's own
    lease = LeaseTable(TABLE, LEASE).read()
    assert lease.state == FREE and lease.last_holder.startswith("operator@")
    assert lease.last_upload["reason"] == "restore"

    # The next boot: a real agent in chain mode resumes the restored state, no warning.
    env = env_for(agent_env, tmp_path, "next", WAKEFUL_REPLICATION="chain")
    agent = AgentProcess(env, [sys.executable, IDLE], tmp_path, "next")
    agent.wait_running()
    messages = agent.messages()
    assert "Chain booted: resumed" in messages, agent.output()
    assert not any("outside wakeful" in m for m in messages), agent.output()
    assert not any(m.startswith("Replication:") for m in messages), agent.output()
    assert rows_in(Path(env["DB_LOCAL_PATH"])) == first.rows
    agent.signal(signal.SIGTERM)
    assert agent.wait() == 0, agent.output()
    assert current_object_rows(tmp_path) == first.rows
    assert not (third.rows - first.rows) & chain_rows(tmp_path)
    assert second.rows - first.rows  # later rows existed, and are not in the restored state


def test_restore_txid_rebuilds_that_position_even_of_an_ended_generation(chain_env, tmp_path):
    first, second, _ = written(tmp_path / "a")
    assert run(chain_env, "restore", "--txid", str(first.txid)).code == 0
    assert current_object_rows(tmp_path) == first.rows

    # The old generation is kept for point-in-time restore: its second batch is still there.
    result = run(chain_env, "restore", "--txid", str(second.txid),
                 "--generation", second.generation, "--json")
    assert result.code == 0, result.err
    data = json.loads(result.out)
    assert data["restored"] == f"txid {second.txid} of generation {second.generation}"
    assert data["source"]["txid"] == second.txid
    assert chain_rows(tmp_path) == second.rows
    assert current_object_rows(tmp_path) == second.rows
    assert [g.origin for g in ChainStore(BUCKET, KEY).read_manifest().lineage][-2:] == [
        "restore", "restore"]


def test_restore_past_the_end_or_outside_the_window_fails_and_changes_nothing(
    chain_env, tmp_path
):
    _, _, third = written(tmp_path / "a")
    store = ChainStore(BUCKET, KEY)
    before = (store.read_manifest(), boto3.client("s3").head_object(Bucket=BUCKET, Key=KEY))

    past = run(chain_env, "restore", "--txid", str(third.txid + 50))
    assert past.code == 1
    assert past.err.startswith("wakeful: error: nothing to restore: ")
    assert "past the end" in past.err and past.err.count("\n") == 1
    early = run(chain_env, "restore", "--at", "2001-01-01T00:00:00Z")
    assert early.code == 1 and early.err.count("\n") == 1
    assert early.err.startswith("wakeful: error: nothing to restore: the chain has no state at "
                                "2001-01-01T00:00:00+00:00: it holds 20")  # its window
    assert "restore --version ID" in early.err
    stray = run(chain_env, "restore", "--at", "2001-01-01T00:00:00Z", "--generation", "x")
    assert stray.code == 2 and "--generation goes with --txid" in stray.err

    after = (store.read_manifest(), boto3.client("s3").head_object(Bucket=BUCKET, Key=KEY))
    assert after[0] == before[0]
    assert after[1]["VersionId"] == before[1]["VersionId"]
    assert LeaseTable(TABLE, LEASE).read().state == FREE


def test_restore_a_backup_on_a_chain_bucket_starts_a_generation_from_it(chain_env, tmp_path):
    [earlier] = written(tmp_path / "a", batches=1)
    # A backup of K as that stop left it (named apart from the next stop's, in this second).
    store = DatabaseStore(BUCKET, KEY)
    store.create_backup(store.head(), when=dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
                        .timestamp())
    later = written(tmp_path / "b", batches=2, name="agent-b")
    assert chain_rows(tmp_path) == earlier.rows | later[-1].rows

    result = run(chain_env, "restore", "--backup", "20260102_030405")
    assert result.code == 0, result.err
    assert result.out.startswith("restored backup 20260102_030405 as generation ")
    manifest = ChainStore(BUCKET, KEY).read_manifest()
    assert manifest.lineage[-1].origin == "restore"
    # The backup's rows, none written after it: in the chain's end and in K.
    assert chain_rows(tmp_path) == earlier.rows
    assert current_object_rows(tmp_path) == earlier.rows


def test_restore_is_refused_while_the_backend_is_awake(chain_env, tmp_path):
    first, _, _ = written(tmp_path / "a")
    before = ChainStore(BUCKET, KEY).read_manifest()
    LeaseTable(TABLE, LEASE).acquire(TASK, ttl=60, task_arn=TASK)
    result = run(chain_env, "restore", "--at", epoch_arg(first.after_ms))
    assert result.code == 3
    assert result.err.startswith(f"wakeful: restore refused: the lease is HELD by {TASK}")
    assert ChainStore(BUCKET, KEY).read_manifest() == before
    dry = run(chain_env, "restore", "--txid", str(first.txid), "--dry-run")
    assert dry.code == 3 and "would be refused" in dry.err


def test_restore_dry_run_rebuilds_and_checks_the_point_and_changes_nothing(
    chain_env, tmp_path
):
    first, _, _ = written(tmp_path / "a")
    before = ChainStore(BUCKET, KEY).read_manifest()
    result = run(chain_env, "restore", "--at", epoch_arg(first.after_ms), "--dry-run")
    assert result.code == 0, result.err
    assert f"txid {first.txid} of generation {first.generation}" in result.out
    assert f"{len(first.rows)} rows" in result.out and "integrity_check ok" in result.out
    assert "nothing was changed" in result.out
    data = json.loads(run(chain_env, "restore", "--txid", str(first.txid), "--dry-run",
                          "--json").out)
    assert data["check"]["rows"] == {"rows": len(first.rows)}
    assert data["lease"]["would_take"] is True
    assert ChainStore(BUCKET, KEY).read_manifest() == before
    assert LeaseTable(TABLE, LEASE).read().token == 1  # only the writer's holding took it


def test_status_and_backups_show_the_chain_and_its_restorable_window(chain_env, tmp_path):
    first, _, third = written(tmp_path / "a")
    manifest = ChainStore(BUCKET, KEY).read_manifest()

    data = json.loads(run(chain_env, "status", "--json").out)["chain"]
    assert data["generation"] == first.generation
    assert data["position"] == manifest.stopped.position
    assert data["stopped"]["holder"] == "agent-a"
    assert data["stopped"]["position"] == manifest.stopped.position
    assert data["snapshot"]["txid"] == manifest.snapshot.txid
    assert data["retention_days"] == 7
    assert data["window"]["oldest"] < data["window"]["newest"]
    table = run(chain_env, "status").out
    assert field(table, "chain").startswith(f"generation {first.generation} (epoch 1)")
    assert field(table, "clean stop").startswith("agent-a (token 1)")
    assert field(table, "retention") == "7 days"

    listed = json.loads(run(chain_env, "backups", "--json").out)
    [generation] = listed["chain"]["generations"]
    assert generation["first_txid"] == 1
    assert generation["last_txid"] == manifest.stopped.position
    assert [b["txid"] for b in generation["bases"]] == [b.txid for b in manifest.history]
    text = run(chain_env, "backups").out
    assert any(line.startswith("Chain of s3://wakeful-test-db/db.sqlite3: restore --at")
               for line in lines(text))
    assert any(line.startswith(first.generation) for line in lines(text))
    assert third.txid < manifest.stopped.position


def test_status_after_a_running_holder_shows_no_clean_stop_and_the_probed_end(
    chain_env, tmp_path
):
    written(tmp_path / "a", batches=1)
    # A holder that crashed: its claim and segments past the manifest, and no stop record.
    from tests.replica.holder import Holder  # the library's own writer

    lease = LeaseTable(TABLE, LEASE).acquire("agent-b", ttl=60)
    crashed = Holder(ChainStore(BUCKET, KEY), "agent-b", lease.token, tmp_path / "b")
    crashed.insert(3)
    crashed.sync()
    end = crashed.chain.shipped_position
    crashed.close()
    data = json.loads(run(chain_env, "status", "--json").out)["chain"]
    assert data["stopped"] is None
    assert data["position"] == end  # found past the manifest, not its hint
    assert field(run(chain_env, "status").out, "clean stop") == (
        "none: running, or stopped without a clean stop")


def test_a_corrupt_or_missing_segment_mid_chain_fails_verify_and_the_restore(
    chain_env, tmp_path
):
    # A holder that crashed: the newest base is the generation's start, so the end of the
    # chain is only reached through every segment.
    first, second, third = written(tmp_path / "a", stop=False)
    assert run(chain_env, "verify").code == 0
    s3 = boto3.client("s3")
    key = segment_key(second.generation, second.txid)
    body = bytearray(s3.get_object(Bucket=BUCKET, Key=key)["Body"].read())
    body[-20] ^= 0xFF
    s3.put_object(Bucket=BUCKET, Key=key, Body=bytes(body),
                  Metadata=s3.head_object(Bucket=BUCKET, Key=key)["Metadata"])
    before = ChainStore(BUCKET, KEY).read_manifest()

    result = run(chain_env, "verify")
    assert result.code == 1
    assert key in result.err  # the position, by its key
    assert "is broken" in result.out
    data = json.loads(run(chain_env, "verify", "--json").out)
    assert data["ok"] is False and any(key in problem for problem in data["problems"])

    # The end (or any point past the bad position) is refused, loudly, and nothing changes.
    for point in (("--at", epoch_arg(third.after_ms)), ("--txid", str(third.txid))):
        through = run(chain_env, "restore", *point)
        assert through.code == 1, through.err
        assert "cannot be restored" in through.err and key in through.err
        assert f"good up to txid {first.txid}" in through.err
    assert ChainStore(BUCKET, KEY).read_manifest() == before

    s3.delete_object(Bucket=BUCKET, Key=key)
    missing = run(chain_env, "verify")
    assert missing.code == 1 and f"position {second.txid} is missing" in missing.err, missing
    assert run(chain_env, "restore", "--txid", str(third.txid)).code == 1
    assert ChainStore(BUCKET, KEY).read_manifest() == before
    assert LeaseTable(TABLE, LEASE).read().state == FREE


@pytest.mark.parametrize("damage", ["corrupt", "missing"])
def test_a_good_point_before_the_damage_is_the_way_out_of_a_damaged_chain(
    chain_env, agent_env, tmp_path, damage
):
    first, second, third = written(tmp_path / "a", stop=False)
    s3 = boto3.client("s3")
    key = segment_key(second.generation, second.txid)
    if damage == "missing":
        s3.delete_object(Bucket=BUCKET, Key=key)
    else:
        body = bytearray(s3.get_object(Bucket=BUCKET, Key=key)["Body"].read())
        body[-20] ^= 0xFF
        s3.put_object(Bucket=BUCKET, Key=key, Body=bytes(body),
                      Metadata=s3.head_object(Bucket=BUCKET, Key=key)["Metadata"])
    assert run(chain_env, "verify").code == 1

    # The dry run shows the point; the restore makes it current and says the old chain is
    # damaged (kept as it is), where refusing would leave no way back but by hand.
    dry = run(chain_env, "restore", "--txid", str(first.txid), "--dry-run")
    assert dry.code == 0, dry.err
    assert f"{len(first.rows)} rows" in dry.out
    restored = run(chain_env, "restore", "--txid", str(first.txid))
    assert restored.code == 0, restored.err
    assert "warning:" in restored.err and key in restored.err
    assert chain_rows(tmp_path) == first.rows
    assert current_object_rows(tmp_path) == first.rows
    assert LeaseTable(TABLE, LEASE).read().state == FREE

    # The next boot resumes the restored state: the damage behind it stops nothing.
    env = env_for(agent_env, tmp_path, "next", WAKEFUL_REPLICATION="chain")
    agent = AgentProcess(env, [sys.executable, IDLE], tmp_path, "next")
    agent.wait_running()
    assert "Chain booted: resumed" in agent.messages(), agent.output()
    assert rows_in(Path(env["DB_LOCAL_PATH"])) == first.rows
    agent.signal(signal.SIGTERM)
    assert agent.wait() == 0, agent.output()
    assert current_object_rows(tmp_path) == first.rows
    assert not (third.rows - first.rows) & chain_rows(tmp_path)
