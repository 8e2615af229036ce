"""A holder's boot: find the current state, honour out-of-band uploads, claim, adopt.

``boot`` runs after the lease is acquired and before the app starts (docs/replication.md §3.1,
§3.2, §7, §8). It ends with the chain's next position claimed by this holder, the state at the
position before it in ``destination``, and the manifest naming it, or raises: ``Superseded``
(a newer holder has claimed: do not start the app), ``ChainBroken`` (the chain cannot be read
past a position: do not start the app on an older state), ``StoreUnavailable``.

What it finds decides the path:

- a manifest: restore the end of the chain; then ``K`` is either accounted for (our own,
  stale holders' snapshots included) or an upload from outside wakeful: verified, it starts a
  new generation (the old chain ends, kept for point-in-time restore); failing verification it
  is refused loudly and the chain continues;
- no manifest but ``K`` (a bucket of today's agent or of ``db-sync.sh``): verified exactly as
  today's store does (falling back to the newest good version), it starts the first generation;
  nothing is deleted or moved;
- neither: the first generation starts from the empty database.
"""

from __future__ import annotations

import dataclasses
import os
import secrets
import shutil
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from chalicelib.download import download_newest_good
from chalicelib.errors import CorruptDatabase, NoGoodVersion
from chalicelib.files import remove_file, sha256_file
from wakeful_replica import ltx
from wakeful_replica.chain import (
    META_CURRENT_ETAG,
    META_CURRENT_VERSION,
    META_EPOCH,
    META_SNAPSHOT_SHA256,
    Found,
    Writer,
    generation_id,
    now_ms,
)
from wakeful_replica.current import FOREIGN, WAKEFUL, accounted, classify
from wakeful_replica.errors import ChainBroken, ManifestConflict, Superseded
from wakeful_replica.manifest import (
    SEGMENT,
    Accounted,
    Base,
    Generation,
    Manifest,
)
from wakeful_replica.objects import Stored
from wakeful_replica.restore import DEFAULT_PAGE_SIZE, Restored
from wakeful_replica.store import ChainStore

BOOT_ATTEMPTS = 8
RESUMED, FRESH, ADOPTED, OPERATOR_RESTORE, RESTORE = (
    "resumed", "fresh", "adopted", "operator-restore", "restore",
)


@dataclass(frozen=True)
class Booted:
    """Where a holder's run starts: it owns ``position``; its first segment goes at +1."""

    generation: str
    epoch: int
    position: int
    path: str  # the state at ``position``; absent when it is the empty database
    how: str  # resumed, fresh, adopted, operator-restore, restore
    manifest: Manifest
    current: Stored | None  # K as this holder saw it (the ETag its first snapshot is fenced on)
    snapshot: Base | None  # the newest base of the chain
    changed_since_snapshot: bool  # the state at ``position`` is ahead of that base
    timestamp_ms: int
    adopted: tuple[Found, ...] = ()
    warnings: tuple[str, ...] = ()
    failures: tuple[str, ...] = ()  # corrupt versions skipped: an operator must look


def boot(
    store: ChainStore, writer: Writer, destination: str,
    clock: Callable[[], int] = now_ms, nonce: Callable[[], str] = lambda: secrets.token_hex(4),
    attempts: int = BOOT_ATTEMPTS,
) -> Booted:
    """Claim the chain for ``writer`` and leave its current state in ``destination``."""
    run = _Boot(store, writer, destination, clock, nonce)
    for _ in range(attempts):
        booted = run.once()
        if booted is not None:
            return booted
    raise ManifestConflict(store.manifest_key, None)


def start_from_file(
    store: ChainStore, writer: Writer, source: str, destination: str, origin: str = RESTORE,
    clock: Callable[[], int] = now_ms, nonce: Callable[[], str] = lambda: secrets.token_hex(4),
) -> Booted:
    """Make ``source`` the current state (``wakeful restore`` under the lease): a new
    generation from it, the old chain ended and kept.

    An old chain that cannot be read to its end (a segment lost or damaged: the very case an
    operator restores from) is left as it is, unended, with a warning: the new generation
    follows the manifest's, so nothing reads the old one's keys again but a point-in-time
    restore before the damage.
    """
    run = _Boot(store, writer, destination, clock, nonce)
    for _ in range(BOOT_ATTEMPTS):
        manifest = store.manifests.read()
        restored: Restored | None = None
        if manifest is not None:
            try:
                restored = store.restorer.current(destination + ".old", manifest)
            except ChainBroken as exc:
                if exc.partial:
                    remove_file(exc.partial)
                run.warnings.append(
                    f"generation {manifest.generation} cannot be read to its end ({exc}); it "
                    "is left unended, kept for point-in-time restore up to that position"
                )
            finally:
                remove_file(destination + ".old")
        booted = run.start_generation(source, origin, manifest, restored, store.current.head())
        if booted is not None:
            return booted
    raise ManifestConflict(store.manifest_key, None)


