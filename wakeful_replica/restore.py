"""Rebuilding a state from the chain: the current one, one at a txid or a time, and ``verify``.

A restore is one GET of the manifest, then parallel GETs: the base it names (a version of K,
or a generation's first position) beside the segments from there to the manifest's position,
then batches past it until a position is missing (the end of the chain), following end
records into the next generation. No LIST (docs/replication.md §6). Every segment is checked
(sha256, LTX CRC-64 and framing, its position); a base by its sha256. A missing position below
what the manifest names, or a bad one, stops the restore with ``ChainBroken``: the state up to
the last good position is kept aside, never returned as the current database.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import BinaryIO

from chalicelib.errors import CorruptDatabase
from chalicelib.files import remove_file
from chalicelib.integrity import check
from wakeful_replica import compaction, ltx
from wakeful_replica.chain import (
    END,
    META_GENERATION,
    META_NEXT,
    META_SHA256,
    META_TXID,
    Found,
    Segments,
)
from wakeful_replica.compaction import Compactions, Range
from wakeful_replica.errors import ChainBroken, CorruptSegment, NothingToRestore
from wakeful_replica.manifest import OBJECT, Base, Manifest, Manifests
from wakeful_replica.objects import Objects

# Past the manifest: a first batch of 2 positions (1 after a recorded clean stop, where only a
# stale holder's last write can follow), one more per batch that found every position.
PROBE_BATCH = 2
MAX_BATCH = 64
log = logging.getLogger(__name__)
DEFAULT_PAGE_SIZE = 4096

# Called after each applied position: (generation, txid, the database file so far).
Visitor = Callable[[str, int, BinaryIO], None]


@dataclass(frozen=True)
class Restored:
    """A rebuilt state: where it is in the chain, and how it was reached."""

    path: str
    generation: str
    txid: int
    segments: int  # positions applied after the base
    base: Base | None
    changed_since_base: bool  # some position after the base changed pages
    timestamp_ms: int
    page_size: int
    commit: int
    followed: tuple[tuple[str, int], ...] = ()  # (generation, its end position) passed through
    start: Found | None = None  # the start record read, when the restore went through one
    fetched: int = 0  # segment and compaction GETs (the base and the manifest not counted)
    warnings: tuple[str, ...] = ()  # compactions that were missing or bad (positions used)


@dataclass
class VerifyReport:
    """What ``verify`` walked, and every problem it found (empty when the chain is whole)."""

    generations: list[str] = field(default_factory=list)
    positions: int = 0
    bases: int = 0
    compactions: int = 0
    end: tuple[str, int] | None = None
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


class Restorer:
    def __init__(
        self, objects: Objects, segments: Segments, manifests: Manifests, current_key: str,
        concurrency: int = 8, probe_batch: int = PROBE_BATCH, max_batch: int = MAX_BATCH,
    ) -> None:
        self.objects = objects
        self.segments = segments
        self.manifests = manifests
        self.current_key = current_key
        self.concurrency = concurrency
        self.probe_batch = probe_batch
        self.max_batch = max_batch
        self.compactions = Compactions(segments.objects, segments.prefix)

    # -- the three kinds of restore ---------------------------------------------------------

    def current(self, destination: str, manifest: Manifest | None = None) -> Restored:
        """The state at the end of the chain (what a boot continues from)."""
        manifest = manifest or self._manifest()
        return self._rebuild(
            destination, manifest.generation, manifest.snapshot, manifest.position,
            compacted=manifest.compactions.get(manifest.generation, ()),
            probe=_first_probe(manifest, manifest.generation, self.probe_batch),
        )

    def to_txid(
        self, destination: str, txid: int, generation: str | None = None,
        manifest: Manifest | None = None,
    ) -> Restored:
        """The state at position ``txid`` of ``generation`` (default: the current one)."""
        manifest = manifest or self._manifest()
        generation = generation or manifest.generation
        base = _base_at_or_before(manifest, generation, lambda item: item.txid <= txid)
        restored = self._rebuild(
            destination, generation, base, _known(manifest, generation), upto=txid,
            follow=False, compacted=manifest.compactions.get(generation, ()),
            probe=_first_probe(manifest, generation, self.probe_batch),
        )
        if restored.txid < txid:
            remove_file(destination)
            raise NothingToRestore(
                f"txid {txid} is past the end of generation {generation} ({restored.txid})"
            )
        return restored

    def to_time(
        self, destination: str, at_ms: int, manifest: Manifest | None = None
    ) -> Restored:
        """The state as of ``at_ms``: the last position captured at or before it."""
        manifest = manifest or self._manifest()
        started = [item for item in manifest.lineage if item.started_ms <= at_ms]
        if not started:
            raise NothingToRestore(
                f"no state at or before {at_ms} ms inside the retention window"
            )
        generation = started[-1].id
        base = _base_at_or_before(manifest, generation, lambda item: item.at_ms <= at_ms)
        return self._rebuild(
            destination, generation, base, _known(manifest, generation), before_ms=at_ms,
            compacted=manifest.compactions.get(generation, ()),
            probe=_first_probe(manifest, generation, self.probe_batch),
        )

    def _manifest(self) -> Manifest:
        manifest = self.manifests.read()
        if manifest is None:
            raise NothingToRestore(f"no chain at s3://{self.objects.bucket}/{self.manifests.key}")
        return manifest

    # -- verify -----------------------------------------------------------------------------

    def verify(self, scratch: str) -> VerifyReport:
        """Walk every retained position of every generation, and every base, checking each.

        Segments by sha256, CRC-64, framing and position; bases by the sha256 of their bytes
        and against the state the chain rebuilds at their position; the end state by
        ``integrity_check``.
        """
        manifest = self._manifest()
        report = VerifyReport()
        bases = {(item.generation, item.txid): item for item in manifest.history}
        generations = [item.id for item in manifest.lineage] or [manifest.generation]
        for generation in generations:
            report.generations.append(generation)
            start = manifest.retained.get(generation, 1)
            base = next((item for item in manifest.history if item.generation == generation
                         and item.txid == start), None)
            if start > 1 and base is None:
                report.problems.append(
                    f"generation {generation}: no base at its first kept position {start}"
                )
                continue

            def visit(gen: str, txid: int, out: BinaryIO) -> None:
                report.positions += 1
                known = bases.get((gen, txid))
                if known is not None:
                    self._check_base(known, out, report)

            target = os.path.join(scratch, f"verify-{generation}.db")
            try:
                restored = self._rebuild(
                    target, generation, base, _known(manifest, generation), follow=False,
                    visit=visit,
                )
            except (ChainBroken, NothingToRestore) as exc:
                report.problems.append(f"generation {generation}: {exc}")
                continue
            if base is not None:
                report.bases += 1  # the base itself was checked by its sha256 on the way in
            report.end = (generation, restored.txid)
            if generation == generations[-1] and os.path.getsize(target):
                try:
                    check(target, full=True)
                except CorruptDatabase as exc:
                    report.problems.append(f"generation {generation}: {exc}")
            remove_file(target)
        for generation, ranges in manifest.compactions.items():
            for first, last in ranges:
                report.compactions += 1
                problem = self._check_compaction(generation, first, last)
                if problem:
                    report.problems.append(problem)
        return report

    def _check_compaction(self, generation: str, first: int, last: int) -> str | None:
        """Whether the named compaction ``first..last`` is the merge of its positions."""
        where = self.compactions.key(generation, first, last)
        try:
            found = self.compactions.get(generation, first, last)
        except CorruptSegment as exc:
            return f"compaction {where}: {exc}"
        if found is None:
            return f"compaction {where} is missing"
        with ThreadPoolExecutor(max_workers=self.concurrency) as pool:
            parts = list(pool.map(lambda n: self._fetch(generation, n),
                                  range(first, last + 1)))
        for number, part in enumerate(parts, start=first):
            if not isinstance(part, Found):
                return f"compaction {where}: position {number} cannot be read to check it"
        merged = ltx.decode(compaction.merge(first, [part.segment for part in parts]))
        if not compaction.same_state(found.segment, merged):
            return f"compaction {where} is not the merge of positions {first}..{last}"
        return None

    def _check_base(self, base: Base, out: BinaryIO, report: VerifyReport) -> None:
        out.flush()
        out.seek(0)
        digest = hashlib.sha256()
        while chunk := out.read(1 << 20):
            digest.update(chunk)
        out.seek(0, os.SEEK_END)
        if digest.hexdigest() != base.sha256:
            report.problems.append(
                f"base {base.generation}@{base.txid}: the chain rebuilds another state there"
            )
        if base.source == OBJECT:
            sink = _Discard()
            got = self.objects.download(self.current_key, sink, base.version_id)
            report.bases += 1
            if got is None:
                report.problems.append(f"base {base.generation}@{base.txid}: version is gone")
            elif got[1] != base.sha256:
                report.problems.append(f"base {base.generation}@{base.txid}: sha256 mismatch")

    # -- the rebuild ------------------------------------------------------------------------

    def _rebuild(
        self, destination: str, generation: str, base: Base | None, known: int, *,
        upto: int | None = None, before_ms: int | None = None, follow: bool = True,
        visit: Visitor | None = None, compacted: tuple[Range, ...] = (),
        probe: int | None = None,
    ) -> Restored:
        partial = destination + ".partial"
        remove_file(partial)
        progress = _Progress(generation, base.txid if base else 0,
                             base.at_ms if base else 0)
        with ThreadPoolExecutor(max_workers=self.concurrency + 1) as pool, \
                open(partial, "w+b") as out:
            # The base downloads while the first window of segments is fetched.
            pending: list[Future[int]] = (
                [pool.submit(self._write_base, out, base)] if base is not None else []
            )
            gen = generation
            walk = _Walk(known, upto, before_ms, compacted, probe or self.probe_batch)
            while True:
                moved = self._walk(pool, out, pending, gen, progress, walk, visit, partial)
                if pending:
                    progress.txid = self._base_result(pending.pop(), partial)
                if moved is None or not follow:
                    break
                # A generation the manifest does not name: no compactions, probe from 2.
                gen, walk = moved, _Walk(0, upto, before_ms, (), self.probe_batch)
        if progress.txid == 0:
            remove_file(partial)
            raise NothingToRestore(f"generation {generation} holds no state")
        os.replace(partial, destination)
        page_size, commit = _shape(destination)
        return Restored(
            destination, progress.generation, progress.txid, progress.applied, base,
            progress.changed, progress.timestamp_ms, page_size, commit,
            tuple(progress.followed), progress.start, progress.fetched,
            tuple(progress.warnings),
        )

    def _walk(
        self, pool: ThreadPoolExecutor, out: BinaryIO, pending: list[Future[int]], gen: str,
        progress: _Progress, walk: _Walk, visit: Visitor | None, partial: str,
    ) -> str | None:
        """Apply ``gen``'s positions after ``progress``; the next generation if it ended."""
        known, upto, before_ms = walk.known, walk.upto, walk.before_ms
        first = progress.txid + 1 if progress.generation == gen else 1
        for number, item in self._positions(pool, gen, first, walk, progress):
            if pending:
                progress.txid = self._base_result(pending.pop(), partial)
            if gen == progress.generation and number <= progress.txid:
                # An unversioned K held a later state of this generation. (A compaction
                # reaching past it is still exact: its merge applies to any state inside it.)
                continue
            if isinstance(item, CorruptSegment):
                self._broken(partial, gen, number, str(item), progress)
            if item is None:
                if number <= known:
                    self._broken(partial, gen, number, f"position {number} is missing",
                                 progress)
                return None  # past what the manifest names, the first gap is the end
            header = item.segment.header
            if before_ms is not None and header.timestamp_ms > before_ms:
                return None
            if item.info.kind == END:
                progress.ended(gen, number)
                return item.info.metadata.get(META_NEXT)
            ltx.apply(item.segment, out)
            progress.applied_at(gen, number, item)
            if visit is not None:
                visit(gen, number, out)
            if upto is not None and number >= upto:
                return None
        return None

    def _positions(
        self, pool: ThreadPoolExecutor, generation: str, first: int, walk: _Walk,
        progress: _Progress,
    ) -> Iterator[tuple[int, Found | CorruptSegment | None]]:
        """Positions from ``first`` in order; ends at a gap.

        Up to what the manifest vouches for: the fewest steps (its compactions, then single
        positions), fetched in parallel windows; a compaction that is missing, bad, or past a
        ``before_ms`` is replaced by its positions. Past it: batches that grow while every
        position is there.
        """
        number, upto = first, walk.upto
        limit = walk.known if upto is None else min(walk.known, upto)
        steps = compaction.cover(number, limit, walk.compacted)
        for start in range(0, len(steps), self.max_batch):
            window = steps[start:start + self.max_batch]
            progress.fetched += len(window)
            for (a, b), item in zip(
                window, pool.map(lambda step: self._fetch(generation, *step), window),
                strict=True,
            ):
                if a == b:
                    yield a, item
                    if item is None or isinstance(item, CorruptSegment):
                        return
                    continue
                if self._usable(generation, a, b, item, walk.before_ms, progress):
                    assert isinstance(item, Found)
                    yield b, item
                    continue
                for position, single in self._window(pool, generation, range(a, b + 1),
                                                     progress):
                    yield position, single
                    if single is None or isinstance(single, CorruptSegment):
                        return
        number = max(number, limit + 1)
        batch = walk.probe
        while upto is None or number <= upto:
            size = batch if upto is None else min(batch, upto - number + 1)
            window = range(number, number + size)
            for position, item in self._window(pool, generation, window, progress):
                yield position, item
                if item is None or isinstance(item, CorruptSegment):
                    return
            number += size
            batch = min(batch + 1, self.max_batch)

    def _window(
        self, pool: ThreadPoolExecutor, generation: str, window: range, progress: _Progress,
    ) -> Iterator[tuple[int, Found | CorruptSegment | None]]:
        progress.fetched += len(window)
        yield from zip(window, pool.map(lambda n: self._fetch(generation, n), window),
                       strict=True)

    def _usable(
        self, generation: str, a: int, b: int, item: Found | CorruptSegment | None,
        before_ms: int | None, progress: _Progress,
    ) -> bool:
        """Whether a compaction stands for ``a..b`` here; warns when it should and cannot."""
        if isinstance(item, Found):
            # Inside the range a position may be past the time asked for: use the positions.
            return before_ms is None or compaction.latest_ms(item) <= before_ms
        what = "missing" if item is None else f"unreadable ({item})"
        warning = (f"compaction {self.compactions.key(generation, a, b)} is {what}: "
                   f"reading positions {a}..{b} instead")
        log.warning(warning)
        progress.warnings.append(warning)
        return False

    def _fetch(
        self, generation: str, txid: int, last: int | None = None
    ) -> Found | CorruptSegment | None:
        try:
            if last is not None and last != txid:
                return self.compactions.get(generation, txid, last)
            return self.segments.get(generation, txid)
        except CorruptSegment as exc:
            return exc

    def _write_base(self, out: BinaryIO, base: Base) -> int:
        """Write the base's state into ``out``; returns the txid it holds."""
        if base.source != OBJECT:
            found = self.segments.get(base.generation, base.txid)
            if found is None:
                raise ChainBroken(self.segments.key(base.generation, base.txid),
                                  "the base segment is missing", 0)
            ltx.apply(found.segment, out)
            return base.txid
        got = self.objects.download(self.current_key, out, base.version_id)
        where = f"s3://{self.objects.bucket}/{self.current_key}"
        if got is None:
            raise ChainBroken(where, f"snapshot version {base.version_id} is missing", 0)
        stored, digest = got
        if base.version_id is not None:
            if digest != base.sha256:
                raise ChainBroken(where, f"snapshot version {base.version_id}: sha256 mismatch",
                                  0)
            return base.txid
        # An unversioned bucket: K may hold a later snapshot of the same generation.
        metadata = stored.metadata
        held = int(metadata.get(META_TXID, "0") or 0)
        if (metadata.get(META_GENERATION) != base.generation or held < base.txid
                or metadata.get(META_SHA256) != digest):
            raise ChainBroken(where, "the snapshot the manifest names is not there", 0)
        return held

    def _base_result(self, based: Future[int], partial: str) -> int:
        try:
            return based.result()
        except ChainBroken as exc:
            remove_file(partial)
            raise ChainBroken(exc.where, exc.reason, 0) from exc

    def _broken(
        self, partial: str, generation: str, number: int, reason: str, progress: _Progress
    ) -> None:
        raise ChainBroken(
            self.segments.key(generation, number), reason, progress.txid,
            partial=partial if progress.txid else None,
        )


