"""The replication rule, checked after every step of random interleavings (docs/replication.md §10).

> Whatever a stale holder writes, and in whatever order its writes land, no acknowledged write
> of the current holder is lost and nothing wakeful writes moves the current state backwards.

Against the real chain store on moto, through the fault proxy. Steps: holders write rows and
sync; a new holder claims with token + 1 while the old ones keep writing (a pause past the
TTL); a holder writes a snapshot marker and lands its ``K`` and manifest writes later, in any
order against the others; the next PUT's answer is lost (the write landed; the client retries);
an operator copies a database onto ``K``; the current holder stops. After each step: the
current state (what a restore rebuilds) holds every row the current holder had acknowledged
and every row of the state before the step (unless the step honoured an operator's copy), the
current holder was never fenced, and ``K`` only moves forward.

The suite runs a small, derandomized profile; ``WAKEFUL_PROPERTY_EXAMPLES=200`` (and
optionally ``WAKEFUL_PROPERTY_STEPS``) runs a larger random one.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import sqlite3
import tempfile
from pathlib import Path
from urllib.parse import urlsplit

import boto3
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from chalicelib import aws
from chalicelib.errors import StoreUnavailable
from tests.conftest import BUCKET, create_bucket
from tests.fault_proxy import FaultProxy, s3_put
from tests.replica.holder import KEY, Holder, rows_of
from wakeful_replica import cadence
from wakeful_replica.boot import OPERATOR_RESTORE
from wakeful_replica.current import is_wakeful_snapshot
from wakeful_replica.errors import Fenced, OutOfBandUpload
from wakeful_replica.store import ChainStore

EXAMPLES = int(os.environ.get("WAKEFUL_PROPERTY_EXAMPLES", "0"))
STEPS = int(os.environ.get("WAKEFUL_PROPERTY_STEPS", "0"))
MAX_HOLDERS = 3
# Compactions every 2 and 4 positions, so short runs write them, stale holders included.
POLICY = cadence.Policy(compaction_spans=(2, 4))


def current_put(request) -> bool:
    return request.method == "PUT" and urlsplit(request.path).path.endswith(f"/{KEY}")


LOSABLE = {
    "segment": s3_put("/g/"),
    "compaction": s3_put("/c/"),
    "manifest": s3_put("manifest.json"),
    "current": current_put,
}


class Protocol(RuleBasedStateMachine):
    def __init__(self, server) -> None:
        super().__init__()
        server.reset()
        create_bucket()
        self.work = Path(tempfile.mkdtemp(prefix="wakeful-property-"))
        self.proxy = FaultProxy(server.url)
        self.store = ChainStore(BUCKET, KEY,
                                client=aws.client("s3", endpoint_url=self.proxy.url))
        self.reader = ChainStore(BUCKET, KEY)  # the checks read around the proxy
        self.s3 = boto3.client("s3")
        self.holders: list[Holder] = []
        self.live: list[Holder] = []
        self.pending: dict[str, object] = {}
        self.token = 0
        self.last_rows: set[str] = set()
        self.last_current: set[str] | None = None
        self.operator_rows: set[str] | None = None
        self.operators = 0
        self.checks = 0
        self._boot()

    # -- steps ------------------------------------------------------------------------------

    def _boot(self) -> Holder:
        self.token += 1
        holder = Holder(self.store, f"task-{self.token}", self.token,
                        self.work / f"h{self.token}", policy=POLICY)
        if self.operator_rows is not None:
            # An operator's copy waiting at K is honoured by the first boot after it.
            assert holder.booted.how == OPERATOR_RESTORE, holder.booted.how
            assert rows_of(holder.path) == self.operator_rows
            self.last_rows = set(self.operator_rows)
            self.last_current = None
            self.operator_rows = None
        self.holders.append(holder)
        self.live.append(holder)
        return holder

    @property
    def current(self) -> Holder:
        return self.holders[-1]

    def _pick(self, index: int) -> Holder:
        return self.live[index % len(self.live)]

    def _guard(self, holder: Holder, action) -> None:
        """Run ``action``; a refusal may only ever reach a stale holder."""
        try:
            action()
        except Fenced:
            assert holder is not self.current, "the current holder was fenced"
            self.live.remove(holder)
            self.pending.pop(holder.name, None)
        except OutOfBandUpload:
            # Only an operator's copy is never overwritten: one waiting to be honoured, or,
            # for a holder that booted before it was, the one honoured since.
            assert self.operator_rows is not None or (
                self.operators and holder is not self.current
            ), "an upload we did not make"
        except StoreUnavailable:
            pass  # a lost answer the client could not retry: try again later

    @precondition(lambda self: self.live)
    @rule(index=st.integers(0, MAX_HOLDERS), rows=st.integers(1, 30))
    def write(self, index: int, rows: int) -> None:
        holder = self._pick(index)
        holder.insert(rows)
        self._guard(holder, holder.sync)

    @precondition(lambda self: len(self.holders) < MAX_HOLDERS + self.operators)
    @rule()
    def pause_past_the_ttl(self) -> None:
        """A new holder acquires (token + 1) and claims; the old ones go on writing."""
        self._boot()

    @precondition(lambda self: self.live)
    @rule(index=st.integers(0, MAX_HOLDERS))
    def snapshot(self, index: int) -> None:
        holder = self._pick(index)
        if holder.name in self.pending:
            return
        self._guard(holder, holder.chain.snapshot)

    @precondition(lambda self: self.live)
    @rule(index=st.integers(0, MAX_HOLDERS))
    def begin_snapshot(self, index: int) -> None:
        """The marker lands now; its K and manifest writes land at a later step."""
        holder = self._pick(index)
        if holder.name in self.pending:
            return

        def begin() -> None:
            self.pending[holder.name] = holder.chain.begin_snapshot()

        self._guard(holder, begin)

    @precondition(lambda self: self.pending)
    @rule(index=st.integers(0, MAX_HOLDERS), publish_first=st.booleans())
    def land_snapshot(self, index: int, publish_first: bool) -> None:
        names = sorted(self.pending)
        name = names[index % len(names)]
        holder = next(item for item in self.holders if item.name == name)
        pending = self.pending.pop(name)

        def land() -> None:
            written = holder.chain.write_current(pending)
            holder.chain.publish(written)

        del publish_first  # K before its manifest: the only order the writer has
        self._guard(holder, land)

    @rule(kind=st.sampled_from(sorted(LOSABLE)))
    def lose_next_answer(self, kind: str) -> None:
        self.proxy.lose_answer(LOSABLE[kind], count=1)

    @precondition(lambda self: self.operator_rows is None and self.operators < 2)
    @rule(rows=st.integers(1, 5))
    def operator_copy(self, rows: int) -> None:
        """``aws s3 cp good.db s3://…/db.sqlite3``: a database of its own, no metadata."""
        self.operators += 1
        good = self.work / f"operator-{self.operators}.db"
        db = sqlite3.connect(good, isolation_level=None)
        db.execute("CREATE TABLE rows (id TEXT PRIMARY KEY, body BLOB)")
        ids = [f"operator{self.operators}-{n}" for n in range(rows)]
        db.executemany("INSERT INTO rows VALUES (?, randomblob(50))", [(i,) for i in ids])
        db.close()
        self.s3.put_object(Bucket=BUCKET, Key=KEY, Body=good.read_bytes())
        self.operator_rows = set(ids)

    @precondition(lambda self: self.current in self.live and self.current.name not in
                  self.pending)
    @rule()
    def stop_current(self) -> None:
        holder = self.current

        def stop() -> None:
            holder.chain.stop(deadline_s=5.0)
            self.live.remove(holder)

        self._guard(holder, stop)

    # -- the rule ---------------------------------------------------------------------------

    @invariant()
    def no_acknowledged_write_lost_and_nothing_backwards(self) -> None:
        target = self.work / "check.db"
        self.reader.restore(str(target))
        rows = rows_of(target)
        current = self.current
        missing = current.acked - rows
        assert not missing, f"acknowledged rows of the current holder lost: {sorted(missing)[:5]}"
        assert self.last_rows <= rows, "the current state moved backwards"
        self.last_rows = rows
        self.checks += 1
        # The compactions the manifest names change nothing: the same bytes as the positions.
        manifest = self.reader.read_manifest()
        if manifest is not None and manifest.compactions:
            plain = self.work / "positions.db"
            self.reader.restorer.current(
                str(plain), dataclasses.replace(manifest, compactions={}))
            self.reader.restorer.current(str(target), manifest)
            assert plain.read_bytes() == target.read_bytes(), "a compaction changed the state"
        head = self.reader.current.head()
        if head is not None and is_wakeful_snapshot(head.metadata):
            k_path = self.work / "k.db"
            k_path.write_bytes(self.s3.get_object(Bucket=BUCKET, Key=KEY)["Body"].read())
            k_rows = rows_of(k_path)
            assert k_rows <= rows, "K holds a state that is not in the chain"
            if self.last_current is not None:
                assert self.last_current <= k_rows, "K moved backwards"
            self.last_current = k_rows

    def teardown(self) -> None:
        for holder in self.holders:
            holder.close()
        self.proxy.close()
        shutil.rmtree(self.work, ignore_errors=True)


def test_no_interleaving_loses_an_acknowledged_write_or_moves_the_state_back(moto_server):
    larger = EXAMPLES > 0
    config = settings(
        max_examples=EXAMPLES or 8, stateful_step_count=STEPS or (25 if larger else 12),
        deadline=None, derandomize=not larger, database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    )
    run_state_machine_as_test(lambda: Protocol(moto_server), settings=config)
