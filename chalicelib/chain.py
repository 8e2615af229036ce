"""The chain layout as the control plane reads it: keys, the manifest, segment heads (pure).

``wakeful_replica`` writes the chain (docs/replication.md); it needs lz4 and crcmod, which stay
out of the Lambda. The control plane reads only a few fields of it, so this module spells out
those, with the standard library alone: the manifest's position and stop record (§4), the key
of a position and the metadata every segment carries (§1), and the LTX header's capture time.
``tests/unit/test_chain_layout.py`` checks them against what ``wakeful_replica`` writes.

It also decides where a stopped holder's last segment is, given a way to HEAD a position
(``last_segment_of``): positions of a generation are contiguous and their tokens never go
down (§10.1, §10.2), so a gallop and two bisections find it in a few dozen HEADs, no LIST.
The S3 edge that performs the HEADs is ``chain_store.ChainReader``.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from chalicelib.errors import MalformedManifest
from chalicelib.model import ChainSegment, ChainStop

# -- the layout (docs/replication.md §1) -----------------------------------------------------

META_TOKEN = "wakeful-token"
META_HOLDER = "wakeful-holder"
META_KIND = "wakeful-kind"
META_NEXT = "wakeful-next-generation"

SEGMENT, END = "segment", "end"

LTX_MAGIC = b"LTX1"
LTX_HEADER_SIZE = 100
# magic, flags, page size, commit, min txid, max txid, timestamp (ms), ... (the first 80 bytes)
_LTX_HEADER = struct.Struct(">4sIIIQQqQqqIIQ")

# Most HEADs one search may send (docs/replication.md §3.3: the manifest trails the chain's
# end by at most 64 positions, which a gallop and a bisection cover in about 15).
MAX_PROBES = 32
# Generations followed through ``end`` records in one search.
MAX_GENERATIONS = 3


def prefix(key: str) -> str:
    return f"{key}.wakeful/"


def manifest_key(key: str) -> str:
    return prefix(key) + "manifest.json"


def segment_key(key: str, generation: str, position: int) -> str:
    return f"{prefix(key)}g/{generation}/{position:016x}.ltx"


# -- the manifest (docs/replication.md §4) ---------------------------------------------------


@dataclass(frozen=True)
class SnapshotRef:
    """The newest base the manifest names: the state at ``(generation, position)``."""

    generation: str
    position: int
    at: float
    sha256: str | None
    size: int | None


@dataclass(frozen=True)
class ChainManifest:
    """The fields of ``K.wakeful/manifest.json`` the control plane reads."""

    generation: str
    position: int
    token: int
    holder: str
    epoch: int = 1
    updated_at: float | None = None
    snapshot: SnapshotRef | None = None
    stopped: ChainStop | None = None

    def summary(self) -> dict[str, Any]:
        """What ``GET /status`` shows of the chain (JSON-friendly)."""
        snapshot = self.snapshot
        stopped = self.stopped
        return {
            "generation": self.generation,
            "epoch": self.epoch,
            "position": self.position,
            "token": self.token,
            "holder": self.holder,
            "updated_at": self.updated_at,
            "snapshot": None if snapshot is None else {
                "generation": snapshot.generation, "position": snapshot.position,
                "at": snapshot.at, "sha256": snapshot.sha256, "size": snapshot.size,
            },
            "stopped": None if stopped is None else {
                "holder": stopped.holder, "token": stopped.token,
                "position": stopped.position, "at": stopped.at,
                "snapshot_sha256": stopped.snapshot_sha256,
            },
        }


def parse_manifest(data: bytes, where: str) -> ChainManifest:
    """The manifest's fields; ``MalformedManifest`` (naming ``where``) when they are not there."""
    try:
        raw = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise MalformedManifest(where, f"not JSON ({exc})") from exc
    fields = _Fields(raw, where, "manifest")
    generation = fields.text("generation")
    return ChainManifest(
        generation=generation,
        position=fields.integer("position"),
        token=fields.integer("token"),
        holder=fields.text("holder"),
        epoch=fields.integer("epoch", default=1),
        updated_at=fields.number("updated_at", default=None),
        snapshot=_snapshot(fields.mapping("snapshot"), where),
        stopped=_stopped(fields.mapping("stopped"), generation, where),
    )


