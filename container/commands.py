"""Manual operations beside (or instead of) a running agent: the seed's ``db-sync.sh`` verbs.

Each returns a process exit code and prints what an operator needs; none of them writes S3
while a live agent runs here: they ask it to sync instead (``container.live``). The work itself
is the kernel's (``chalicelib.restore``, ``sources``, ``listing``, ``report``), shared with
``wakeful``; what is printed is ``container.render``'s.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass

from chalicelib import listing, report, sources, text
from chalicelib import restore as restoring
from chalicelib.errors import CorruptDatabase, FencingError, LeaseHeld, LeaseLost, NotFound
from chalicelib.exits import EXIT_FAILED, EXIT_OK, EXIT_REFUSED
from chalicelib.hold import LeaseHold
from chalicelib.integrity import fetch_verified
from chalicelib.store import ObjectInfo
from container import live, render, spawn, state
from container.placement import move_into_place
from container.sync import Syncer
from container.wiring import Wiring
from wakeful_replica import gaps, reinstate, summary
from wakeful_replica.errors import ChainBroken, Fenced, NothingToRestore, Superseded
from wakeful_replica.manifest import Manifest
from wakeful_replica.store import ChainStore

Printer = Callable[[str], None]

# How long a verb waits for the agent beside it to answer a sync request.
SYNC_ANSWER_TIMEOUT = 120.0


@dataclass
class Context(Wiring):
    """The agent's wiring, and where a verb prints."""

    out: Printer = print
    sleep: Callable[[float], None] = time.sleep


# -- upload / download ----------------------------------------------------------------------


def upload(ctx: Context, force: bool = False, timeout: float = SYNC_ANSWER_TIMEOUT) -> int:
    """Upload now. Beside a live agent, ask it; alone, take the lease and swap carefully."""
    local = ctx.settings.local_path
    pid = state.live_agent(local)
    if pid is not None:
        return _ask_agent_to_sync(ctx, pid, timeout)
    if not os.path.exists(local):
        ctx.out(f"[ERROR] No local database at {local}")
        return EXIT_FAILED
    chain = _chain(ctx)
    manifest = chain.read_manifest()
    if manifest is not None:
        return _upload_chain(ctx, chain, manifest, force)
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
    return _refusals(ctx, lambda: _manual_sync(ctx, current_etag))


def _manual_sync(ctx: Context, etag: str | None) -> int:
    with _hold(ctx) as hold:
        syncer = Syncer(ctx.settings.local_path, ctx.store, hold, etag, ctx.log, ctx.metrics)
        try:
            result = syncer.sync("manual", force=True)
        finally:
            syncer.close()
    ctx.out(f"[INFO] Database uploaded successfully to {ctx.store.url}")
    if result.info is not None:
        ctx.out(f"       version {result.info.version_id}, {result.info.size} bytes")
    return EXIT_OK


def _upload_chain(ctx: Context, chain: ChainStore, manifest: Manifest, force: bool) -> int:
    """On a chain bucket the local file becomes the current state: a new generation from it
    (the old chain kept for point-in-time restore) and ``K``, under the lease; refused when the
    chain moved since the file was downloaded, unless forced."""
    local = ctx.settings.local_path
    expected = state.read(local).get("chain")
    end = summary.probe_end(chain, manifest)
    found = f"{end.generation}:{end.position}"
    if found != expected and not force:
        ctx.out(
            f"[ERROR] Refusing to upload: the chain at {ctx.store.url} moved since {local} was "
            f"downloaded (expected {expected or 'no download'}, found {found}). Download "
            "first, or pass --force to make the local file current (the chain before it is "
            "kept for point-in-time restore, and a backup of the current object is made)."
        )
        return EXIT_REFUSED
    current = ctx.store.head()
    if force and current is not None and found != expected:
        ctx.store.create_backup(current, when=current.last_modified.timestamp())

    def run() -> int:
        done = reinstate.reinstate(
            ctx.table, chain, ctx.store, reinstate.Point(file=local), _holder(ctx),
            ttl=ctx.settings.lease_ttl, scratch=_scratch(ctx),
            on_release_failure=_warn_release(ctx), reason="manual",
        )
        for warning in done.warnings:
            ctx.out(f"[WARN] {warning}")
        state.update(local, {"chain": f"{done.generation}:{done.position}",
                             "etag": done.current.etag})
        ctx.out(f"[INFO] Database uploaded successfully to {ctx.store.url}")
        ctx.out(f"       version {done.current.version_id}, {done.current.size} bytes; "
                f"generation {done.generation} of the chain")
        return EXIT_OK

    try:
        return _refusals(ctx, run)
    except CorruptDatabase as exc:
        ctx.out(f"[ERROR] Failed to upload database: {local} fails its check: {exc.reason}")
        return EXIT_FAILED


