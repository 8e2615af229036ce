"""LTX, the segment format: an encoder and a verifying decoder, as Litestream 0.5.17 reads it.

The format is superfly/ltx v0.5.2 (the version Litestream 0.5.17 pins), file version 3:

- a 100-byte big-endian header (magic ``LTX1``, flags, page size, commit = database size in
  pages after the segment, min/max transaction id, timestamp in ms, pre-apply checksum, WAL
  offset/size/salts, node id);
- page frames in ascending page number: a 6-byte page header (pgno, flags with bit 0 set: a
  4-byte size follows), the 4-byte compressed size, then one LZ4 *block* of the page;
- an empty page header ends the frames;
- the page index: uvarint triples (pgno, frame offset, frame size), a 0 end marker, then the
  index's byte length as a big-endian u64;
- a 16-byte trailer: the post-apply checksum and the file checksum.

The file checksum is CRC-64/ISO (Go's ``hash/crc64`` with the ISO table: reflected, register
and output inverted) over every byte of the file except the compressed page bodies, in whose
place the *uncompressed* page is hashed, and except the checksum itself; it is stored with its
top bit set. A segment whose min transaction id is 1 is a snapshot: every page 1..commit but
the lock page, in order.

Like Litestream, wakeful sets the no-checksum flag: it does not track the rolling database
checksum in the segments (pre/post-apply checksums stay 0, which Litestream's restore needs:
its compactor writes no-checksum output and refuses an input trailer that carries one). The
integrity of a segment is its CRC-64 and the sha256 the store records beside it; the integrity
of a restored database is SQLite's own check and the sha256 of the snapshots.
"""

from __future__ import annotations

import io
import struct
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import BinaryIO

import crcmod
import lz4.block

from wakeful_replica.errors import CorruptSegment

MAGIC = b"LTX1"
VERSION = 3
HEADER_SIZE = 100
PAGE_HEADER_SIZE = 6
SIZE_FIELD = 4
TRAILER_SIZE = 16
CHECKSUM_SIZE = 8

FLAG_NO_CHECKSUM = 1 << 1
FLAG_MASK = FLAG_NO_CHECKSUM
PAGE_FLAG_SIZE = 1 << 0
CHECKSUM_FLAG = 1 << 63
PENDING_BYTE = 0x40000000
MAX_PAGE_SIZE = 65536

_HEADER = struct.Struct(">4sIIIQQqQqqIIQ")  # 80 bytes; 20 reserved bytes pad it to 100
_PAGE_HEADER = struct.Struct(">IH")
_U32 = struct.Struct(">I")
_U64 = struct.Struct(">Q")
_TRAILER = struct.Struct(">QQ")

# Go's crc64.New(crc64.MakeTable(crc64.ISO)). crcmod's initCrc is the register XORed with the
# output XOR, so an inverted register with an inverted output is initCrc=0.
_CRC64_ISO_POLY = 0x1000000000000001B
_CRC64_XOR_OUT = 0xFFFFFFFFFFFFFFFF


def crc64() -> crcmod.Crc:
    """A fresh CRC-64/ISO hasher, the one LTX uses (``update(bytes)``, ``crcValue``)."""
    return crcmod.Crc(_CRC64_ISO_POLY, initCrc=0, rev=True, xorOut=_CRC64_XOR_OUT)


def lock_pgno(page_size: int) -> int:
    """The page holding SQLite's pending byte: never written to a database, never in LTX."""
    return PENDING_BYTE // page_size + 1


def valid_page_size(size: int) -> bool:
    return 512 <= size <= MAX_PAGE_SIZE and size & (size - 1) == 0


def page_checksum(pgno: int, data: bytes) -> int:
    """LTX's checksum of one page (pgno big-endian, then the page), top bit set."""
    hasher = crc64()
    hasher.update(_U32.pack(pgno))
    hasher.update(data)
    return CHECKSUM_FLAG | hasher.crcValue


def database_checksum(pages: Iterable[tuple[int, bytes]], page_size: int) -> int:
    """The rolling checksum of a whole database (XOR of its page checksums, lock page left out)."""
    total = CHECKSUM_FLAG
    skip = lock_pgno(page_size)
    for pgno, data in pages:
        if pgno != skip:
            total = CHECKSUM_FLAG | (total ^ page_checksum(pgno, data))
    return total


