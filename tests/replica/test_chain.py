"""The chain store against moto over HTTP: fencing by position, adoption, manifest, restore."""

from __future__ import annotations

import os
import sqlite3

import boto3
import pytest

from tests.conftest import BUCKET
from wakeful_replica import ltx
from wakeful_replica.chain import Writer
from wakeful_replica.errors import ChainBroken, ManifestConflict, PositionTaken, Superseded
from wakeful_replica.manifest import Manifest
from wakeful_replica.store import ChainStore

PAGE = 4096
GEN = "000000000001-abcdef01"
OLD = Writer("task-old", 1)
NEW = Writer("task-new", 2)


@pytest.fixture
def store(resources):
    return ChainStore(BUCKET, "db.sqlite3")


class Database:
    """A rollback-journal database whose changes become segments, the states kept for checks."""

    def __init__(self, path) -> None:
        self.path = path
        self.db = sqlite3.connect(path, isolation_level=None)
        self.db.execute("CREATE TABLE rows (id INTEGER PRIMARY KEY, body BLOB)")
        self.shipped: dict[int, bytes] = {}
        self.txid = 0
        self.states: dict[int, bytes] = {}

    def segment(self, rows: int = 0) -> bytes:
        if rows:
            self.db.executemany("INSERT INTO rows (body) VALUES (?)",
                                [(os.urandom(500),) for _ in range(rows)])
        data = self.path.read_bytes()
        pages = {i // PAGE + 1: data[i:i + PAGE] for i in range(0, len(data), PAGE)}
        self.txid += 1
        changed = pages if self.txid == 1 else {
            n: p for n, p in pages.items() if self.shipped.get(n) != p
        }
        header = ltx.Header(PAGE, len(pages), 1 if self.txid == 1 else self.txid, self.txid,
                            1_700_000_000_000 + self.txid)
        self.shipped = pages
        self.states[self.txid] = data
        return ltx.encode(header, sorted(changed.items()))


def publish(store: ChainStore, database: Database, count: int, writer: Writer = OLD) -> None:
    for _ in range(count):
        store.write_segment(GEN, database.segment(rows=20), writer)
    seen = store.read_manifest()
    store.advance_manifest(seen, Manifest(GEN, database.txid, writer.token, writer.holder))


def test_restore_is_byte_identical_and_probes_past_the_manifest(store, tmp_path):
    database = Database(tmp_path / "app.db")
    publish(store, database, 4)
    store.write_segment(GEN, database.segment(rows=5), OLD)  # after the manifest
    restored = store.restore(str(tmp_path / "restored.db"))
    assert restored.txid == 5
    assert (tmp_path / "restored.db").read_bytes() == database.states[5]
    at3 = store.restore(str(tmp_path / "at3.db"), txid=3)
    assert at3.txid == 3 and (tmp_path / "at3.db").read_bytes() == database.states[3]


def test_two_writers_racing_for_one_position_one_wins(store, tmp_path):
    database = Database(tmp_path / "app.db")
    store.write_segment(GEN, database.segment(), OLD)
    body = database.segment(rows=3)
    store.write_segment(GEN, body, OLD)
    with pytest.raises(PositionTaken) as refused:
        store.write_segment(GEN, body, NEW)
    assert (refused.value.holder, refused.value.token, refused.value.our_token) == (
        "task-old", 1, 2,
    )
    # The same writer's retry (its first answer lost) is its own write: success.
    assert store.write_segment(GEN, body, OLD).token == 1


def test_a_claim_adopts_what_a_stale_holder_landed_first(store, tmp_path):
    database = Database(tmp_path / "app.db")
    publish(store, database, 3)
    stale = database.segment(rows=7)
    store.write_segment(GEN, stale, OLD)  # lands before the new holder claims
    claimed = store.claim(GEN, after=3, writer=NEW, page_size=PAGE, commit=1)
    assert claimed.position == 5 and [found.body for found in claimed.adopted] == [stale]


def test_a_stale_holder_is_refused_after_a_new_claim(store, tmp_path):
    database = Database(tmp_path / "app.db")
    publish(store, database, 3)
    store.claim(GEN, after=3, writer=NEW, page_size=PAGE, commit=len(database.shipped))
    with pytest.raises(PositionTaken) as refused:
        store.write_segment(GEN, database.segment(rows=1), OLD)
    assert refused.value.token == 2
    # A stale holder's own claim (paused during boot) is refused as superseded.
    with pytest.raises(Superseded):
        store.claim(GEN, after=3, writer=OLD, page_size=PAGE, commit=1)
    manifest = store.read_manifest()
    store.advance_manifest(manifest, Manifest(GEN, 4, NEW.token, NEW.holder))
    with pytest.raises(Superseded):
        store.advance_manifest(store.read_manifest(), Manifest(GEN, 9, OLD.token, OLD.holder))


def test_the_manifest_is_a_compare_and_swap(store):
    first = store.advance_manifest(None, Manifest(GEN, 1, 1, "a"))
    store.advance_manifest(first, Manifest(GEN, 2, 1, "a"))
    with pytest.raises(ManifestConflict):
        store.advance_manifest(first, Manifest(GEN, 3, 1, "a"))
    assert store.read_manifest().position == 2


@pytest.mark.parametrize("damage", ["missing", "corrupt"])
def test_a_bad_segment_mid_chain_stops_the_restore_and_says_where(store, tmp_path, damage):
    database = Database(tmp_path / "app.db")
    publish(store, database, 5)
    key = store.segment_key(GEN, 3)
    s3 = boto3.client("s3")
    if damage == "missing":
        s3.delete_object(Bucket=BUCKET, Key=key)
    else:
        body = bytearray(s3.get_object(Bucket=BUCKET, Key=key)["Body"].read())
        body[ltx.HEADER_SIZE + 20] ^= 0xFF
        head = s3.head_object(Bucket=BUCKET, Key=key)
        s3.put_object(Bucket=BUCKET, Key=key, Body=bytes(body), Metadata=head["Metadata"])
    target = tmp_path / "restored.db"
    with pytest.raises(ChainBroken) as broken:
        store.restore(str(target))
    assert broken.value.reached == 2
    assert not target.exists()  # never a silently older database as the current one
    assert broken.value.partial is not None
    with open(broken.value.partial, "rb") as handle:
        assert handle.read() == database.states[2]