def _ask_agent_to_sync(ctx: Context, pid: int, timeout: float) -> int:
    ctx.out(f"[INFO] An agent (pid {pid}) is running; asking it to sync now...")
    failure = live.LiveAgent(ctx.settings.local_path, pid, ctx.sleep).ask_to_sync(timeout)
    if failure is not None:
        ctx.out(f"[ERROR] Failed to upload database: {failure}")
        return EXIT_FAILED
    ctx.out(f"[INFO] Database uploaded successfully to {ctx.store.url}")
    return EXIT_OK


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
        if _ask_agent_to_sync(ctx, pid, SYNC_ANSWER_TIMEOUT) != EXIT_OK:
            return EXIT_FAILED
    if version_id is None:
        chain = _chain(ctx)
        manifest = chain.read_manifest()
        if manifest is not None:
            return _download_chain(ctx, chain, target, manifest)
    ctx.out("[INFO] Checking for existing database in S3...")
    info = sources.find_version(ctx.store, version_id) if version_id else ctx.store.head()
    if info is None:
        ctx.out(f"[INFO] No database found at {ctx.store.url}")
        return EXIT_FAILED
    ctx.out("[INFO] Database found in S3. Downloading...")
    os.makedirs(os.path.dirname(target) or ".", exist_ok=True)
    incoming = target + ".download"
    fetch_verified(ctx.store, info, incoming)
    if os.path.exists(target):
        shutil.copyfile(target, target + ".backup")
        ctx.out(f"[INFO] Backup created at {target}.backup")
    move_into_place(incoming, target)
    if target == local:
        state.update(local, {"etag": info.etag, "downloaded": info.describe()})
    ctx.out(f"[INFO] Database downloaded successfully from {ctx.store.url} to {target}")
    return EXIT_OK


def _download_chain(ctx: Context, chain: ChainStore, target: str, manifest: Manifest) -> int:
    """WAKEFUL_REPLICATION=chain: the chain's end (the last snapshot and every segment after
    it), never ``K`` alone, which lags it after a crash."""
    ctx.out("[INFO] Restoring the database from the chain in S3...")
    os.makedirs(os.path.dirname(target) or ".", exist_ok=True)
    incoming = target + ".download"
    try:
        restored = chain.restorer.current(incoming, manifest)
    except NothingToRestore:
        ctx.out(f"[INFO] No database found at {ctx.store.url}")
        return EXIT_FAILED
    except ChainBroken as exc:
        ctx.out(f"[ERROR] The chain cannot be restored to its end: {exc}")
        return EXIT_FAILED
    if not os.path.exists(incoming):
        ctx.out(f"[INFO] The chain at {ctx.store.url} holds the empty database")
        return EXIT_FAILED
    if os.path.exists(target):
        shutil.copyfile(target, target + ".backup")
        ctx.out(f"[INFO] Backup created at {target}.backup")
    move_into_place(incoming, target)
    if target == ctx.settings.local_path:
        # What ``upload`` swaps against: the chain's end this file holds.
        state.update(target, {"etag": None, "chain": f"{restored.generation}:{restored.txid}",
                              "downloaded": None})
    ctx.out(
        f"[INFO] Database downloaded successfully from {ctx.store.url} to {target} "
        f"(generation {restored.generation}, position {restored.txid})"
    )
    return EXIT_OK


# -- restore and verify ---------------------------------------------------------------------


def restore(
    ctx: Context, backup: str | None, version_id: str | None, at: str | None,
    dry_run: bool = False, txid: int | None = None, generation: str | None = None,
) -> int:
    """Make a backup, an older version or a point of the chain the current database, under
    the lease. On a chain bucket it becomes a new generation (``wakeful_replica.reinstate``)."""
    chain = _chain(ctx)
    if chain.read_manifest() is not None:
        point = reinstate.point_of(ctx.store, backup, version_id, at, txid, generation)
        return _restore_chain(ctx, chain, point, dry_run)
    if txid is not None:
        ctx.out(f"[ERROR] No chain at {ctx.store.url} (a bucket of the whole-file layout): "
                "--txid needs one; restore a --backup, a --version or --at a time instead")
        return EXIT_FAILED
    source = sources.resolve(ctx.store, backup, version_id, at)
    label = sources.label(source)
    if dry_run:
        return _restore_preview(ctx, source)

    def announce(kind: str, what: str, size: int) -> None:
        if kind == "download":
            ctx.out(f"[INFO] Downloading {what} ({size} bytes)...")

    def run() -> int:
        info = restoring.restore(
            ctx.table, ctx.store, source, _holder(ctx), ttl=ctx.settings.lease_ttl,
            watch=announce, scratch=_scratch(ctx), on_release_failure=_warn_release(ctx),
        )
        ctx.out(
            f"[INFO] Restored {label} as s3://{ctx.store.bucket}/{ctx.store.key} "
            f"(new version {info.version_id})"
        )
        return EXIT_OK

    return _refusals(ctx, run)


