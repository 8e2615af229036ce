"""The ``YYYYMMDD_HHMMSS`` stamp (UTC) that names backups and set-aside files, as the seed did."""

from __future__ import annotations

import datetime as dt

STAMP_FORMAT = "%Y%m%d_%H%M%S"


def stamp(epoch: float) -> str:
    """``20261128_143000`` for that moment in UTC."""
    return dt.datetime.fromtimestamp(epoch, dt.UTC).strftime(STAMP_FORMAT)


def parse_stamp(text: str) -> dt.datetime:
    """The UTC moment a stamp names; ``ValueError`` when ``text`` is not one."""
    return dt.datetime.strptime(text, STAMP_FORMAT).replace(tzinfo=dt.UTC)
