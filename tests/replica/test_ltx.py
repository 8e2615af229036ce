"""The LTX codec on real SQLite pages: round trips, the checksum, and every kind of damage."""

from __future__ import annotations

import io
import os
import sqlite3
import struct
from pathlib import Path

import pytest

from wakeful_replica import ltx
from wakeful_replica.errors import CorruptSegment

PAGE = 4096


def make_db(path: Path, rows: int = 200) -> bytes:
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=DELETE")
    db.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, body BLOB)")
    db.executemany("INSERT INTO t (body) VALUES (?)", [(os.urandom(300),) for _ in range(rows)])
    db.close()
    return path.read_bytes()


def pages_of(data: bytes, size: int = PAGE) -> list[tuple[int, bytes]]:
    return [(i // size + 1, data[i:i + size]) for i in range(0, len(data), size)]


def snapshot_header(data: bytes, txid: int = 1) -> ltx.Header:
    return ltx.Header(
        page_size=PAGE, commit=len(data) // PAGE, min_txid=1, max_txid=txid,
        timestamp_ms=1_700_000_000_000,
    )


def test_crc64_is_gos_iso_table():
    # The published check value of CRC-64/GO-ISO.
    hasher = ltx.crc64()
    hasher.update(b"123456789")
    assert hasher.crcValue == 0xB90956C775A41001


def test_snapshot_round_trip_rebuilds_the_database_byte_for_byte(tmp_path):
    data = make_db(tmp_path / "a.db")
    encoded = ltx.encode(snapshot_header(data), pages_of(data))
    segment = ltx.decode(encoded)
    assert segment.header.is_snapshot and segment.header.no_checksum
    assert segment.trailer.post_apply_checksum == 0
    assert segment.trailer.file_checksum & ltx.CHECKSUM_FLAG
    out = io.BytesIO()
    ltx.apply(segment, out)
    assert out.getvalue() == data


def test_incremental_segment_changes_only_its_pages_and_can_shrink(tmp_path):
    data = bytearray(make_db(tmp_path / "a.db"))
    out = io.BytesIO(bytes(data))
    changed = [(2, os.urandom(PAGE)), (5, os.urandom(PAGE))]
    commit = len(data) // PAGE - 1
    header = ltx.Header(page_size=PAGE, commit=commit, min_txid=2, max_txid=2, timestamp_ms=1)
    ltx.apply(ltx.decode(ltx.encode(header, changed)), out)
    for pgno, page in changed:
        data[(pgno - 1) * PAGE:pgno * PAGE] = page
    assert out.getvalue() == bytes(data[:commit * PAGE])


def test_header_layout_matches_the_go_encoder():
    header = ltx.Header(page_size=4096, commit=7, min_txid=3, max_txid=9, timestamp_ms=42)
    packed = header.pack()
    assert len(packed) == ltx.HEADER_SIZE
    assert packed[:4] == b"LTX1"
    assert struct.unpack(">IIIQQq", packed[4:40]) == (ltx.FLAG_NO_CHECKSUM, 4096, 7, 3, 9, 42)
    assert packed[80:] == bytes(20)
    assert ltx.Header.unpack(packed) == header


def test_page_frames_are_lz4_blocks_behind_a_size_field(tmp_path):
    data = make_db(tmp_path / "a.db")
    encoded = ltx.encode(snapshot_header(data), pages_of(data))
    pgno, flags = struct.unpack(">IH", encoded[100:106])
    (length,) = struct.unpack(">I", encoded[106:110])
    assert (pgno, flags) == (1, ltx.PAGE_FLAG_SIZE)
    import lz4.block

    page = lz4.block.decompress(encoded[110:110 + length], uncompressed_size=PAGE)
    assert page == data[:PAGE]
    segment = ltx.decode(encoded)
    assert segment.index[1] == ltx.IndexEntry(100, 10 + length)


@pytest.mark.parametrize("where", ["header", "page", "index", "trailer"])
def test_a_flipped_byte_anywhere_is_refused(tmp_path, where):
    data = make_db(tmp_path / "a.db")
    encoded = bytearray(ltx.encode(snapshot_header(data), pages_of(data)))
    offset = {
        "header": 33,  # inside the timestamp: only the checksum can tell
        "page": 100 + 10 + 5,
        "index": len(encoded) - ltx.TRAILER_SIZE - 9,
        "trailer": len(encoded) - 1,
    }[where]
    encoded[offset] ^= 0x01
    with pytest.raises(CorruptSegment):
        ltx.decode(bytes(encoded), where="s3://b/k")


def test_a_truncated_segment_is_refused(tmp_path):
    data = make_db(tmp_path / "a.db")
    encoded = ltx.encode(snapshot_header(data), pages_of(data))
    for cut in (50, 200, len(encoded) - 20, len(encoded) - 1):
        with pytest.raises(CorruptSegment):
            ltx.decode(encoded[:cut])


def test_a_snapshot_missing_its_last_page_is_refused(tmp_path):
    data = make_db(tmp_path / "a.db")
    header = snapshot_header(data)
    with pytest.raises(ValueError, match="snapshot ends"):
        ltx.encode(header, pages_of(data)[:-1])


def test_pages_out_of_order_or_past_commit_are_refused():
    header = ltx.Header(page_size=PAGE, commit=4, min_txid=5, max_txid=5, timestamp_ms=1)
    with pytest.raises(ValueError, match="out-of-order"):
        ltx.encode(header, [(3, bytes(PAGE)), (2, bytes(PAGE))])
    with pytest.raises(ValueError, match="out of bounds"):
        ltx.encode(header, [(5, bytes(PAGE))])
    with pytest.raises(ValueError, match="bytes, expected"):
        ltx.encode(header, [(1, bytes(100))])


def test_headers_ltx_would_refuse_are_refused():
    with pytest.raises(ValueError, match="page size"):
        ltx.Encoder(io.BytesIO(), ltx.Header(1000, 1, 1, 1, 1))
    with pytest.raises(ValueError, match="out of order"):
        ltx.Encoder(io.BytesIO(), ltx.Header(PAGE, 1, 3, 2, 1))
    with pytest.raises(ValueError, match="pre-apply"):
        ltx.Encoder(io.BytesIO(), ltx.Header(PAGE, 1, 1, 1, 1, pre_apply_checksum=5))


def test_the_lock_page_is_never_encoded():
    page_size = 512
    lock = ltx.lock_pgno(page_size)
    assert lock == 0x40000000 // 512 + 1
    header = ltx.Header(page_size, lock + 1, 2, 2, 1)
    with pytest.raises(ValueError, match="lock page"):
        ltx.encode(header, [(lock, bytes(page_size))])
    segment = ltx.decode(ltx.encode(header, [(lock - 1, bytes(page_size)),
                                             (lock + 1, bytes(page_size))]))
    assert sorted(segment.pages) == [lock - 1, lock + 1]


def test_checksummed_snapshots_verify_their_rolling_checksum(tmp_path):
    data = make_db(tmp_path / "a.db")
    pages = pages_of(data)
    header = ltx.Header(page_size=PAGE, commit=len(pages), min_txid=1, max_txid=1,
                        timestamp_ms=1, flags=0)
    good = ltx.database_checksum(pages, PAGE)
    buffer = io.BytesIO()
    encoder = ltx.Encoder(buffer, header)
    for pgno, page in pages:
        encoder.page(pgno, page)
    encoder.close(post_apply_checksum=good)
    assert ltx.decode(buffer.getvalue()).trailer.post_apply_checksum == good
    buffer = io.BytesIO()
    encoder = ltx.Encoder(buffer, header)
    for pgno, page in pages:
        encoder.page(pgno, page)
    encoder.close(post_apply_checksum=good ^ 0x10)
    with pytest.raises(CorruptSegment, match="post-apply"):
        ltx.decode(buffer.getvalue())
