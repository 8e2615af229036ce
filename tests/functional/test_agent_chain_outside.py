"""Changes the agent did not make, honoured and never merged: real agent processes, moto over HTTP.

The app replacing its own database file while it runs, and an operator's ``aws s3 cp`` of a
good database over ``s3://…/db.sqlite3`` (the seed's documented restore) while the backend
sleeps.
"""

from __future__ import annotations

import signal
import sqlite3
import sys
from pathlib import Path

from tests.agent_harness import (
    IDLE,
    AgentProcess,
    chain_rows,
    committed_ids,
    put_object,
    s3_rows,
    seed_database,
    wait_for,
    writer,
)
from wakeful_replica.store import ChainStore

BUCKET, KEY = "wakeful-test-db", "db.sqlite3"
REPLACER = str(Path(__file__).resolve().parent.parent / "apps" / "replacer.py")


def _shipped_after(agent: AgentProcess, count: int) -> bool:
    return sum(m == "Segments shipped" for m in agent.messages()) >= count


def test_an_app_that_replaces_its_database_file_is_shipped_whole_and_loudly(
    agent_env, tmp_path
):
    env = {**agent_env, "WAKEFUL_SYNC_INTERVAL": "0.3"}
    log, go = tmp_path / "writes.log", tmp_path / "go"
    agent = AgentProcess(env, [sys.executable, REPLACER, env["DB_LOCAL_PATH"], str(log),
                               str(go)], tmp_path)
    agent.wait_running()
    wait_for(lambda: len(committed_ids(log)) >= 20, what="rows in the first file")
    wait_for(lambda: _shipped_after(agent, 1), what="a shipped sync of the first file")
    shipped = sum(m == "Segments shipped" for m in agent.messages())
    go.touch()
    wait_for(lambda: 1010 in committed_ids(log), what="the app to replace its file")
    wait_for(lambda: _shipped_after(agent, shipped + 1), what="a sync after the replacement")
    agent.signal(signal.SIGTERM)
    assert agent.wait() == 0, agent.output()

    # The state is the new file's, never a merge of the two.
    assert chain_rows(tmp_path / "restored") == list(range(1000, 1011))
    assert [row for row, _ in s3_rows()] == list(range(1000, 1011))
    assert any(m.startswith("Capture reset") for m in agent.messages()), agent.output()
    assert '"level":"WARNING"' in agent.output()


def test_an_operators_copy_over_the_current_object_is_a_restore_at_the_next_boot(
    agent_env, tmp_path
):
    log = tmp_path / "writes.log"
    first = AgentProcess(agent_env, writer(agent_env, log), tmp_path, "first")
    first.wait_running()
    wait_for(lambda: len(committed_ids(log)) >= 20, what="rows")
    first.signal(signal.SIGTERM)
    assert first.wait() == 0, first.output()
    before = committed_ids(log)
    assert [row for row, _ in s3_rows()] == before

    # The seed's restore: `aws s3 cp good.db s3://bucket/db.sqlite3` while asleep.
    good = seed_database(tmp_path / "operator" / "good.sqlite3", rows=7, pid=42)
    put_object(good.read_bytes())

    env = {**agent_env, "DB_LOCAL_PATH": str(tmp_path / "second" / "db.sqlite3")}
    second = AgentProcess(env, [sys.executable, IDLE], tmp_path, "second")
    second.wait_running()
    assert any("uploaded outside wakeful" in m for m in second.messages()), second.output()
    second.signal(signal.SIGTERM)
    assert second.wait() == 0, second.output()

    # The operator's rows are the current state, in the chain and in the current object.
    assert chain_rows(tmp_path / "restored") == list(range(1, 8))
    assert [pid for _, pid in s3_rows()] == [42] * 7
    # The old chain is kept: its end is still restorable to the transaction.
    manifest = ChainStore(BUCKET, KEY).read_manifest()
    old = [item for item in manifest.lineage if item.id != manifest.generation]
    assert old and old[-1].end is not None
    destination = tmp_path / "old" / "db.sqlite3"
    destination.parent.mkdir(parents=True, exist_ok=True)
    ChainStore(BUCKET, KEY).restore(str(destination), txid=old[-1].end - 1,
                                    generation=old[-1].id)
    db = sqlite3.connect(destination)
    try:
        assert [r for (r,) in db.execute("SELECT id FROM rows ORDER BY id")] == before
    finally:
        db.close()
