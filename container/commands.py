"""Manual operations beside (or instead of) a running agent: the seed's ``db-sync.sh`` verbs.

Each returns a process exit code and prints what an operator needs; none of them writes S3
while a live agent runs here: they ask it to sync instead (SIGUSR1 to the pid it records).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from chalicelib.errors import (
    CorruptDatabase,
    FencingError,
    LeaseHeld,
    LeaseLost,
    NotFound,
    WakefulError,
)
from chalicelib.lease import LeaseTable
from chalicelib.settings import AgentSettings
from chalicelib.snapshot import Snapshot, remove_file, sidecars
from chalicelib.store import DatabaseStore, ObjectInfo, UploadIntent
from container import state
from container.heartbeat import LeaseKeeper
from container.identity import Identity
from container.sync import Syncer

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_REFUSED = 3

Printer = Callable[[str], None]


@dataclass
class Context:
    settings: AgentSettings
    table: LeaseTable
    store: DatabaseStore
    identity: Identity
    log: Any
    metrics: Any
    out: Printer = print
    sleep: Callable[[float], None] = time.sleep


# -- upload / download ----------------------------------------------------------------------


def upload(ctx: Context, force: bool = False, timeout: float = 120.0) -> int:
    """Upload now. Beside a live agent, ask it; alone, take the lease and swap carefully."""
    local = ctx.settings.local_path
    pid = state.live_agent(local)
    if pid is not None:
        return _ask_agent_to_sync(ctx, pid, timeout)
    if not os.path.exists(local):
        ctx.out(f"[ERROR] No local database at {local}")
        return EXIT_FAILED
    expected = state.read(local).get("etag")
    current = ctx.store.head()
    current_etag = current.etag if current else None
    if current_etag != expected and not force:
        ctx.out(
            f"[ERROR] Refusing to upload: {ctx.store.url} changed since {local} was downloaded "
            f"(expected {expected or 'no object'}, found {current_etag or 'no object'}). "
            "Download first, or pass --force to replace it (a backup of it is kept)."
        )
        return EXIT_REFUSED
    if force and current is not None and current_etag != expected:
        ctx.store.create_backup(current, when=current.last_modified.timestamp())
    return _with_lease(ctx, lambda keeper: _manual_sync(ctx, keeper, current_etag))


def _manual_sync(ctx: Context, keeper: LeaseKeeper, etag: str | None) -> int:
    syncer = Syncer(ctx.settings.local_path, ctx.store, keeper, etag, ctx.log, ctx.metrics)
    try:
        result = syncer.sync("manual", force=True)
    finally:
        syncer.close()
    ctx.out(f"[INFO] Database uploaded successfully to {ctx.store.url}")
    if result.info is not None:
        ctx.out(f"       version {result.info.version_id}, {result.info.size} bytes")
    return EXIT_OK


def _ask_agent_to_sync(ctx: Context, pid: int, timeout: float) -> int:
    local = ctx.settings.local_path
    request = state.next_sync_request(local)
    ctx.out(f"[INFO] An agent (pid {pid}) is running; asking it to sync now...")
    os.kill(pid, signal.SIGUSR1)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        data = state.read(local)
        if int(data.get("sync_done", 0) or 0) >= request:
            outcome = data.get("sync_outcome")
            if outcome in ("uploaded", "unchanged"):
                ctx.out(f"[INFO] Database uploaded successfully to {ctx.store.url}")
                return EXIT_OK
            ctx.out(f"[ERROR] Failed to upload database: {data.get('sync_detail')}")
            return EXIT_FAILED
        if not state.pid_alive(pid):
            break
        ctx.sleep(0.1)
    ctx.out("[ERROR] Failed to upload database: the agent did not answer in time")
    return EXIT_FAILED


def download(ctx: Context, output: str | None = None, version_id: str | None = None) -> int:
    local = ctx.settings.local_path
    target = os.path.abspath(output) if output else local
    pid = state.live_agent(local)
    if pid is not None:
        if target == local:
            ctx.out(
                f"[ERROR] An agent (pid {pid}) is running on {local}; refusing to overwrite the "
                "live database. Pass --output PATH to download a copy."
            )
            return EXIT_REFUSED
        if _ask_agent_to_sync(ctx, pid, 120.0) != EXIT_OK:
            return EXIT_FAILED
    ctx.out("[INFO] Checking for existing database in S3...")
    info = ctx.store.find_version(version_id) if version_id else ctx.store.head()
    if info is None:
        ctx.out(f"[INFO] No database found at {ctx.store.url}")
        return EXIT_FAILED
    ctx.out("[INFO] Database found in S3. Downloading...")
    os.makedirs(os.path.dirname(target) or ".", exist_ok=True)
    incoming = target + ".download"
    ctx.store.fetch(info, incoming)
    if os.path.exists(target):
        shutil.copyfile(target, target + ".backup")
        ctx.out(f"[INFO] Backup created at {target}.backup")
    for sidecar in sidecars(target):
        remove_file(sidecar)
    os.replace(incoming, target)
    if target == local:
        state.update(local, {"etag": info.etag, "downloaded": info.describe()})
    ctx.out(f"[INFO] Database downloaded successfully from {ctx.store.url} to {target}")
    return EXIT_OK


# -- restore and verify ---------------------------------------------------------------------


def resolve(
    ctx: Context, backup: str | None, version_id: str | None, at: str | None
) -> ObjectInfo:
    if backup:
        return ctx.store.find_backup(backup)
    if version_id:
        return ctx.store.find_version(version_id)
    if at:
        return ctx.store.find_at(parse_time(at))
    return _require(ctx.store.head(), f"no database at {ctx.store.url}")


def restore(ctx: Context, backup: str | None, version_id: str | None, at: str | None) -> int:
    """Make a backup or an older version the current database, under the lease."""
    source = resolve(ctx, backup, version_id, at)
    label = _label(source)

    def swap(keeper: LeaseKeeper) -> int:
        with tempfile.TemporaryDirectory(dir=_scratch(ctx)) as scratch:
            path = os.path.join(scratch, "restore.sqlite3")
            ctx.out(f"[INFO] Downloading {label} ({source.size} bytes)...")
            digest = ctx.store.fetch(source, path, full_check=True)
            current = ctx.store.head()
            snapshot = Snapshot(path=path, sha256=digest, size=os.path.getsize(path))
            keeper.renew()
            info = ctx.store.upload(
                snapshot,
                current.etag if current else None,
                UploadIntent(keeper.holder, keeper.token, "restore"),
            )
            keeper.record_upload(info.describe())
            ctx.store.create_backup(info)
            ctx.store.prune_backups()
        ctx.out(
            f"[INFO] Restored {label} as s3://{ctx.store.bucket}/{ctx.store.key} "
            f"(new version {info.version_id})"
        )
        return EXIT_OK

    return _with_lease(ctx, swap)


def verify(
    ctx: Context, backup: str | None, version_id: str | None, full: bool = True
) -> int:
    """Check a stored database without touching the local file."""
    try:
        info = resolve(ctx, backup, version_id, None)
    except NotFound as exc:
        ctx.out(f"[ERROR] {exc}")
        return EXIT_FAILED
    with tempfile.TemporaryDirectory(dir=_scratch(ctx)) as scratch:
        try:
            digest = ctx.store.fetch(info, os.path.join(scratch, "verify.sqlite3"),
                                     full_check=full)
        except CorruptDatabase as exc:
            ctx.out(f"[ERROR] {_label(info)} is corrupt: {exc.reason}")
            return EXIT_FAILED
    checksum = "matches" if info.sha256 else "not recorded (uploaded by another tool)"
    ctx.out(
        f"[INFO] {_label(info)} is a good database: {info.size} bytes, sha256 {digest} "
        f"({checksum}), {'integrity_check' if full else 'quick_check'} ok"
    )
    return EXIT_OK


# -- listings -------------------------------------------------------------------------------


def backups(ctx: Context, versions: bool, as_json: bool) -> int:
    found = ctx.store.backups()
    listed_versions = ctx.store.versions() if versions else []
    if as_json:
        ctx.out(json.dumps({
            "backups": [
                {"name": b.name, "key": b.key, "size": b.size,
                 "last_modified": b.last_modified.isoformat()} for b in found
            ],
            "versions": [
                {"version_id": v.version_id, "size": v.size, "is_latest": v.is_latest,
                 "last_modified": v.last_modified.isoformat()} for v in listed_versions
            ],
        }, indent=2))
        return EXIT_OK
    ctx.out(f"Backups of {ctx.store.url} (newest first, {len(found)}):")
    for item in found:
        ctx.out(f"  {item.name}  {item.size:>12} bytes  {item.last_modified.isoformat()}")
    if versions:
        ctx.out(f"Versions ({len(listed_versions)}):")
        for version in listed_versions:
            mark = "  (current)" if version.is_latest else ""
            ctx.out(
                f"  {version.version_id}  {version.size:>12} bytes  "
                f"{version.last_modified.isoformat()}{mark}"
            )
    return EXIT_OK


def status(ctx: Context, as_json: bool) -> int:
    lease = ctx.table.read()
    current = ctx.store.head()
    local = state.read(ctx.settings.local_path)
    report = {
        "lease": {
            "name": lease.name, "state": lease.state, "holder": lease.holder,
            "token": lease.token, "expires_at": lease.expires_at, "task_arn": lease.task_arn,
            "last_upload": lease.last_upload, "last_unsynced_stop": lease.last_unsynced_stop,
        },
        "database": current.describe() if current else None,
        "backups": len(ctx.store.backups()),
        "local": {
            "path": ctx.settings.local_path,
            "agent_pid": state.live_agent(ctx.settings.local_path),
            "state": local.get("state"),
        },
    }
    if as_json:
        ctx.out(json.dumps(report, indent=2, default=str))
        return EXIT_OK
    holder = lease.holder or "-"
    ctx.out(f"lease      {lease.name}: {lease.state} by {holder} (token {lease.token})")
    if current:
        ctx.out(
            f"database   {ctx.store.url}: {current.size} bytes, {current.reason or '?'} upload by "
            f"{current.holder or '?'} at {current.last_modified.isoformat()}"
        )
    else:
        ctx.out(f"database   {ctx.store.url}: none yet")
    ctx.out(f"backups    {report['backups']}")
    agent = report["local"]["agent_pid"]
    ctx.out(f"local      {ctx.settings.local_path}: agent {agent or 'not running'}")
    return EXIT_OK


# -- the seed's entrypoint verbs ------------------------------------------------------------


def startup(ctx: Context, timeout: float = 180.0) -> int:
    """Start a detached agent that syncs in the background; return once it runs."""
    local = ctx.settings.local_path
    if state.live_agent(local):
        ctx.out("[INFO] An agent is already running for this database")
        return EXIT_OK
    # The caller's process group (an entrypoint script, and the app it starts next) is the
    # writer the agent stops if it loses the lease.
    process = subprocess.Popen(
        [sys.executable, "-m", "container", "serve", "--writer-group", str(os.getpgrp())],
        start_new_session=True,
    )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        data = state.read(local)
        if data.get("pid") == process.pid and data.get("state") == "running":
            ctx.out(f"[INFO] Agent running in the background (pid {process.pid})")
            return EXIT_OK
        code = process.poll()
        if code is not None:
            ctx.out(f"[ERROR] Agent failed to start (exit {code})")
            return code or EXIT_FAILED
        ctx.sleep(0.05)
    ctx.out("[ERROR] Agent did not start in time")
    return EXIT_FAILED


def shutdown(ctx: Context, timeout: float | None = None) -> int:
    """Stop the background agent: it uploads and releases; return its exit code."""
    local = ctx.settings.local_path
    pid = state.live_agent(local)
    if pid is None:
        ctx.out("[INFO] No agent running; nothing to stop")
        return EXIT_OK
    os.kill(pid, signal.SIGTERM)
    limit = timeout or ctx.settings.stop_budget + ctx.settings.stop_grace + 10
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline and state.pid_alive(pid):
        ctx.sleep(0.05)
    data = state.read(local)
    if state.pid_alive(pid) or data.get("state") != "exited":
        ctx.out("[ERROR] The agent did not finish its shutdown in time")
        return EXIT_FAILED
    return int(data.get("exit_code") or 0)


# -- helpers --------------------------------------------------------------------------------


def _with_lease(ctx: Context, action: Callable[[LeaseKeeper], int]) -> int:
    try:
        lease = ctx.table.acquire(f"manual@{ctx.identity.holder}", ctx.settings.lease_ttl * 4)
    except LeaseHeld as exc:
        ctx.out(
            f"[ERROR] Refused: {exc}. A running backend holds the database; "
            "stop it first (or run this inside its container)."
        )
        return EXIT_REFUSED
    keeper = LeaseKeeper(ctx.table, lease, ctx.settings.lease_ttl * 4)
    try:
        return action(keeper)
    except (FencingError, LeaseLost) as exc:
        ctx.out(f"[ERROR] Refused: {exc}")
        return EXIT_REFUSED
    finally:
        try:
            keeper.release()
        except WakefulError as exc:
            ctx.out(f"[WARN] Could not release the lease: {exc}")


def parse_time(text: str) -> dt.datetime:
    """ISO 8601 (``2026-11-28T14:30:00Z``), a backup stamp (``20261128_143000``), or epoch."""
    raw = text.strip()
    try:
        return dt.datetime.fromtimestamp(float(raw), dt.UTC)
    except ValueError:
        pass
    for parser in (
        lambda value: dt.datetime.strptime(value, "%Y%m%d_%H%M%S"),
        lambda value: dt.datetime.fromisoformat(value.replace("Z", "+00:00")),
    ):
        try:
            moment = parser(raw)
        except ValueError:
            continue
        return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)
    raise ValueError(f"cannot read {text!r} as a time (ISO 8601, YYYYMMDD_HHMMSS or epoch)")


def _label(info: ObjectInfo) -> str:
    if ".backup." in info.key:
        return f"backup {info.key.rsplit('.backup.', 1)[1]}"
    return f"version {info.version_id}" if info.version_id else info.key


def _scratch(ctx: Context) -> str | None:
    folder = os.path.dirname(ctx.settings.local_path)
    return folder if folder and os.path.isdir(folder) else None


def _require(info: ObjectInfo | None, message: str) -> ObjectInfo:
    if info is None:
        raise NotFound(message)
    return info