class _Boot:
    def __init__(
        self, store: ChainStore, writer: Writer, destination: str,
        clock: Callable[[], int], nonce: Callable[[], str],
    ) -> None:
        self.store = store
        self.writer = writer
        self.destination = destination
        self.clock = clock
        self.nonce = nonce
        self.warnings: list[str] = []
        # What an operator must look at (ERROR): a corrupt current object was skipped.
        self.failures: list[str] = []

    def once(self) -> Booted | None:
        """One attempt; ``None`` when the chain moved under it (try again from the top)."""
        store = self.store
        manifest = store.manifests.read()
        if manifest is None:
            return self._first_generation()
        if manifest.token > self.writer.token:
            raise Superseded(store.manifest_key, self.writer.token, manifest.token)
        restored = store.restorer.current(self.destination, manifest)
        self.warnings.extend(restored.warnings)  # compactions read as positions instead
        current = store.current.head()
        known = [item for item in (manifest.accounted, _start_accounted(restored)) if item]
        found = classify(current, known)
        if found == WAKEFUL and current is not None and not store.current.marker_confirms(
            current, store.segments
        ):
            found = FOREIGN
        if found == FOREIGN and current is not None:
            incoming = self.destination + ".incoming"
            try:
                store.current.fetch(current, incoming)
            except CorruptDatabase as exc:
                # Refused, loudly: the chain goes on, and that version is accounted for so
                # the next snapshot replaces it (it stays in the bucket's versions).
                self.warnings.append(f"refused an upload to {store.key} that fails its check: "
                                     f"{exc}")
            else:
                self.warnings.append(
                    f"{store.key} version {current.version_id} was uploaded outside wakeful: "
                    "a new generation starts from it; the old chain is kept"
                )
                try:
                    return self.start_generation(
                        incoming, OPERATOR_RESTORE, manifest, restored, current
                    )
                finally:
                    remove_file(incoming)
        return self._claim(manifest, restored, current)

    # -- resuming the chain -----------------------------------------------------------------

    def _claim(
        self, manifest: Manifest, restored: Restored, current: Stored | None
    ) -> Booted | None:
        store, writer = self.store, self.writer
        claimed = store.segments.claim(
            restored.generation, restored.txid, writer, restored.page_size, restored.commit,
            self.clock,
        )
        if claimed.moved_to is not None:
            return None  # an older holder started a generation first: restore from there
        changed = restored.changed_since_base or _moved(manifest, restored)
        timestamp = restored.timestamp_ms
        if claimed.adopted:
            mode = "r+b" if os.path.exists(self.destination) else "w+b"
            with open(self.destination, mode) as out:
                for found in claimed.adopted:
                    header = found.segment.header
                    ltx.apply(found.segment, out)
                    changed = changed or bool(found.segment.pages) or header.is_snapshot
                    timestamp = header.timestamp_ms
        lineage = _lineage_after(manifest, restored)
        epoch = lineage[-1].epoch if lineage else manifest.epoch
        snapshot = manifest.snapshot if restored.generation == manifest.generation else (
            _start_base(restored))

        def change(seen: Manifest | None) -> Manifest:
            base = seen or manifest
            updated = dataclasses.replace(
                base, generation=restored.generation, epoch=epoch,
                position=max(claimed.position, base.position)
                if base.generation == restored.generation else claimed.position,
                token=writer.token, holder=writer.holder,
                lineage=_with_ends(_merge(base.lineage, lineage), restored.followed),
                accounted=accounted(current) if current is not None else base.accounted,
                stopped=None,
            )
            if snapshot is not None and snapshot != updated.snapshot and (
                restored.generation != base.generation
            ):
                updated = updated.with_base(snapshot)
            return updated

        published = store.manifests.update(change, manifest)
        if not os.path.exists(self.destination) or os.path.getsize(self.destination) == 0:
            remove_file(self.destination)
        return Booted(
            restored.generation, epoch, claimed.position, self.destination, RESUMED, published,
            current, published.snapshot, changed, timestamp, claimed.adopted,
            tuple(self.warnings), tuple(self.failures),
        )

    # -- starting a generation --------------------------------------------------------------

    def _first_generation(self) -> Booted | None:
        """No manifest: adopt ``K`` (today's layout, or ``db-sync.sh``), or start empty."""
        store = self.store
        current = store.current.head()
        if current is None:
            # Only a delete marker can hide older versions: the LIST is for that case alone.
            older = store.current.database.versions() if store.objects.deleted(store.key) else []
            if older:
                # A deleted current object is an accident far more often than a wish to
                # start over: an empty chain started over it would hide every row.
                raise NoGoodVersion(
                    f"{store.current.database.url} was deleted but {len(older)} older "
                    "version(s) exist; refusing a fresh start. Restore one with "
                    f"`wakeful-agent restore --version {older[0].version_id}`"
                )
            remove_file(self.destination)
            return self.start_generation(None, FRESH, None, None, None)
        incoming = self.destination + ".incoming"
        # Exactly today's verified download: NoGoodVersion when no version of it verifies.
        download = download_newest_good(store.current.database, incoming)
        if download is None:  # deleted between the head and the download
            return None
        if download.fell_back:
            self.failures.append(
                f"Current database in S3 failed verification; falling back to an older "
                f"version: adopted version {download.used.version_id} of {store.key} "
                f"({'; '.join(reason for _, reason in download.skipped)})"
            )
        try:
            booted = self.start_generation(incoming, ADOPTED, None, None, current)
        finally:
            remove_file(incoming)
        if booted is not None and download.fell_back:
            # K is the corrupt version: the next snapshot must replace it, changes or not.
            booted = dataclasses.replace(booted, changed_since_snapshot=True)
        return booted

    def start_generation(
        self, source: str | None, origin: str, manifest: Manifest | None,
        restored: Restored | None, current: Stored | None,
    ) -> Booted | None:
        """A new generation from ``source`` (``None``: the empty database), ending the old
        chain at its end; ``None`` when the chain moved meanwhile (try again)."""
        store, writer = self.store, self.writer
        generation = generation_id(writer.token, self.nonce())
        epoch = manifest.epoch + len(_lineage_after(manifest, restored)) + 1 if (
            manifest) else 1
        timestamp = self.clock()
        _, _, body = snapshot_of(source, timestamp)
        state_sha = sha256_file(source) if source else _EMPTY_SHA256
        extra_current = (current.version_id, current.etag) if current is not None else None
        previous = restored.generation if restored else (
            manifest.generation if manifest else None)
        store.segments.start(
            generation, body, writer, epoch, previous, origin, extra_current, state_sha,
        )
        base = Base(generation, 1, timestamp, state_sha, os.path.getsize(source) if source
                    else 0, source=SEGMENT)
        generation_info = Generation(generation, epoch, timestamp, previous, origin=origin)
        ended: tuple[str, int] | None = None
        if manifest is not None and restored is not None:
            closing = store.segments.end(
                restored.generation, restored.txid, writer, generation, restored.page_size,
                restored.commit, self.clock,
            )
            if closing.moved_to is not None:
                return None  # another start won the old chain's end: follow it instead
            ended = (restored.generation, closing.position)
        fresh = Manifest(
            generation, 1, writer.token, writer.holder, epoch=epoch, snapshot=base,
            history=(base,), lineage=(generation_info,),
            accounted=accounted(current) if current is not None else None,
        )

        def change(seen: Manifest | None) -> Manifest:
            if seen is None or manifest is None:
                return fresh
            lineage = _merge(seen.lineage, _lineage_after(manifest, restored))
            ends = [*(restored.followed if restored else ()), *([ended] if ended else [])]
            lineage = _with_ends(lineage, ends)
            return dataclasses.replace(
                seen, generation=generation, epoch=epoch, position=1, token=writer.token,
                holder=writer.holder, lineage=_merge(lineage, (generation_info,)),
                accounted=fresh.accounted, stopped=None,
            ).with_base(base)

        try:
            if manifest is None:
                published = store.manifests.put(None, fresh)
            else:
                published = store.manifests.update(change, manifest)
        except ManifestConflict:
            if manifest is None:
                return None  # someone else created the chain first: boot on theirs
            raise
        if source is not None:
            shutil.copyfile(source, self.destination)
        else:
            remove_file(self.destination)
        return Booted(
            generation, epoch, 1, self.destination, origin, published, current, base,
            False, timestamp, (), tuple(self.warnings), tuple(self.failures),
        )


