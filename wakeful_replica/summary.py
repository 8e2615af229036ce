"""What an operator sees of a chain: where it ends, its generations, and the restorable window.

``read`` is what ``status`` and ``backups`` (both doors) show of a chain bucket: one GET of the
manifest, HEADs past its position until one is missing (the true end while a holder runs, the
manifest being only a hint, docs/replication.md §4), and a ranged GET of the last position's
LTX header for its capture time. No LIST. ``summarize`` (pure) turns that into the window:
from the oldest state ``restore --at`` can rebuild to the newest, with each generation's
positions and the bases the manifest keeps.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from chalicelib import aws, text
from wakeful_replica import ltx
from wakeful_replica.chain import END, META_NEXT, SegmentInfo
from wakeful_replica.manifest import OBJECT, Base, Manifest, Stop
from wakeful_replica.objects import missing, unavailable
from wakeful_replica.store import ChainStore

PROBE_BATCH = 8
# An end record names the next generation; a stale manifest may lag a few of them.
MAX_FOLLOWED = 16


@dataclass(frozen=True)
class End:
    """The last position found: ``generation``'s ``position``, captured at ``at_ms``."""

    generation: str
    position: int
    at_ms: int | None


@dataclass(frozen=True)
class Span:
    """One generation of the lineage: its kept positions and its bases."""

    id: str
    epoch: int
    origin: str
    started_ms: int
    first: int  # the first position kept (retention removes the ones below)
    last: int | None  # its last state; ``None`` when unknown (its end was not found)
    ended: bool
    bases: tuple[Base, ...]

    def as_json(self) -> dict[str, Any]:
        return {
            "generation": self.id, "epoch": self.epoch, "origin": self.origin,
            "started_at": _iso(self.started_ms), "first_txid": self.first,
            "last_txid": self.last, "ended": self.ended,
            "bases": [_base_json(base) for base in self.bases],
        }


@dataclass(frozen=True)
class ChainSummary:
    manifest: Manifest
    end: End
    spans: tuple[Span, ...]
    oldest_ms: int | None  # the oldest time `restore --at` rebuilds
    newest_ms: int | None  # the newest (the end of the chain)
    retention_days: float

    @property
    def stopped(self) -> Stop | None:
        """The clean stop record, when it covers the end of the chain (nothing came after)."""
        stop = self.manifest.stopped
        if stop is None:
            return None
        if (self.end.generation, self.end.position) != (self.manifest.generation,
                                                        stop.position):
            return None
        return stop

    def as_json(self) -> dict[str, Any]:
        manifest, stop, snapshot = self.manifest, self.stopped, self.manifest.snapshot
        return {
            "generation": self.end.generation,
            "epoch": manifest.epoch,
            "position": self.end.position,
            "holder": manifest.holder,
            "token": manifest.token,
            "snapshot": _base_json(snapshot) if snapshot else None,
            "stopped": {"holder": stop.holder, "token": stop.token, "position": stop.position,
                        "at": stop.at} if stop else None,
            "window": {"oldest": _iso(self.oldest_ms), "newest": _iso(self.newest_ms)},
            "retention_days": self.retention_days,
            "generations": [span.as_json() for span in self.spans],
        }


# -- what both doors print, from the JSON (so a report read elsewhere prints the same) -------


def status_rows(data: dict[str, Any], now: float) -> list[tuple[str, Any]]:
    """The chain's rows of the ``status`` table."""
    snapshot, stop, window = data.get("snapshot"), data.get("stopped"), data.get("window") or {}
    return [
        ("chain", f"generation {data['generation']} (epoch {data['epoch']}), "
                  f"position {data['position']}"),
        ("snapshot", f"txid {snapshot['txid']} of {snapshot['generation']}, "
                     f"{_moment(snapshot['at'], now)}, {text.size(snapshot['size'])}"
         if snapshot else "none"),
        ("clean stop", f"{stop['holder']} (token {stop['token']}) "
                       f"{text.moment(stop['at'], now)}, at position {stop['position']}"
         if stop else "none: running, or stopped without a clean stop"),
        ("restorable", f"{window['oldest']} .. {window['newest']}"
         if window.get("oldest") and window.get("newest") else "none"),
        ("retention", f"{data['retention_days']:g} days"),
    ]


def backup_lines(data: dict[str, Any], url: str, now: float) -> list[str]:
    """The chain's restore points, as both doors' ``backups`` print them."""
    window = data.get("window") or {}
    span = (f"{window['oldest']} .. {window['newest']}"
            if window.get("oldest") and window.get("newest") else "nothing")
    out = [f"Chain of {url}: restore --at any time in {span} "
           f"(retention {data['retention_days']:g} days)"]
    generations = data.get("generations") or []
    rows = [
        (g["generation"], g["origin"], _moment(g["started_at"], now),
         f"{g['first_txid']}..{g['last_txid'] if g['last_txid'] is not None else '?'}",
         "ended" if g["ended"] else "current", len(g["bases"]))
        for g in generations
    ]
    out.append(text.table(rows, header=("GENERATION", "ORIGIN", "STARTED", "TXIDS", "",
                                         "BASES")))
    bases = [(b["generation"], b["txid"], _moment(b["at"], now), text.size(b["size"]),
              "K version" if b["source"] == OBJECT else "segment", b["version_id"])
             for g in generations for b in g["bases"]]
    if bases:
        out.append("")
        out.append(f"Bases of the chain ({len(bases)}, oldest first)")
        out.append(text.table(bases, header=("GENERATION", "TXID", "CAPTURED", "SIZE",
                                              "HELD IN", "VERSION")))
    return out