class _Progress:
    """How far a rebuild got: the last applied position and what it applied."""

    def __init__(self, generation: str, txid: int, timestamp_ms: int) -> None:
        self.generation = generation
        self.txid = txid
        self.timestamp_ms = timestamp_ms
        self.applied = 0
        self.changed = False
        self.followed: list[tuple[str, int]] = []
        self.start: Found | None = None
        self.fetched = 0
        self.warnings: list[str] = []

    def applied_at(self, generation: str, txid: int, found: Found) -> None:
        header = found.segment.header
        if generation != self.generation or header.is_snapshot:
            self.changed = True
        self.generation, self.txid, self.timestamp_ms = generation, txid, header.timestamp_ms
        # A compaction stands for every position of its range.
        self.applied += header.max_txid - header.min_txid + 1 if header.min_txid > 1 else 1
        self.changed = self.changed or bool(found.segment.pages)
        if txid == 1:
            self.start = found

    def ended(self, generation: str, position: int) -> None:
        self.followed.append((generation, position))



@dataclass(frozen=True)
class _Walk:
    """How one generation is walked: how far the manifest vouches (``known``), where to stop
    (``upto``, ``before_ms``), the compactions it names, the first probe batch."""

    known: int
    upto: int | None
    before_ms: int | None
    compacted: tuple[Range, ...]
    probe: int