_EMPTY_SHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


def snapshot_of(path: str | None, timestamp_ms: int, txid: int = 1) -> tuple[int, int, bytes]:
    """A full LTX snapshot (min txid 1, max ``txid``) of the database file at ``path``."""
    if path is None or not os.path.exists(path) or os.path.getsize(path) == 0:
        header = ltx.Header(DEFAULT_PAGE_SIZE, 0, 1, txid, timestamp_ms)
        return DEFAULT_PAGE_SIZE, 0, ltx.encode(header, [])
    with open(path, "rb") as handle:
        first = handle.read(100)
        raw = int.from_bytes(first[16:18], "big")
        page_size = 65536 if raw == 1 else raw
        size = os.path.getsize(path)
        if not ltx.valid_page_size(page_size) or size % page_size:
            raise CorruptDatabase(path, f"not a whole number of {page_size}-byte pages")
        commit = size // page_size
        header = ltx.Header(page_size, commit, 1, txid, timestamp_ms)
        return page_size, commit, ltx.encode(header, file_pages(handle, page_size, commit))


def file_pages(handle, page_size: int, commit: int) -> Iterator[tuple[int, bytes]]:
    lock = ltx.lock_pgno(page_size)
    for pgno in range(1, commit + 1):
        if pgno == lock:
            continue
        handle.seek((pgno - 1) * page_size)
        yield pgno, handle.read(page_size)