def _restore_chain(
    ctx: Context, chain: ChainStore, point: reinstate.Point, dry_run: bool
) -> int:
    def run() -> int:
        if dry_run:
            return _chain_preview(ctx, chain, point)
        done = reinstate.reinstate(
            ctx.table, chain, ctx.store, point, _holder(ctx), ttl=ctx.settings.lease_ttl,
            scratch=_scratch(ctx), on_release_failure=_warn_release(ctx),
        )
        for warning in done.warnings:
            ctx.out(f"[WARN] {warning}")
        ctx.out(
            f"[INFO] Restored {point.label()} as generation {done.generation} of the chain "
            f"(position {done.position}; the old chain is kept) and as {ctx.store.url} "
            f"(new version {done.current.version_id})"
        )
        return EXIT_OK

    try:
        return _refusals(ctx, run)
    except ChainBroken as exc:
        ctx.out(f"[ERROR] {point.label()} cannot be restored: {exc}. Nothing was changed; "
                "`wakeful-agent verify` lists every problem of the chain")
        return EXIT_FAILED
    except NothingToRestore as exc:
        ctx.out(f"[ERROR] Nothing to restore: {exc}. Nothing was changed; "
                "`wakeful-agent backups` shows the restorable window")
        return EXIT_FAILED
    except CorruptDatabase as exc:
        ctx.out(f"[ERROR] {point.label()} is corrupt: {exc.reason}; it cannot be restored")
        return EXIT_FAILED


def _chain_preview(ctx: Context, chain: ChainStore, point: reinstate.Point) -> int:
    seen = reinstate.preview(ctx.table, chain, ctx.store, point, scratch=_scratch(ctx))
    for line in seen.lines(ctx.store.url):
        ctx.out(line)
    if seen.refusal is not None:
        ctx.out(f"[ERROR] The restore would be refused: {held_advice(seen.refusal, seen.now)}")
        return EXIT_REFUSED
    return EXIT_OK


def _restore_preview(ctx: Context, source: ObjectInfo) -> int:
    try:
        seen = restoring.preview(ctx.table, ctx.store, source, scratch=_scratch(ctx))
    except CorruptDatabase as exc:
        ctx.out(f"[ERROR] {sources.label(source)} is corrupt: {exc.reason}; it cannot be restored")
        return EXIT_FAILED
    for line in seen.lines(ctx.store.url):
        ctx.out(line)
    refusal = seen.refusal
    if refusal is not None:
        ctx.out(f"[ERROR] The restore would be refused: {held_advice(refusal, seen.now)}")
        return EXIT_REFUSED
    return EXIT_OK


def verify(
    ctx: Context, backup: str | None, version_id: str | None, full: bool = True
) -> int:
    """Check a stored database without touching the local file; on a chain bucket (with
    neither a backup nor a version named) walk the whole chain."""
    if backup is None and version_id is None:
        chain = _chain(ctx)
        if chain.read_manifest() is not None:
            return _verify_chain(ctx, chain)
    try:
        info = sources.resolve(ctx.store, backup, version_id)
    except NotFound as exc:
        ctx.out(f"[ERROR] {exc}")
        return EXIT_FAILED
    label = sources.label(info)
    with tempfile.TemporaryDirectory(dir=_scratch(ctx)) as scratch:
        try:
            digest = fetch_verified(ctx.store, info, os.path.join(scratch, "verify.sqlite3"),
                                    full=full)
        except CorruptDatabase as exc:
            ctx.out(f"[ERROR] {label} is corrupt: {exc.reason}")
            return EXIT_FAILED
    checksum = "matches" if info.sha256 else "not recorded (uploaded by another tool)"
    ctx.out(
        f"[INFO] {label} is a good database: {info.size} bytes, sha256 {digest} "
        f"({checksum}), {'integrity_check' if full else 'quick_check'} ok"
    )
    return EXIT_OK


def _verify_chain(ctx: Context, chain: ChainStore) -> int:
    """Every retained position of every generation and every base, by ``ChainStore.verify``."""
    with tempfile.TemporaryDirectory(dir=_scratch(ctx)) as scratch:
        walked = gaps.verify(chain, scratch)
    for line in render.verify_lines(walked, ctx.store.url):
        ctx.out(line)
    return EXIT_OK if walked.ok else EXIT_FAILED


# -- listings -------------------------------------------------------------------------------


