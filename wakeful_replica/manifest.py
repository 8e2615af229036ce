"""The manifest: a small JSON hint naming the newest generation, snapshot and position.

It is moved only forward, only by a token at least its own, by compare-and-swap on its ETag
(docs/replication.md §4). Restore starts from it and probes past it, so a manifest that is
behind costs requests, never a wrong state. It also carries what restore and retention need
without a LIST: the restore bases inside the retention window (``history``), the generations
they belong to (``lineage``), the version of the current object the chain has accounted for
(``accounted``), and the record of a clean stop (``stopped``).
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from wakeful_replica.compaction import listed
from wakeful_replica.errors import ConditionFailed, ManifestConflict, Superseded
from wakeful_replica.objects import ONLY_IF_ABSENT, Objects, only_if_unchanged

MANIFEST_VERSION = 2
UPDATE_ATTEMPTS = 10

OBJECT = "object"  # a base held by a version of the current object K (a plain SQLite file)
SEGMENT = "segment"  # a base held by the full LTX segment at (generation, txid)


@dataclass(frozen=True)
class Base:
    """A whole state a restore can start from: the state at ``(generation, txid)``."""

    generation: str
    txid: int
    at_ms: int  # the capture time of that state (its position's LTX timestamp)
    sha256: str
    size: int
    source: str = OBJECT
    version_id: str | None = None
    etag: str | None = None

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> Base:
        return cls(
            generation=str(raw["generation"]), txid=int(raw["txid"]), at_ms=int(raw["at_ms"]),
            sha256=str(raw["sha256"]), size=int(raw["size"]), source=str(raw["source"]),
            version_id=raw.get("version_id"), etag=raw.get("etag"),
        )


@dataclass(frozen=True)
class Generation:
    """One generation of the chain: where it came from and, once ended, where its end is."""

    id: str
    epoch: int
    started_ms: int
    previous: str | None = None
    end: int | None = None  # position of its end record
    origin: str = "start"  # start, adoption, operator-restore, restore

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> Generation:
        end = raw.get("end")
        return cls(
            id=str(raw["id"]), epoch=int(raw["epoch"]), started_ms=int(raw["started_ms"]),
            previous=raw.get("previous"), end=None if end is None else int(end),
            origin=str(raw.get("origin", "start")),
        )


@dataclass(frozen=True)
class Accounted:
    """A version of the current object K the chain already took into account."""

    version_id: str | None
    etag: str

    def matches(self, version_id: str | None, etag: str) -> bool:
        if self.version_id or version_id:
            return self.version_id == version_id
        return self.etag == etag


@dataclass(frozen=True)
class Stop:
    """A holder stopped cleanly: everything up to ``position`` is in the chain (and in K)."""

    holder: str
    token: int
    position: int
    at: float
    snapshot_sha256: str | None = None


@dataclass(frozen=True)
class Manifest:
    generation: str
    position: int
    token: int
    holder: str
    epoch: int = 1
    snapshot: Base | None = None
    history: tuple[Base, ...] = ()  # restore bases, oldest first; the snapshot is the last
    lineage: tuple[Generation, ...] = ()  # oldest first; the current generation is the last
    accounted: Accounted | None = None
    stopped: Stop | None = None
    retained: dict[str, int] = field(default_factory=dict)  # generation -> first kept position
    # generation -> compacted ranges (min, max txid) past its newest base (compaction.listed)
    compactions: dict[str, tuple[tuple[int, int], ...]] = field(default_factory=dict)
    # generation -> positions of full segments, where the writer's compactor restarted its
    # alignment (retention finds the compaction keys aligned on them, without a LIST)
    restarts: dict[str, tuple[int, ...]] = field(default_factory=dict)
    etag: str | None = field(default=None, compare=False)

    @property
    def order(self) -> tuple[int, int]:
        """Where the manifest points, in the order the chain grows: (epoch, position)."""
        return (self.epoch, self.position)

    def body(self, now: float | None = None) -> bytes:
        return json.dumps({
            "version": MANIFEST_VERSION, "generation": self.generation, "epoch": self.epoch,
            "position": self.position, "token": self.token, "holder": self.holder,
            "snapshot": self.snapshot.to_json() if self.snapshot else None,
            "history": [base.to_json() for base in self.history],
            "lineage": [generation.to_json() for generation in self.lineage],
            "accounted": dataclasses.asdict(self.accounted) if self.accounted else None,
            "stopped": dataclasses.asdict(self.stopped) if self.stopped else None,
            "retained": self.retained,
            "compactions": {gen: [list(item) for item in ranges]
                            for gen, ranges in self.compactions.items() if ranges},
            "restarts": {gen: list(points) for gen, points in self.restarts.items() if points},
            "updated_at": time.time() if now is None else now,
        }, sort_keys=True).encode()

    @classmethod
    def parse(cls, data: bytes, etag: str | None = None) -> Manifest:
        raw = json.loads(data)
        snapshot = raw.get("snapshot")
        accounted = raw.get("accounted")
        stopped = raw.get("stopped")
        return cls(
            generation=str(raw["generation"]), position=int(raw["position"]),
            token=int(raw["token"]), holder=str(raw["holder"]), epoch=int(raw.get("epoch", 1)),
            snapshot=Base.from_json(snapshot) if snapshot else None,
            history=tuple(Base.from_json(item) for item in raw.get("history") or ()),
            lineage=tuple(Generation.from_json(item) for item in raw.get("lineage") or ()),
            accounted=Accounted(accounted.get("version_id"), str(accounted["etag"]))
            if accounted else None,
            stopped=Stop(**stopped) if stopped else None,
            retained={str(k): int(v) for k, v in (raw.get("retained") or {}).items()},
            compactions={str(gen): tuple((int(a), int(b)) for a, b in ranges)
                         for gen, ranges in (raw.get("compactions") or {}).items()},
            restarts={str(gen): tuple(int(point) for point in points)
                      for gen, points in (raw.get("restarts") or {}).items()},
            etag=etag,
        )

    def generation_info(self, generation: str | None = None) -> Generation | None:
        wanted = generation or self.generation
        return next((item for item in self.lineage if item.id == wanted), None)

    def with_base(self, base: Base) -> Manifest:
        """This manifest naming ``base`` as its newest snapshot (kept in the history too)."""
        others = (item for item in self.history
                  if (item.generation, item.txid) != (base.generation, base.txid))
        history = (*others, base)
        moved = dataclasses.replace(self, snapshot=base, history=history)
        return moved.with_compactions(self.generation, ())

    def with_restarts(self, generation: str, points: Iterable[int]) -> Manifest:
        """This manifest also naming the full-segment positions ``points`` of ``generation``."""
        merged = tuple(sorted({*self.restarts.get(generation, ()), *points}))
        if not merged:
            return self
        return dataclasses.replace(self, restarts={**self.restarts, generation: merged})

    def with_compactions(
        self, generation: str, ranges: Iterable[tuple[int, int]]
    ) -> Manifest:
        """This manifest also naming the compactions ``ranges`` of ``generation``: only the
        current generation's, past its newest base, none inside another (a short list)."""
        if generation != self.generation:
            return dataclasses.replace(self, compactions={})
        after = self.snapshot.txid if (
            self.snapshot is not None and self.snapshot.generation == generation) else 1
        kept = listed((*self.compactions.get(generation, ()), *ranges), after)
        return dataclasses.replace(self, compactions={generation: kept} if kept else {})