def _start_accounted(restored: Restored) -> Accounted | None:
    """The version of K the generation's start took into account, if the restore read it."""
    if restored.start is None:
        return None
    metadata = restored.start.info.metadata
    etag = metadata.get(META_CURRENT_ETAG)
    if not etag:
        return None
    return Accounted(metadata.get(META_CURRENT_VERSION) or None, etag)


def _start_base(restored: Restored) -> Base | None:
    if restored.start is None:
        return None
    metadata = restored.start.info.metadata
    sha = metadata.get(META_SNAPSHOT_SHA256)
    header = restored.start.segment.header
    size = header.commit * header.page_size
    return Base(restored.generation, 1, header.timestamp_ms, sha or "", size, source=SEGMENT)


def _lineage_after(
    manifest: Manifest | None, restored: Restored | None
) -> tuple[Generation, ...]:
    """Generations the restore entered past the manifest's (through end records), with the
    end positions of the ones it left."""
    if manifest is None or restored is None or not restored.followed:
        return ()
    names = [ended for ended, _ in restored.followed[1:]] + [restored.generation]
    found: list[Generation] = []
    epoch = manifest.epoch
    for (ended, _), name in zip(restored.followed, names, strict=True):
        epoch += 1
        started = 0
        if name == restored.generation and restored.start is not None:
            epoch = int(restored.start.info.metadata.get(META_EPOCH) or epoch)
            started = restored.start.segment.header.timestamp_ms
        found.append(Generation(name, epoch, started, ended))
    return tuple(found)


def _with_ends(
    lineage: tuple[Generation, ...], ends: Iterable[tuple[str, int]]
) -> tuple[Generation, ...]:
    positions = dict(ends)
    return tuple(
        dataclasses.replace(item, end=positions[item.id]) if item.id in positions else item
        for item in lineage
    )


def _merge(
    lineage: Iterable[Generation], more: Iterable[Generation]
) -> tuple[Generation, ...]:
    merged = {item.id: item for item in lineage}
    for item in more:
        if item.id not in merged:
            merged[item.id] = item
    return tuple(sorted(merged.values(), key=lambda item: item.epoch))


def _moved(manifest: Manifest, restored: Restored) -> bool:
    return restored.generation != manifest.generation


__all__ = ["Booted", "boot", "snapshot_of", "start_from_file"]
