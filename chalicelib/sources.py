"""Restore sources: what ``--backup NAME``, ``--version ID`` or ``--at TIME`` names in the store.

Both doors (``wakeful-agent restore|verify`` and ``wakeful restore``) resolve their flags here,
so a name, a version id or a moment means the same object whichever door is used.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

from chalicelib.errors import NotFound
from chalicelib.stamps import parse_stamp

if TYPE_CHECKING:  # the store's types only: resolving loads nothing the store does not
    from chalicelib.store import DatabaseStore, ObjectInfo


def resolve(
    store: DatabaseStore,
    backup: str | None = None,
    version_id: str | None = None,
    at: str | None = None,
) -> ObjectInfo:
    """The stored object the first given source names; the current object when none is given.

    ``NotFound`` when it does not exist; ``ValueError`` when ``at`` is not a time.
    """
    if backup:
        return find_backup(store, backup)
    if version_id:
        return find_version(store, version_id)
    if at:
        return find_at(store, parse_time(at))
    current = store.head()
    if current is None:
        raise NotFound(f"no database at {store.url}")
    return current


def find_backup(store: DatabaseStore, name: str) -> ObjectInfo:
    """The backup named ``name`` (``20261128_143000``, or its whole key)."""
    key = name if name.startswith(store.backup_prefix) else store.backup_prefix + name
    info = store.head(key=key)
    if info is None:
        raise NotFound(f"no backup named {name!r} (looked for s3://{store.bucket}/{key})")
    return info


def find_version(store: DatabaseStore, version_id: str) -> ObjectInfo:
    info = store.head(version_id=version_id)
    if info is None:
        raise NotFound(f"no version {version_id!r} of {store.url}")
    return info


def find_at(store: DatabaseStore, moment: dt.datetime) -> ObjectInfo:
    """The newest version stored at or before ``moment``."""
    for version in store.versions():
        if version.last_modified <= moment and version.version_id:
            info = store.head(version_id=version.version_id)
            if info is not None:
                return info
    raise NotFound(f"no version of {store.url} at or before {moment.isoformat()}")


def parse_time(text: str) -> dt.datetime:
    """ISO 8601 (``2026-11-28T14:30:00Z``), a backup stamp (``20261128_143000``), or epoch."""
    raw = text.strip()
    try:
        return dt.datetime.fromtimestamp(float(raw), dt.UTC)
    except ValueError:
        pass
    try:
        return parse_stamp(raw)
    except ValueError:
        pass
    try:
        moment = dt.datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(
            f"cannot read {text!r} as a time (ISO 8601, YYYYMMDD_HHMMSS or epoch)"
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


def label(info: ObjectInfo) -> str:
    """How an operator names it: ``backup 20261128_143000`` or ``version abc123``."""
    if ".backup." in info.key:
        return f"backup {info.key.rsplit('.backup.', 1)[1]}"
    return f"version {info.version_id}" if info.version_id else info.key