@dataclass(frozen=True)
class Header:
    """An LTX header. ``commit`` is the database size in pages once the segment is applied."""

    page_size: int
    commit: int
    min_txid: int
    max_txid: int
    timestamp_ms: int
    flags: int = FLAG_NO_CHECKSUM
    pre_apply_checksum: int = 0
    wal_offset: int = 0
    wal_size: int = 0
    wal_salt1: int = 0
    wal_salt2: int = 0
    node_id: int = 0

    @property
    def is_snapshot(self) -> bool:
        return self.min_txid == 1

    @property
    def no_checksum(self) -> bool:
        return bool(self.flags & FLAG_NO_CHECKSUM)

    @property
    def lock_pgno(self) -> int:
        return lock_pgno(self.page_size)

    def problems(self) -> list[str]:
        """What is wrong with this header, in the words of ltx's ``Header.Validate``."""
        found: list[str] = []
        if self.flags & ~FLAG_MASK:
            found.append(f"invalid flags: 0x{self.flags:08x}")
        if not valid_page_size(self.page_size):
            found.append(f"invalid page size: {self.page_size}")
        if self.min_txid <= 0 or self.max_txid <= 0:
            found.append("transaction ids are required")
        elif self.min_txid > self.max_txid:
            found.append(f"transaction ids out of order: ({self.min_txid},{self.max_txid})")
        if self.wal_offset < 0 or self.wal_size < 0:
            found.append("negative wal offset or size")
        if (self.wal_salt1 or self.wal_salt2) and not self.wal_offset:
            found.append("wal offset required if salt exists")
        if self.wal_size and not self.wal_offset:
            found.append("wal offset required if wal size exists")
        if (self.is_snapshot or self.no_checksum) and self.pre_apply_checksum:
            found.append("pre-apply checksum must be zero on snapshots and no-checksum files")
        if not self.is_snapshot and not self.no_checksum and not (
            self.pre_apply_checksum & CHECKSUM_FLAG
        ):
            found.append("pre-apply checksum required on non-snapshot files")
        return found

    def pack(self) -> bytes:
        packed = _HEADER.pack(
            MAGIC, self.flags, self.page_size, self.commit, self.min_txid, self.max_txid,
            self.timestamp_ms, self.pre_apply_checksum, self.wal_offset, self.wal_size,
            self.wal_salt1, self.wal_salt2, self.node_id,
        )
        return packed + bytes(HEADER_SIZE - len(packed))

    @classmethod
    def unpack(cls, data: bytes) -> Header:
        if len(data) < HEADER_SIZE:
            raise ValueError(f"short header: {len(data)} bytes")
        (magic, flags, page_size, commit, min_txid, max_txid, timestamp_ms, pre, wal_offset,
         wal_size, salt1, salt2, node_id) = _HEADER.unpack_from(data)
        if magic != MAGIC:
            raise ValueError(f"not an LTX file (magic {magic!r})")
        return cls(
            page_size=page_size, commit=commit, min_txid=min_txid, max_txid=max_txid,
            timestamp_ms=timestamp_ms, flags=flags, pre_apply_checksum=pre,
            wal_offset=wal_offset, wal_size=wal_size, wal_salt1=salt1, wal_salt2=salt2,
            node_id=node_id,
        )


@dataclass(frozen=True)
class Trailer:
    post_apply_checksum: int
    file_checksum: int


@dataclass(frozen=True)
class IndexEntry:
    offset: int
    size: int


@dataclass(frozen=True)
class Segment:
    """A decoded, verified segment: its header, its pages by number (ascending), its trailer."""

    header: Header
    pages: dict[int, bytes]
    trailer: Trailer
    size: int = 0
    index: dict[int, IndexEntry] = field(default_factory=dict)