def _snapshot(raw: Mapping[str, Any] | None, where: str) -> SnapshotRef | None:
    if raw is None:
        return None
    fields = _Fields(raw, where, "snapshot")
    at_ms = fields.number("at_ms", default=None)
    size = fields.number("size", default=None)
    return SnapshotRef(
        generation=fields.text("generation"),
        position=fields.integer("txid"),
        at=at_ms / 1000 if at_ms is not None else 0.0,
        sha256=fields.optional_text("sha256"),
        size=int(size) if size is not None else None,
    )


def _stopped(raw: Mapping[str, Any] | None, generation: str, where: str) -> ChainStop | None:
    if raw is None:
        return None
    fields = _Fields(raw, where, "stopped")
    at = fields.number("at")
    assert at is not None
    return ChainStop(
        holder=fields.text("holder"),
        token=fields.integer("token"),
        position=fields.integer("position"),
        at=float(at),
        generation=generation,
        snapshot_sha256=fields.optional_text("snapshot_sha256"),
    )


_REQUIRED = object()


class _Fields:
    """Typed reads of one JSON object; each missing or mistyped field is ``MalformedManifest``."""

    def __init__(self, raw: Any, where: str, what: str) -> None:
        if not isinstance(raw, Mapping):
            raise MalformedManifest(where, f"{what} is not a JSON object")
        self.raw = raw
        self.where = where
        self.what = what

    def _get(self, name: str, default: Any) -> Any:
        if name in self.raw and self.raw[name] is not None:
            return self.raw[name]
        if default is _REQUIRED:
            raise MalformedManifest(self.where, f"{self.what}.{name} is missing")
        return default

    def _wrong(self, name: str, kind: str) -> MalformedManifest:
        return MalformedManifest(
            self.where, f"{self.what}.{name} is not {kind}: {self.raw[name]!r}"
        )

    def text(self, name: str) -> str:
        value = self._get(name, _REQUIRED)
        if not isinstance(value, str) or not value:
            raise self._wrong(name, "a string")
        return value

    def optional_text(self, name: str) -> str | None:
        value = self._get(name, None)
        if value is not None and not isinstance(value, str):
            raise self._wrong(name, "a string")
        return value

    def integer(self, name: str, default: Any = _REQUIRED) -> int:
        value = self._get(name, default)
        if isinstance(value, bool) or not isinstance(value, int):
            raise self._wrong(name, "an integer")
        return value

    def number(self, name: str, default: Any = _REQUIRED) -> float | None:
        value = self._get(name, default)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self._wrong(name, "a number")
        return float(value)

    def mapping(self, name: str) -> Mapping[str, Any] | None:
        value = self._get(name, None)
        if value is not None and not isinstance(value, Mapping):
            raise self._wrong(name, "a JSON object")
        return value


# -- segments (docs/replication.md §1, §2) ---------------------------------------------------


def segment_of(
    generation: str, position: int, metadata: Mapping[str, str], landed_at: float
) -> ChainSegment:
    """A position as its HEAD shows it; ``at`` is when it landed until its header is read."""
    token = metadata.get(META_TOKEN, "")
    return ChainSegment(
        generation=generation,
        position=position,
        kind=metadata.get(META_KIND, SEGMENT),
        holder=metadata.get(META_HOLDER),
        token=int(token) if token.isdigit() else None,
        at=landed_at,
        next_generation=metadata.get(META_NEXT) or None,
    )


def ltx_timestamp(header: bytes, position: int) -> float | None:
    """The capture time (seconds) in an LTX header, ``None`` unless it is the header of the
    segment at ``position`` (its magic and its max txid)."""
    if len(header) < _LTX_HEADER.size:
        return None
    magic, _flags, _page_size, _commit, _min, max_txid, timestamp_ms, *_ = _LTX_HEADER.unpack(
        header[: _LTX_HEADER.size]
    )
    if magic != LTX_MAGIC or max_txid != position or timestamp_ms <= 0:
        return None
    return timestamp_ms / 1000