def _moment(iso: str | None, now: float) -> str:
    if not iso:
        return "-"
    return text.moment(dt.datetime.fromisoformat(iso).timestamp(), now)


def read(store: ChainStore) -> ChainSummary | None:
    """The chain's summary; ``None`` for a bucket without one (the v1 layout)."""
    manifest = store.read_manifest()
    if manifest is None:
        return None
    return summarize(manifest, probe_end(store, manifest), store.retention_days)


def summarize(manifest: Manifest, end: End, retention_days: float) -> ChainSummary:
    spans: list[Span] = []
    lineage = manifest.lineage or ()
    for item in lineage:
        first = manifest.retained.get(item.id, 1)
        if item.id == end.generation:
            last: int | None = end.position
        elif item.end is not None:
            last = item.end - 1
        else:
            last = None
        bases = tuple(sorted((b for b in manifest.history if b.generation == item.id),
                             key=lambda b: b.txid))
        spans.append(Span(item.id, item.epoch, item.origin, item.started_ms, first, last,
                          item.end is not None, bases))
    return ChainSummary(manifest, end, tuple(spans), _oldest(manifest), end.at_ms,
                        retention_days)


def _oldest(manifest: Manifest) -> int | None:
    """The oldest time ``restore --at`` rebuilds: the first generation's start when it is kept
    whole, else its oldest base (retention keeps one at or before the window's start)."""
    if not manifest.lineage:
        return None
    first = manifest.lineage[0]
    if manifest.retained.get(first.id, 1) <= 1:
        return first.started_ms
    bases = [base.at_ms for base in manifest.history if base.generation == first.id]
    return min(bases) if bases else None


# -- the end of the chain -------------------------------------------------------------------


def probe_end(store: ChainStore, manifest: Manifest) -> End:
    """HEAD the positions past the manifest's until one is missing, following end records."""
    generation, position = manifest.generation, manifest.position
    with ThreadPoolExecutor(max_workers=PROBE_BATCH) as pool:
        for _ in range(MAX_FOLLOWED):
            last = _last_present(pool, lambda txid, g=generation: store.head_segment(g, txid),
                                 position)
            if last is not None:
                position = last.txid
                if last.kind == END and last.metadata.get(META_NEXT):
                    generation, position = last.metadata[META_NEXT], 0
                    continue
            break
    if position == 0:  # a generation named by an end record but never started
        return End(generation, 0, None)
    return End(generation, position, _timestamp(store, generation, position))


def _last_present(
    pool: ThreadPoolExecutor, head: Callable[[int], SegmentInfo | None], after: int
) -> SegmentInfo | None:
    """The last position found from ``after + 1`` on, stopping at the first missing one (an
    end record stops it too: the chain goes on in the generation it names)."""
    found: SegmentInfo | None = None
    number = after + 1
    while True:
        window = list(range(number, number + PROBE_BATCH))
        for item in pool.map(head, window):
            if item is None:
                return found
            found = item
            if item.kind == END:
                return found
        number += PROBE_BATCH


def _timestamp(store: ChainStore, generation: str, txid: int) -> int | None:
    """The LTX capture time of one position: its 100-byte header, read by a ranged GET."""
    key = store.segment_key(generation, txid)
    try:
        response = store.client.get_object(Bucket=store.bucket, Key=key,
                                           Range=f"bytes=0-{ltx.HEADER_SIZE - 1}")
        head = response["Body"].read()
    except aws.ClientError as exc:
        if missing(exc):
            return None
        raise unavailable(f"get {key}", exc) from exc
    except aws.TRANSPORT_ERRORS as exc:
        raise unavailable(f"get {key}", exc) from exc
    try:
        return ltx.Header.unpack(head).timestamp_ms
    except ValueError:
        return None  # a damaged segment: `verify` names it


def _base_json(base: Base) -> dict[str, Any]:
    return {"generation": base.generation, "txid": base.txid, "at": _iso(base.at_ms),
            "size": base.size, "sha256": base.sha256, "source": base.source,
            "version_id": base.version_id}


def _iso(ms: int | None) -> str | None:
    if ms is None:
        return None
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).isoformat(timespec="milliseconds")


__all__ = [
    "ChainSummary", "End", "Span", "backup_lines", "probe_end", "read", "status_rows", "summarize",
]