class Encoder:
    """Writes one LTX file to a binary stream: ``Encoder(out, header)``, ``page()``s, ``close()``.

    Pages go in ascending order; a snapshot's are every page 1..commit but the lock page.
    """

    def __init__(self, out: BinaryIO, header: Header) -> None:
        problems = header.problems()
        if problems:
            raise ValueError("invalid LTX header: " + "; ".join(problems))
        self.header = header
        self._out = out
        self._hash = crc64()
        self._index: dict[int, IndexEntry] = {}
        self._previous = 0
        self._closed = False
        self.size = 0
        self._write(header.pack())

    def _write(self, data: bytes, hashed: bytes | None = None) -> None:
        self._out.write(data)
        self._hash.update(data if hashed is None else hashed)
        self.size += len(data)

    def page(self, pgno: int, data: bytes) -> None:
        header = self.header
        if self._closed:
            raise ValueError("encoder closed")
        if len(data) != header.page_size:
            raise ValueError(f"page {pgno} is {len(data)} bytes, expected {header.page_size}")
        if not 0 < pgno <= header.commit:
            raise ValueError(f"page {pgno} out of bounds for commit size {header.commit}")
        if pgno == header.lock_pgno:
            raise ValueError(f"cannot encode the lock page {pgno}")
        if header.is_snapshot:
            expected = self._previous + 1
            if expected == header.lock_pgno:
                expected += 1
            if pgno != expected:
                raise ValueError(f"snapshot pages must be sequential: {self._previous},{pgno}")
        elif pgno <= self._previous:
            raise ValueError(f"out-of-order page numbers: {self._previous},{pgno}")
        offset = self.size
        body = lz4.block.compress(data, store_size=False)
        self._write(_PAGE_HEADER.pack(pgno, PAGE_FLAG_SIZE))
        self._write(_U32.pack(len(body)))
        # The checksum covers the page as stored in the database, not its compressed form.
        self._write(body, hashed=data)
        self._index[pgno] = IndexEntry(offset, self.size - offset)
        self._previous = pgno

    def close(self, post_apply_checksum: int = 0) -> Trailer:
        """End the page block, write the index and the trailer; returns the trailer."""
        if self._closed:
            raise ValueError("encoder closed")
        header = self.header
        if header.is_snapshot and self._previous != _last_page(header.commit, header.page_size):
            raise ValueError(
                f"snapshot ends at page {self._previous}, the database has {header.commit}"
            )
        if header.no_checksum and post_apply_checksum:
            raise ValueError("post-apply checksum not allowed on a no-checksum file")
        if not header.no_checksum and not post_apply_checksum & CHECKSUM_FLAG:
            raise ValueError("post-apply checksum required")
        self._write(_PAGE_HEADER.pack(0, 0))
        start = self.size
        index = bytearray()
        for pgno in sorted(self._index):
            entry = self._index[pgno]
            index += _uvarint(pgno) + _uvarint(entry.offset) + _uvarint(entry.size)
        index += _uvarint(0)
        self._write(bytes(index))
        self._write(_U64.pack(self.size - start))
        self._write(_U64.pack(post_apply_checksum))
        file_checksum = CHECKSUM_FLAG | self._hash.crcValue
        self._out.write(_U64.pack(file_checksum))
        self.size += CHECKSUM_SIZE
        self._closed = True
        return Trailer(post_apply_checksum, file_checksum)


def encode(header: Header, pages: Iterable[tuple[int, bytes]]) -> bytes:
    """One LTX file in memory (segments are small; snapshots stream through ``Encoder``)."""
    buffer = io.BytesIO()
    encoder = Encoder(buffer, header)
    for pgno, data in pages:
        encoder.page(pgno, data)
    encoder.close()
    return buffer.getvalue()


def decode(data: bytes, where: str = "segment") -> Segment:
    """Decode and verify a whole LTX file; raises ``CorruptSegment`` saying what is wrong."""
    try:
        return _decode(memoryview(data), where)
    except CorruptSegment:
        raise
    except (ValueError, struct.error, lz4.block.LZ4BlockError) as exc:
        raise CorruptSegment(where, str(exc)) from exc