# -- where a holder's last segment is -------------------------------------------------------

# HEAD one position: the segment there, ``None`` when there is none.
Probe = Callable[[str, int], ChainSegment | None]


class _OutOfProbes(Exception):
    pass


class _Probes:
    """Each position is HEADed once, and no more than ``budget`` in all."""

    def __init__(self, probe: Probe, budget: int) -> None:
        self._probe = probe
        self.left = budget
        self.seen: dict[tuple[str, int], ChainSegment | None] = {}

    def at(self, generation: str, position: int) -> ChainSegment | None:
        where = (generation, position)
        if where not in self.seen:
            if self.left <= 0:
                raise _OutOfProbes
            self.left -= 1
            self.seen[where] = self._probe(generation, position)
        return self.seen[where]

    def newest_by(self, holder: str) -> ChainSegment | None:
        """The newest position seen written by ``holder`` (when the budget ran out: the last
        segment is at or past it, so a window measured from it is never too small)."""
        found = [s for s in self.seen.values() if s is not None and s.holder == holder]
        return max(found, key=lambda s: (s.at, s.position), default=None)


def last_segment_of(
    probe: Probe, generation: str, start: int, holder: str, token: int | None = None,
    budget: int = MAX_PROBES,
) -> ChainSegment | None:
    """The last segment ``holder`` wrote at or past ``(generation, start)`` (the manifest's
    position), ``None`` when it wrote none there.

    ``token`` (the holder's fencing token, when known) lets the search step back over a newer
    holder's positions: along a generation tokens never go down, so the holder's last
    position is the last one whose token is not above its own.
    """
    probes = _Probes(probe, budget)
    try:
        return _search(probes, generation, start, holder, token)
    except _OutOfProbes:
        return probes.newest_by(holder)


def _search(
    probes: _Probes, generation: str, start: int, holder: str, token: int | None
) -> ChainSegment | None:
    earlier: ChainSegment | None = None  # the holder's end record of a generation it left
    for _ in range(MAX_GENERATIONS):
        first = probes.at(generation, start)
        if first is None:
            return earlier  # the manifest's own position is gone: nothing to go on
        if _newer(first, token):
            return earlier  # a newer holder wrote from here on: ours are further back
        end = _end_of(probes, generation, start)
        last = probes.at(generation, end)
        assert last is not None
        if last.kind == END and last.next_generation:
            earlier = last if last.holder == holder else earlier
            generation, start = last.next_generation, 1
            continue
        return _last_by(probes, generation, start, end, holder, token) or earlier
    return earlier


def _newer(segment: ChainSegment, token: int | None) -> bool:
    return token is not None and segment.token is not None and segment.token > token


def _end_of(probes: _Probes, generation: str, start: int) -> int:
    """The last position of ``generation`` (``start`` is known to be written): positions are
    contiguous, so gallop forward until one is free, then bisect."""
    written, step = start, 1
    while True:
        free = written + step
        if probes.at(generation, free) is None:
            break
        written, step = free, step * 2
    while free - written > 1:
        middle = (written + free) // 2
        if probes.at(generation, middle) is None:
            free = middle
        else:
            written = middle
    return written


def _last_by(
    probes: _Probes, generation: str, start: int, end: int, holder: str, token: int | None
) -> ChainSegment | None:
    last = probes.at(generation, end)
    assert last is not None
    if last.holder == holder:
        return last
    if not _newer(last, token):
        return None
    # ``start`` is not newer than the holder, ``end`` is: bisect for the boundary.
    ours, theirs = start, end
    while theirs - ours > 1:
        middle = (ours + theirs) // 2
        found = probes.at(generation, middle)
        if found is None or _newer(found, token):
            theirs = middle
        else:
            ours = middle
    found = probes.at(generation, ours)
    return found if found is not None and found.holder == holder else None


__all__ = [
    "MAX_PROBES",
    "ChainManifest",
    "SnapshotRef",
    "last_segment_of",
    "ltx_timestamp",
    "manifest_key",
    "parse_manifest",
    "segment_key",
    "segment_of",
]