def backups(ctx: Context, versions: bool, as_json: bool) -> int:
    found = listing.read(ctx.store, versions)
    chain = summary.read(_chain(ctx))
    if as_json:
        # A bucket without a chain lists what it always did.
        ctx.out(render.as_json({**found.as_json(),
                                **({"chain": chain.as_json()} if chain else {})}))
        return EXIT_OK
    now = time.time()
    for line in render.listing_lines(found, now):
        ctx.out(line)
    if chain is not None:
        ctx.out("")
        for line in summary.backup_lines(chain.as_json(), ctx.store.url, now):
            ctx.out(line)
    return EXIT_OK


def status(ctx: Context, as_json: bool) -> int:
    local = ctx.settings.local_path
    facts = report.read_facts(ctx.table, ctx.store)
    agent_pid = state.live_agent(local)
    chain = summary.read(_chain(ctx))
    chain_data = chain.as_json() if chain else None
    if not as_json:
        for line in render.status_lines(facts, ctx.store.url, local, agent_pid):
            ctx.out(line)
        for line in render.chain_lines(chain_data, time.time()):
            ctx.out(line)
        return EXIT_OK
    lease = facts.lease
    data = report.build(facts, report.task_arn_only(lease), time.time())
    # The shared report, with what only this container knows or shows.
    data["lease"].update(task_arn=lease.task_arn, last_upload=lease.last_upload,
                         last_unsynced_stop=lease.last_unsynced_stop)
    data["database"] = facts.current.describe() if facts.current else None
    data["local"] = {"path": local, "agent_pid": agent_pid, "state": state.read(local).get("state")}
    if chain_data is not None:  # a bucket without a chain reports what it always did
        data["chain"] = chain_data
    ctx.out(render.as_json(data))
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
    started = spawn.start_background_agent(
        local, timeout, sleep=ctx.sleep, argv=(*spawn.SERVE, "--writer-group", str(os.getpgrp()))
    )
    if started.running:
        ctx.out(f"[INFO] Agent running in the background (pid {started.pid})")
        return EXIT_OK
    if started.exit_code is not None:
        ctx.out(f"[ERROR] Agent failed to start (exit {started.exit_code})")
        return started.exit_code or EXIT_FAILED
    ctx.out("[ERROR] Agent did not start in time")
    return EXIT_FAILED


def shutdown(ctx: Context, timeout: float | None = None) -> int:
    """Stop the background agent: it uploads and releases; return its exit code."""
    local = ctx.settings.local_path
    pid = state.live_agent(local)
    if pid is None:
        ctx.out("[INFO] No agent running; nothing to stop")
        return EXIT_OK
    limit = timeout or ctx.settings.stop_budget + ctx.settings.stop_grace + 10
    code = live.LiveAgent(local, pid, ctx.sleep).stop(limit)
    if code is None:
        ctx.out("[ERROR] The agent did not finish its shutdown in time")
        return EXIT_FAILED
    return code


# -- helpers --------------------------------------------------------------------------------


def _holder(ctx: Context) -> str:
    """Who a manual write says holds the lease: this container's agent identity, marked manual."""
    return f"manual@{ctx.identity.holder}"


def _hold(ctx: Context) -> LeaseHold:
    return LeaseHold(ctx.table, _holder(ctx), ctx.settings.lease_ttl, _warn_release(ctx))


def _warn_release(ctx: Context) -> Callable[[Exception], None]:
    return lambda exc: ctx.out(f"[WARN] Could not release the lease: {exc}")


def _refusals(ctx: Context, run: Callable[[], int]) -> int:
    """Run a write under the lease; a lease someone else holds, or a fence lost, is a refusal."""
    try:
        return run()
    except LeaseHeld as exc:
        ctx.out(f"[ERROR] Refused: {held_advice(exc, time.time())}")
        return EXIT_REFUSED
    except (FencingError, LeaseLost, Fenced, Superseded) as exc:
        ctx.out(f"[ERROR] Refused: {exc}")
        return EXIT_REFUSED


def held_advice(exc: LeaseHeld, now: float) -> str:
    """Who holds the lease until when, and what to do: the same inside a container or out."""
    return (
        f"the lease {exc.name!r} is {exc.state} by {exc.holder!r} until "
        f"{text.moment(exc.expires_at, now)}. A running backend owns the database: put it to "
        "sleep first (`wakeful sleep --wait`), then run this again."
    )


def _chain(ctx: Context) -> ChainStore:
    """The chain beside the database (whichever way this agent replicates): a bucket holds
    one once a manifest is there."""
    if ctx.chain is not None:
        return ctx.chain
    location = ctx.settings.location
    return ChainStore(location.bucket, location.key, region=location.region)


def _scratch(ctx: Context) -> str | None:
    folder = os.path.dirname(ctx.settings.local_path)
    return folder if folder and os.path.isdir(folder) else None