def move(seen: Manifest | None, new: Manifest) -> str:
    """Decide a manifest write: ``"write"``, or ``"keep"`` (it would not move forward).

    Raises ``Superseded`` when the manifest belongs to a newer token than the writer's.
    """
    if seen is None:
        return "write"
    if seen.token > new.token:
        raise Superseded("manifest", new.token, seen.token)
    if new.order < seen.order:
        return "keep"  # never backwards
    if new.order == seen.order and same_content(seen, new):
        return "keep"
    return "write"


def same_content(a: Manifest, b: Manifest) -> bool:
    return dataclasses.replace(a, etag=None) == dataclasses.replace(b, etag=None)


class Manifests:
    """The manifest object of one chain: read, compare-and-swap, update in a CAS loop."""

    def __init__(self, objects: Objects, key: str) -> None:
        self.objects = objects
        self.key = key

    def read(self) -> Manifest | None:
        found = self.objects.get(self.key)
        if found is None:
            return None
        return Manifest.parse(found.body, etag=found.stored.etag)

    def put(self, seen: Manifest | None, new: Manifest) -> Manifest:
        """Compare-and-swap ``seen`` → ``new`` (only forward, only by a token ≥ the seen one).

        ``ManifestConflict`` when it changed since ``seen``: re-read and try again.
        """
        if move(seen, new) == "keep":
            assert seen is not None
            return seen
        condition = only_if_unchanged(seen.etag) if seen and seen.etag else ONLY_IF_ABSENT
        try:
            stored = self.objects.put(
                self.key, new.body(), {}, condition, content_type="application/json"
            )
        except ConditionFailed as exc:
            raise ManifestConflict(self.key, seen.etag if seen else None) from exc
        return dataclasses.replace(new, etag=stored.etag)

    def update(
        self, change: Callable[[Manifest | None], Manifest],
        seen: Manifest | None = None, attempts: int = UPDATE_ATTEMPTS,
    ) -> Manifest:
        """Apply ``change`` to the newest manifest until a compare-and-swap lands.

        ``change`` builds the new manifest from the one read, so a writer that lost a race (or
        whose own earlier PUT landed with its answer lost) merges instead of overwriting.
        """
        current = seen if seen is not None else self.read()
        for _ in range(attempts):
            try:
                return self.put(current, change(current))
            except ManifestConflict:
                current = self.read()
        raise ManifestConflict(self.key, current.etag if current else None)


__all__ = ["Accounted", "Base", "Generation", "Manifest", "Manifests", "Stop", "move"]