class _Discard:
    def write(self, data: bytes) -> int:
        return len(data)


def _known(manifest: Manifest, generation: str) -> int:
    """The last position of ``generation`` the manifest vouches for (below it, gaps are bad)."""
    if generation == manifest.generation:
        return manifest.position
    info = manifest.generation_info(generation)
    return info.end - 1 if info is not None and info.end else 0


def _first_probe(manifest: Manifest, generation: str, default: int) -> int:
    """1 after a clean stop recorded at the manifest's position: only a stale holder's last
    write (or a boot's claim whose manifest update was lost) can follow it."""
    stopped = manifest.stopped
    if (generation == manifest.generation and stopped is not None
            and stopped.position >= manifest.position):
        return 1
    return default


def _base_at_or_before(
    manifest: Manifest, generation: str, fits: Callable[[Base], bool]
) -> Base | None:
    """The newest base of ``generation`` that ``fits``; ``None`` to start from position 1."""
    found = [item for item in manifest.history if item.generation == generation and fits(item)]
    if found:
        return max(found, key=lambda item: item.txid)
    if manifest.retained.get(generation, 1) > 1:
        raise NothingToRestore(
            f"generation {generation} is retained from position "
            f"{manifest.retained[generation]}: that point is outside the retention window"
        )
    return None


def _shape(path: str) -> tuple[int, int]:
    """(page size, pages) of a database file; an empty file has the default page size."""
    size = os.path.getsize(path)
    if size < 100:
        return DEFAULT_PAGE_SIZE, 0
    with open(path, "rb") as handle:
        header = handle.read(100)
    raw = int.from_bytes(header[16:18], "big")
    page_size = 65536 if raw == 1 else raw
    return page_size, size // page_size


__all__ = ["Restored", "Restorer", "VerifyReport"]