def _decode(data: memoryview, where: str) -> Segment:
    if len(data) < HEADER_SIZE + PAGE_HEADER_SIZE + TRAILER_SIZE:
        raise CorruptSegment(where, f"truncated: {len(data)} bytes")
    header = Header.unpack(bytes(data[:HEADER_SIZE]))
    problems = header.problems()
    if problems:
        raise CorruptSegment(where, "invalid header: " + "; ".join(problems))
    hasher = crc64()
    hasher.update(data[:HEADER_SIZE])
    pages: dict[int, bytes] = {}
    frames: dict[int, IndexEntry] = {}
    position = HEADER_SIZE
    previous = 0
    while True:
        pgno, flags = _PAGE_HEADER.unpack_from(data, position)
        hasher.update(data[position:position + PAGE_HEADER_SIZE])
        if pgno == 0 and flags == 0:
            position += PAGE_HEADER_SIZE
            break
        start = position
        position += PAGE_HEADER_SIZE
        _check_frame(header, pgno, flags, previous)
        (length,) = _U32.unpack_from(data, position)
        hasher.update(data[position:position + SIZE_FIELD])
        position += SIZE_FIELD
        body = bytes(data[position:position + length])
        if len(body) != length:
            raise CorruptSegment(where, f"page {pgno} truncated")
        position += length
        page = lz4.block.decompress(body, uncompressed_size=header.page_size)
        if len(page) != header.page_size:
            raise CorruptSegment(where, f"page {pgno} decompressed to {len(page)} bytes")
        hasher.update(page)
        pages[pgno] = page
        frames[pgno] = IndexEntry(start, position - start)
        previous = pgno
    if header.is_snapshot and previous != _last_page(header.commit, header.page_size):
        raise CorruptSegment(
            where, f"snapshot ends at page {previous}, the database has {header.commit}"
        )
    index_start = position
    index: dict[int, IndexEntry] = {}
    while True:
        pgno, position = _read_uvarint(data, position)
        if pgno == 0:
            break
        offset, position = _read_uvarint(data, position)
        size, position = _read_uvarint(data, position)
        index[pgno] = IndexEntry(offset, size)
    (index_size,) = _U64.unpack_from(data, position)
    position += 8
    if index_size != position - 8 - index_start:
        raise CorruptSegment(where, "page index size does not match the index")
    if index != frames:
        raise CorruptSegment(where, "page index does not match the page frames")
    if len(data) - position != TRAILER_SIZE:
        raise CorruptSegment(where, f"{len(data) - position} bytes where the trailer should be")
    hasher.update(data[index_start:position + CHECKSUM_SIZE])
    trailer = Trailer(*_TRAILER.unpack_from(data, position))
    if trailer.file_checksum != CHECKSUM_FLAG | hasher.crcValue:
        raise CorruptSegment(where, "file checksum mismatch")
    if header.no_checksum and trailer.post_apply_checksum:
        raise CorruptSegment(where, "post-apply checksum on a no-checksum file")
    if header.is_snapshot and not header.no_checksum and trailer.post_apply_checksum != (
        database_checksum(pages.items(), header.page_size)
    ):
        raise CorruptSegment(where, "post-apply checksum does not match the snapshot's pages")
    return Segment(header, pages, trailer, size=len(data), index=index)


def _check_frame(header: Header, pgno: int, flags: int, previous: int) -> None:
    if flags != PAGE_FLAG_SIZE:
        # Version-3 files from before the size field (LZ4 frames) are not written by anyone
        # wakeful reads from; refusing them is safer than guessing their length.
        raise ValueError(f"page {pgno}: unsupported page flags 0x{flags:04x}")
    if pgno > header.commit or pgno == header.lock_pgno:
        raise ValueError(f"page {pgno} out of bounds (commit {header.commit})")
    if pgno <= previous:
        raise ValueError(f"out-of-order page numbers: {previous},{pgno}")
    if header.is_snapshot:
        expected = previous + 1 + (previous + 1 == header.lock_pgno)
        if pgno != expected:
            raise ValueError(f"snapshot pages must be sequential: {previous},{pgno}")


def _last_page(commit: int, page_size: int) -> int:
    return commit - 1 if commit == lock_pgno(page_size) else commit


def _uvarint(value: int) -> bytes:
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _read_uvarint(data: memoryview, position: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if position >= len(data) or shift > 63:
            raise ValueError("bad uvarint in the page index")
        byte = data[position]
        position += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, position
        shift += 7


# -- applying segments to a database file ---------------------------------------------------


def apply(segment: Segment, out: BinaryIO) -> None:
    """Write a segment's pages into a database file and cut it to the segment's size.

    A snapshot's lock page (only in databases of 1 GiB and more) is written as zeros.
    """
    header = segment.header
    size = header.page_size
    for pgno, data in segment.pages.items():
        out.seek((pgno - 1) * size)
        out.write(data)
    out.truncate(header.commit * size)
