"""The agent's lifecycle: acquire → download → run the app → sync → stop → upload → release.

Exit codes (``run``): the app's own code when everything held; otherwise one of ``EXIT_*``
(bad arguments or configuration: ``chalicelib.exits.EXIT_USAGE``, before any of this runs).
"""

from __future__ import annotations

import os
import shutil
import signal
import threading
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from chalicelib.download import download_newest_good
from chalicelib.errors import (
    CorruptDatabase,
    FencingError,
    LeaseHeld,
    LeaseLost,
    LeaseUnavailable,
    NoGoodVersion,
    StoreError,
    StoreUnavailable,
    WakefulError,
)
from chalicelib.exits import EXIT_USAGE
from chalicelib.keeper import LeaseKeeper
from chalicelib.lease import Lease
from chalicelib.observability import MetricUnit, emit
from chalicelib.stamps import stamp
from chalicelib.store import ObjectInfo
from container import retry, state
from container.backups import timestamped_backup
from container.deadline import Budget, Deadline, Earliest, call_within
from container.heartbeat import Heartbeat, LeaseTrust
from container.inbox import Inbox
from container.placement import move_aside, move_into_place, sidecars
from container.process import AppProcess, ProcessGroup, open_elsewhere
from container.readiness import Probe, wait_until_ready
from container.replication import CHAIN, CHAIN_FENCING, ChainBroken, ChainSync
from container.snapshot import take
from container.sync import Syncer, SyncResult
from container.watchdog import Watchdog
from container.wiring import Wiring
from wakeful_replica import sqlite
from wakeful_replica.errors import SqliteTooOld

# Seconds between attempts to mark the lease ready when DynamoDB does not answer.
READY_RETRY = 1.0

EXIT_LEASE_HELD = 3
EXIT_DOWNLOAD_FAILED = 4
EXIT_LEASE_LOST = 5
EXIT_UPLOAD_FAILED = 6
EXIT_RELEASE_FAILED = 7

RETRY_FIRST_DELAY = 0.5

# What a later attempt may cure: the service answered badly or not at all, the snapshot was bad.
RETRYABLE = (StoreUnavailable, LeaseUnavailable, CorruptDatabase, OSError)

# The share of the lease TTL an app gets between SIGTERM and SIGKILL when the lease runs out
# (never more than WAKEFUL_STOP_GRACE): it must be dead before anyone else may take over.
KILL_GRACE_SHARE = 0.1

# The share of the lease TTL it must still be trusted for when the app is started: an app
# started on a lease about to run out would only be killed again, or outlive it.
START_MARGIN_SHARE = 0.5

# A timestamped backup after the final upload (a LIST, a COPY, a LIST to prune) is worth
# starting only with this much of the stop budget left.
BACKUP_MIN_SECONDS = 2.0
# Of the stop budget, what a chain stop keeps for the release once its final segment shipped.
RELEASE_RESERVE_SECONDS = 2.0

T = TypeVar("T")


class Agent:
    """One agent process. ``run`` supervises an app; ``serve`` only keeps the database synced."""

    def __init__(self, deps: Wiring, writer_group: ProcessGroup | None = None) -> None:
        """``writer_group``: for ``startup``, the entrypoint's process group, whose app must
        be stopped when the lease is lost (``run`` supervises its own app instead)."""
        self.settings = deps.settings
        self.deps = deps
        self.log = deps.log
        self.inbox = Inbox()
        self.keeper: LeaseKeeper | None = None
        self.syncer: Syncer | None = None
        self.chain: ChainSync | None = None  # WAKEFUL_REPLICATION=chain, instead of ``syncer``
        self.app: AppProcess | None = None
        self.writer_group = writer_group
        self.heartbeat: Heartbeat | None = None
        self.watchdog: Watchdog | None = None
        # Held while the app is started or stopped, so the watchdog never misses one.
        self._writer_lock = threading.Lock()
        self._budget: Budget | None = None
        self._stop_reason: str | None = None
        self._signals = 0
        self._stop_requested_at: float | None = None
        self._fell_back = False
        # Set once the agent stops (or abandons): the readiness probe gives up then.
        self._stopping = threading.Event()

    # -- public entry points ---------------------------------------------------------------

    def run(self, argv: Sequence[str] | None) -> int:
        """The whole lifecycle. With no ``argv``, keep syncing until signalled (``startup``)."""
        self._publish("starting")
        self._install_signal_handlers()
        try:
            code = self._refuse_an_unfixed_sqlite() or self._boot()
            if code is not None:
                return code
            return self._supervise(argv)
        finally:
            self.inbox.close()

    # -- boot ------------------------------------------------------------------------------

    @property
    def _chained(self) -> bool:
        return self.settings.replication == CHAIN

    def _refuse_an_unfixed_sqlite(self) -> int | None:
        """In ``chain`` mode the agent opens the app's file: never with the WAL-reset bug."""
        if not self._chained:
            return None
        found = self.deps.sqlite_versions()
        self.log.info("SQLite versions", extra=found.describe())
        try:
            sqlite.require_fixed(found.agent)
        except SqliteTooOld as exc:
            self.log.error(f"WAKEFUL_REPLICATION=chain refused: {exc}")
            self._publish("exited", exit_code=EXIT_USAGE)
            return EXIT_USAGE
        return None

    def _boot(self) -> int | None:
        self.keeper = self._acquire()
        if self.keeper is None:
            code = 0 if self._signals else EXIT_LEASE_HELD
            self._publish("exited", exit_code=code)
            return code
        lease = self.keeper.lease
        # Renew and watch from now on, before anything else can block: neither marking the
        # task held nor a large download may outlive the lease.
        self._start_guards()
        self._mark_held(lease)
        if self._chained:
            return self._boot_chain()
        try:
            base_etag = self._download()
        except LeaseLost as exc:
            # Not renewed in time while downloading: no app was started, nothing to keep aside.
            self.log.error(f"Lease lost: {exc}. The app was not started")
            emit(self.deps.metrics, "LeaseLost")
            self._stop_guards()
            self._publish("exited", exit_code=EXIT_LEASE_LOST)
            return EXIT_LEASE_LOST
        except (NoGoodVersion, StoreError, OSError) as exc:
            self.log.error(f"Failed to download database: {exc}")
            emit(self.deps.metrics, "DownloadFailed")
            self._stop_guards()
            self._release_quietly()
            self._publish("exited", exit_code=EXIT_DOWNLOAD_FAILED)
            return EXIT_DOWNLOAD_FAILED
        self.syncer = Syncer(
            self.settings.local_path,
            self.deps.store,
            self.keeper,
            base_etag,
            self.log,
            self.deps.metrics,
            self.deps.clocks.monotonic,
            call=self._call,
        )
        # After a fallback the current object is still the corrupt one: replace it at the
        # first sync even if the app writes nothing.
        self.syncer.start_watching(dirty=self._fell_back)
        return None

    def _boot_chain(self) -> int | None:
        """Restore the chain's end and claim its next position, before the app starts."""
        assert self.keeper is not None and self.deps.chain is not None
        self.chain = ChainSync(
            self.settings.local_path, self.deps.chain, self.keeper, self.log,
            self.deps.metrics, call=self._call, clock=self.deps.clocks.monotonic,
            wall=self.deps.clocks.wall,
        )
        try:
            self.chain.boot()
        except (LeaseLost, *CHAIN_FENCING) as exc:
            # A newer holder claimed the chain: this one must not start the app.
            self._stop_reason = str(exc)
            return self._abandon(app_running=False)
        except ChainBroken as exc:
            self.log.error(
                f"Failed to download database: the chain in S3 cannot be restored to its "
                f"end: {exc}. The app was not started on an older state; run `wakeful "
                "verify` and restore a good point"
            )
            return self._boot_failed("ChainBroken")
        except (StoreError, WakefulError, OSError) as exc:
            self.log.error(f"Failed to download database: {exc}")
            return self._boot_failed("DownloadFailed")
        return None

    def _boot_failed(self, metric: str) -> int:
        emit(self.deps.metrics, metric)
        self._stop_guards()
        self._release_quietly()
        self._publish("exited", exit_code=EXIT_DOWNLOAD_FAILED)
        return EXIT_DOWNLOAD_FAILED

    def _acquire(self) -> LeaseKeeper | None:
        """Take the lease, waiting up to the acquire timeout for a live holder to go.

        The keeper trusts it from when the request that returned it was sent.
        """
        clocks = self.deps.clocks
        deadline = clocks.monotonic() + self.settings.acquire_timeout
        identity = self.deps.identity
        delay = RETRY_FIRST_DELAY
        while True:
            try:
                keeper = LeaseKeeper.acquire(
                    self.deps.table,
                    identity.holder,
                    self.settings.lease_ttl,
                    clocks.monotonic,
                    clocks.wall,
                    reservation_id=self.settings.reservation_id,
                    task_arn=identity.task_arn,
                    boot=identity.boot,
                )
            except (LeaseHeld, LeaseUnavailable) as exc:
                if self._signals:
                    self.log.info("Stop requested before the lease was acquired; exiting")
                    return None
                if clocks.monotonic() + delay > deadline:
                    self.log.error(
                        f"Could not acquire the lease: {exc}; the app was not started",
                        extra={"lease": self.deps.table.name},
                    )
                    emit(self.deps.metrics, "LeaseRefused")
                    return None
                self.log.info(f"Waiting for the lease: {exc}")
                clocks.sleep(delay)
                delay = min(delay * 2, 2.0)
                continue
            lease = keeper.lease
            self.log.info(
                "Lease acquired",
                extra={"holder": lease.holder, "token": lease.token, "lease": lease.name},
            )
            return keeper

    def _start_guards(self) -> None:
        """The heartbeat renews; the watchdog stops the app when the lease can't be trusted."""
        assert self.keeper is not None
        self.heartbeat = Heartbeat(
            self.keeper, self.inbox, self.settings.idle_timeout, self.deps.clocks.wall
        )
        kill_grace = min(self.settings.stop_grace, KILL_GRACE_SHARE * self.settings.lease_ttl)
        self.watchdog = Watchdog(
            self.keeper, self._halt, self.inbox, kill_grace, self.deps.clocks.monotonic
        )
        self.heartbeat.start()
        self.watchdog.start()

    def _stop_guards(self) -> None:
        for guard in (self.heartbeat, self.watchdog):
            if guard is not None:
                guard.stop()

    def _call(self, fn: Callable[[], T], what: str) -> T:
        """Run one AWS call, waiting no longer than the lease is trusted (or the stop budget)."""
        assert self.keeper is not None
        deadline: Deadline = LeaseTrust(self.keeper)
        if self._budget is not None:
            deadline = Earliest(deadline, self._budget)
        return call_within(fn, deadline, what)

    def _writer(self) -> AppProcess | ProcessGroup | None:
        """Whatever writes the database: our app, or the entrypoint's group that keeps it."""
        with self._writer_lock:
            return self.app if self.app is not None else self.writer_group

    def _halt(self, reason: str, grace: float) -> bool:
        """Stop the app within ``grace`` seconds, from any thread: the lease is lost.

        ``True`` when no writer is left running.
        """
        writer = self._writer()
        if writer is None:
            return True
        if writer.poll() is None:
            self.log.error(
                f"Stopping the app: {reason}", extra={"pid": writer.pid, "grace": round(grace, 3)}
            )
            writer.stop(grace)
        return writer.poll() is not None

    def _mark_held(self, lease: Lease) -> None:
        """Tell the control plane, where the next holder cannot erase it, that this task held
        the lease: its stop must then be proven by a final upload, or alarmed."""
        arn = self.deps.identity.task_arn
        ledger = self.deps.ledger
        if not arn or ledger is None:
            return
        try:
            self._call(lambda: ledger.mark_held(arn, lease.token), "mark the task held")
        except (LeaseUnavailable, LeaseLost, OSError) as exc:
            self.log.warning(f"Could not mark the task as a holder: {exc}")

    def _download(self) -> str | None:
        """Put the newest good database at the local path; return the ETag to swap against."""
        local = self.settings.local_path
        store = self.deps.store
        os.makedirs(os.path.dirname(local) or ".", exist_ok=True)
        self.log.info("Checking for existing database in S3...")
        incoming = local + ".download"
        result = self._call(lambda: download_newest_good(store, incoming), "download")
        if result is None:
            older = self._call(store.versions, "list versions")
            if older:
                # A deleted current object is an accident far more often than a wish to start
                # over: an empty database uploaded over it would hide every row.
                raise NoGoodVersion(
                    f"{store.url} was deleted but {len(older)} older version(s) exist; "
                    "refusing a fresh start. Restore one with "
                    f"`wakeful-agent restore --version {older[0].version_id}`"
                )
            if os.path.exists(local):
                self.log.info(
                    "No database found in S3. Keeping the local database; "
                    "the first sync will upload it"
                )
            else:
                self.log.info("No database found in S3. Starting with a fresh database")
            state.update(local, {"etag": None, "downloaded": None})
            return None
        for skipped, reason in result.skipped:
            self.log.error(
                "Current database in S3 failed verification; falling back to an older version",
                extra={"version_id": skipped.version_id, "problem": reason},
            )
        if result.fell_back:
            self._fell_back = True
            emit(self.deps.metrics, "DownloadFallback")
            self.log.error(
                f"Restored the newest good version {result.used.version_id} "
                f"from {result.used.last_modified.isoformat()}; the corrupt current object "
                "will be replaced at the first sync"
            )
        self.log.info("Database found in S3. Downloading...")
        move_into_place(incoming, local)
        shutil.copyfile(local, local + ".backup")
        state.update(local, {"etag": result.current.etag, "downloaded": result.used.describe()})
        self.log.info(
            f"Database downloaded successfully from {store.url}",
            extra={"version_id": result.used.version_id, "size": result.used.size},
        )
        self.log.info(f"Backup created at {local}.backup")
        return result.current.etag

    # -- running ---------------------------------------------------------------------------

    def _supervise(self, argv: Sequence[str] | None) -> int:
        assert self.keeper is not None and self.heartbeat
        assert self.syncer is not None or self.chain is not None
        if self.keeper.lost:
            return self._abandon(app_running=False)
        outcome = None
        if argv and not self._signals:
            outcome = self._start_app(argv)
        elif not argv and not self._trusted_for_a_start():
            outcome = "lost"  # ``startup`` returns at "running": the user's app starts then
        if outcome != "lost":
            self._publish("running")
            if not argv:
                self._start_readiness(None)  # the entrypoint's own app, on the same port
        try:
            return self._finish(outcome or self._guarded_loop())
        finally:
            self._stop_guards()

    def _start_app(self, argv: Sequence[str]) -> str | None:
        """Start the app; ``"no-app"`` when it cannot be (the stop still uploads and releases),
        ``"lost"`` when the lease is gone already."""
        assert self.keeper is not None
        if not self._trusted_for_a_start():
            return "lost"
        app = AppProcess(argv, env=self._app_env())
        with self._writer_lock:
            # Under the lock: the watchdog stops the app we start here, or we see it has fired.
            if self.keeper.lost:
                return "lost"
            try:
                app.start()
            except OSError as exc:
                self.log.error(f"Failed to start the app {list(argv)}: {exc}")
                return "no-app"
            self.app = app
        self.log.info("App started", extra={"pid": app.pid, "argv": list(argv)})
        threading.Thread(target=self._watch_app, name="wakeful-app", daemon=True).start()
        self._start_readiness(app)
        return None

    def _start_readiness(self, app: AppProcess | None) -> None:
        threading.Thread(
            target=self._await_ready, args=(app,), name="wakeful-ready", daemon=True
        ).start()

    def _await_ready(self, app: AppProcess | None) -> None:
        """Mark the lease ready once the app answers on its port (at once without a port):
        only then do wakes and the front door send clients to it. ``app`` is ``None`` in
        ``startup`` mode, where the user's entrypoint starts the app itself."""
        assert self.keeper is not None
        keeper, port = self.keeper, self.settings.app_port

        def keep_trying() -> bool:
            return (app is None or app.poll() is None) and not keeper.lost

        took = 0.0
        if port is not None:
            probe = Probe(port, self.settings.ready_path, self.settings.ready_host)
            answered = wait_until_ready(
                probe, keep_trying, self._stopping, self.log.warning, self.deps.clocks.monotonic
            )
            if answered is None:
                return
            took = answered
        while True:
            try:
                self._call(
                    lambda: keeper.table.mark_ready(keeper.holder, keeper.token), "mark ready"
                )
                break
            except LeaseLost as exc:
                self.log.warning(f"Could not mark the app ready on the lease: {exc}")
                return  # the watchdog acts on a lost lease
            except (LeaseUnavailable, OSError) as exc:
                # Until the mark lands, clients are told "starting": keep trying.
                self.log.warning(f"Could not mark the app ready on the lease, retrying: {exc}")
                if self._stopping.wait(READY_RETRY) or not keep_trying():
                    return
        self.log.info("App ready", extra={"seconds": round(took, 3), "port": port})
        emit(self.deps.metrics, "AppReady", took, MetricUnit.Seconds)
        if not self._stopping.is_set():
            self._publish("running", ready=True)

    def _trusted_for_a_start(self) -> bool:
        """Whether the lease holds long enough to start the app; renews once if it is short."""
        assert self.keeper is not None
        keeper = self.keeper
        margin = START_MARGIN_SHARE * keeper.ttl
        if keeper.trusted_for() >= margin:
            return True
        try:
            self._call(keeper.renew, "renew the lease before starting the app")
        except (LeaseLost, LeaseUnavailable, OSError) as exc:
            self.log.warning(f"Could not renew the lease before starting the app: {exc}")
        if keeper.trusted_for() >= margin:
            return True
        keeper.lose(
            f"the lease is trusted for {max(0.0, keeper.trusted_for()):.1f} s, less than the "
            f"{margin:.1f} s needed to start the app"
        )
        return False

    def _guarded_loop(self) -> str:
        """The loop; an unexpected error still ends in the final upload and release."""
        try:
            return self._loop()
        except Exception as exc:
            self.log.exception(f"Agent error: {exc}; stopping with a final upload")
            return "error"

    def _loop(self) -> str:
        """Wait for the next thing to do; return why we are stopping.

        The lease's expiry is not watched here: this thread may be blocked in a sync when it
        runs out, so the watchdog stops the app on its own and posts ``lost``.
        """
        assert self.keeper is not None
        interval = self.settings.sync_interval
        clocks = self.deps.clocks
        next_sync = clocks.monotonic() + interval if interval > 0 else None
        while True:
            if self.keeper.lost:
                return "lost"
            timeout = None if next_sync is None else max(0.0, next_sync - clocks.monotonic())
            for message in self.inbox.wait(timeout):
                if message.kind == "lost" or self.keeper.lost:
                    return "lost"
                if message.kind in ("signal", "exited", "idle"):
                    self._stop_reason = message.detail or message.kind
                    if message.kind == "idle":
                        self.log.info("Idle timeout reached; stopping the app to sleep")
                    return message.kind
                if message.kind == "sync" and self._sync("manual", force=True) == "lost":
                    return "lost"
            if next_sync is not None and clocks.monotonic() >= next_sync:
                if self._sync("periodic") == "lost":
                    return "lost"
                next_sync = clocks.monotonic() + interval

    def _sync(self, reason: str, force: bool = False) -> str:
        if self.chain is not None:
            return self._sync_chain(reason, snapshot=force)
        assert self.syncer is not None
        request = state.sync_requested(self.settings.local_path)
        try:
            result = self.syncer.sync(reason, force=force)
            outcome = "uploaded" if result.uploaded else "unchanged"
        except (FencingError, LeaseLost) as exc:
            self._stop_reason = str(exc)
            self._publish_sync(request, "lost", str(exc))
            return "lost"
        except (StoreUnavailable, LeaseUnavailable, CorruptDatabase, OSError) as exc:
            # The next interval retries; a crash meanwhile loses at most this interval more.
            self.log.warning(f"Failed to upload database: {exc}", extra={"reason": reason})
            emit(self.deps.metrics, "SyncFailed", reason=reason)
            self._publish_sync(request, "failed", str(exc))
            return "failed"
        self._publish_sync(request, outcome, "")
        return outcome

    def _sync_chain(self, reason: str, snapshot: bool = False) -> str:
        assert self.chain is not None
        request = state.sync_requested(self.settings.local_path)
        try:
            synced = self.chain.sync(reason, snapshot=snapshot)
        except (FencingError, LeaseLost, *CHAIN_FENCING) as exc:
            self._stop_reason = str(exc)
            self._publish_sync(request, "lost", str(exc))
            return "lost"
        except (StoreError, LeaseUnavailable, WakefulError, OSError) as exc:
            # What was captured stays queued on disk (bounded) and ships at the next sync.
            self.log.warning(f"Failed to upload database: segments stay queued ({exc})",
                             extra={"reason": reason})
            emit(self.deps.metrics, "SyncFailed", reason=reason)
            self._publish_sync(request, "failed", str(exc))
            return "failed"
        outcome = "uploaded" if synced.shipped or synced.snapshot else "unchanged"
        self._publish_sync(request, outcome, "")
        return outcome

    def _watch_app(self) -> None:
        assert self.app is not None
        code = self.app.wait()
        self.inbox.post("exited", f"app exited with {code}")

    # -- stopping --------------------------------------------------------------------------

    def _finish(self, outcome: str) -> int:
        assert self.keeper is not None
        self._stopping.set()
        if outcome == "lost" or self.keeper.lost:
            return self._abandon()
        self._publish("stopping")
        self._stop_sending_clients()
        app_code = 0
        if self.app is not None:
            already_exited = self.app.poll() is not None
            app_code = self.app.stop(self.settings.stop_grace)
            # A stop we asked for (SIGTERM forwarded, idle) is a clean stop for the app too.
            if not already_exited and app_code in (0, 128 + signal.SIGTERM, 128 + signal.SIGINT):
                app_code = 0
            self.log.info("App stopped", extra={"exit_code": app_code})
        if outcome == "idle":
            app_code = 0
        elif outcome == "no-app":
            app_code = 127  # the shell's "command not found"
        elif outcome == "error":
            app_code = app_code or 1
        code = self._final_upload_and_release()
        final = code if code is not None else app_code
        self._publish("exited", exit_code=final)
        return final

    def _stop_sending_clients(self) -> None:
        """Wakes from now on answer "starting", not this app's address (it is stopping)."""
        assert self.keeper is not None
        holder = self.keeper.holder
        try:
            self._call(lambda: self.deps.table.clear_endpoint(holder), "clear the endpoint")
        except (LeaseUnavailable, LeaseLost, OSError) as exc:
            self.log.warning(f"Could not clear the endpoint on the lease: {exc}")

    def _final_upload_and_release(self) -> int | None:
        """Upload (retrying inside the stop budget), release, then back up if time is left.

        ``None`` when upload and release held. The backup is optional: bucket versioning
        already keeps what it copies, so it must never delay the release.
        """
        if self.chain is not None:
            return self._final_chain_and_release()
        assert self.syncer is not None and self.keeper is not None
        syncer = self.syncer
        budget_end = self._budget_end()
        self._budget = Budget(budget_end, self.deps.clocks.monotonic)
        results: list[SyncResult] = []
        uploaded = self._retry(
            lambda: results.append(syncer.sync("shutdown", force=True, backup=False)),
            budget_end, "upload",
        )
        if uploaded == "lost":
            return self._abandon(app_running=False)
        if uploaded != "ok":
            self.log.error(
                "Failed to upload database: the local file is kept at "
                f"{self.settings.local_path} and the lease is not released",
            )
            emit(self.deps.metrics, "FinalUploadFailed")
            return EXIT_UPLOAD_FAILED
        self._stop_guards()
        budget = self._budget
        keeper = self.keeper
        # Conditioned on holder and token, a release is safe whatever the lease's trust.
        released = self._retry(
            lambda: call_within(keeper.release, budget, "release"), budget_end, "release"
        )
        if released != "ok":
            self.log.error("Failed to release the lease; it will expire on its own")
            return EXIT_RELEASE_FAILED
        self.log.info("Lease released", extra={"lease": self.keeper.table.name})
        syncer.close()
        final = results[-1].info if results else None
        if final is not None:
            self._backup_in_what_is_left(final)
        return None

    def _final_chain_and_release(self) -> int | None:
        """Final capture, ship, snapshot ``K`` if it changed, record the stop; then release.

        Shipping is retried inside the stop budget by the writer itself (its queue is on disk).
        """
        assert self.chain is not None and self.keeper is not None
        budget_end = self._budget_end()
        budget = Budget(budget_end, self.deps.clocks.monotonic)
        self._budget = budget
        try:
            # Kept for the release (and the stop's record on the lease): a snapshot that
            # does not fit is skipped, never the release.
            reserve = min(RELEASE_RESERVE_SECONDS, self.settings.stop_budget / 4)
            stopped = self.chain.stop(budget.remaining, self._keep_trying("upload"), reserve)
        except (FencingError, LeaseLost, *CHAIN_FENCING) as exc:
            self._stop_reason = str(exc)
            return self._abandon(app_running=False)
        except (StoreError, LeaseUnavailable, WakefulError, OSError) as exc:
            self.log.error(
                f"Failed to upload database: the final segments did not ship ({exc}). The "
                f"local file is kept at {self.settings.local_path} (unshipped segments in "
                f"{self.chain.work_dir}) and the lease is not released",
            )
            emit(self.deps.metrics, "FinalUploadFailed")
            return EXIT_UPLOAD_FAILED
        self._stop_guards()
        keeper = self.keeper
        released = self._retry(
            lambda: call_within(keeper.release, budget, "release"), budget_end, "release"
        )
        self.chain.close()
        if released != "ok":
            self.log.error("Failed to release the lease; it will expire on its own")
            return EXIT_RELEASE_FAILED
        self.log.info("Lease released", extra={"lease": self.keeper.table.name})
        if stopped.wrote_current and stopped.snapshot is not None:
            self._chain_backup(stopped.snapshot.version_id)
        elif stopped.skipped is not None:
            self.log.warning("Backup skipped: the snapshot did not fit in the stop budget")
        else:
            self.log.info("Backup skipped: unchanged since the last snapshot")
        return None

    def _chain_backup(self, version_id: str | None) -> None:
        """The seed's timestamped backup of the ``K`` this stop wrote, in what is left."""
        budget = self._budget
        assert budget is not None
        store = self.deps.store
        if not self._backup_time_left(budget):
            return
        try:
            info = call_within(lambda: store.head(version_id=version_id), budget, "head")
        except (StoreError, OSError) as exc:
            self.log.warning(f"Failed to create timestamped backup: {exc}")
            return
        if info is not None:
            timestamped_backup(store, info, self.log,
                               lambda fn, what: call_within(fn, budget, what))

    def _backup_time_left(self, budget: Budget) -> bool:
        left = budget.remaining()
        if left < BACKUP_MIN_SECONDS:
            self.log.warning(
                f"Backup skipped: only {max(0.0, left):.1f} s of the stop budget left "
                "(bucket versioning keeps the uploaded version)"
            )
            return False
        return True

    def _backup_in_what_is_left(self, info: ObjectInfo) -> None:
        assert self.syncer is not None and self._budget is not None
        budget = self._budget
        if not self._backup_time_left(budget):
            return
        # The lease is released: the backup copies one version and needs no lease.
        self.syncer.backup(info, call=lambda fn, what: call_within(fn, budget, what))

    def _keep_trying(self, what: str) -> Callable[[], bool]:
        """Whether a stop's retries of ``what`` go on: not after a second signal."""
        def keep_trying() -> bool:
            if self._signals >= 2:
                self.log.error(f"Second signal: not retrying the {what}")
                return False
            return True

        return keep_trying

    def _retry(self, action: Callable[[], Any], deadline: float, what: str) -> str:
        """``ok``, ``lost`` (fence refused), or ``failed`` once the budget is spent."""
        clocks = self.deps.clocks
        keep_trying = self._keep_trying(what)
        try:
            retry.within_budget(
                action, deadline, clocks.monotonic, clocks.sleep, RETRYABLE,
                lambda exc: self.log.warning(f"Failed to {what}: {exc}"), keep_trying,
            )
        except (FencingError, LeaseLost) as exc:
            self._stop_reason = str(exc)
            return "lost"
        except RETRYABLE:
            return "failed"
        return "ok"

    def _abandon(self, app_running: bool = True) -> int:
        """The fence is lost: stop at once, keep our file aside, never upload."""
        reason = (self.keeper.lost if self.keeper else None) or self._stop_reason
        if self.keeper is not None:
            self.keeper.lose(str(reason))
        self.log.error(
            f"Lease lost: {reason}. Stopping the app without uploading",
            extra={"lease": self.deps.table.name},
        )
        emit(self.deps.metrics, "LeaseLost")
        self._stop_guards()
        writer_gone = self._halt(str(reason), 0.0) if app_running else True
        if self.syncer is not None:
            self.syncer.close()
        if self.chain is not None:
            self.chain.close()
        kept = self._set_aside(writer_gone)
        if kept:
            self.log.error(f"Local database kept aside at {kept}")
        self._publish("exited", exit_code=EXIT_LEASE_LOST, conflict=kept)
        return EXIT_LEASE_LOST

    def _set_aside(self, writer_gone: bool) -> str | None:
        """Keep the local database as ``.conflict.<time>``: moved if nothing has it open any
        more, else copied (a consistent snapshot) and left where its writer has it."""
        local = self.settings.local_path
        if not os.path.exists(local):
            return None
        target = f"{local}.conflict.{stamp(self.deps.clocks.wall())}"
        holders = open_elsewhere([local, *sidecars(local)])
        if not writer_gone or holders:
            self.log.error(
                "The database is still open by another process; copying it aside, not moving it",
                extra={"pids": holders},
            )
            try:
                take(local, target)
            except (CorruptDatabase, OSError) as exc:
                self.log.error(f"Could not copy the database aside ({exc}); it stays at {local}")
                return None
            return target
        move_aside(local, target)
        return target

    def _release_quietly(self) -> None:
        if self.keeper is None:
            return
        try:
            self.keeper.release()
        except (LeaseLost, LeaseUnavailable) as exc:
            self.log.warning(f"Could not release the lease: {exc}")

    def _budget_end(self) -> float:
        """The stop budget counts from the stop signal (ECS's stopTimeout does too)."""
        started = self._stop_requested_at or self.deps.clocks.monotonic()
        return started + self.settings.stop_budget

    # -- signals and state -----------------------------------------------------------------

    def _install_signal_handlers(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        signal.signal(signal.SIGTERM, self._on_stop_signal)
        signal.signal(signal.SIGINT, self._on_stop_signal)
        signal.signal(signal.SIGUSR1, self._on_sync_signal)

    def _on_stop_signal(self, signum: int, _frame: object) -> None:
        self._signals += 1
        name = signal.Signals(signum).name
        if self._signals == 1:
            self._stop_requested_at = self.deps.clocks.monotonic()
            # Seed wording, kept for operators who grep for it.
            self.log.info(f"Received {name}, syncing database...")
            self.inbox.post("signal", f"received {name}")
        else:
            self.log.warning(f"Received {name} again: skipping retries")

    def _on_sync_signal(self, _signum: int, _frame: object) -> None:
        self.inbox.post("sync", "sync requested")

    def _app_env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.setdefault("DB_LOCAL_PATH", self.settings.local_path)
        return env

    def _publish(self, phase: str, **extra: Any) -> None:
        try:
            self._write_state(phase, **extra)
        except OSError as exc:
            # Only manual commands read it; a full disk must not stop the final upload.
            self.log.warning(f"Could not write the agent's state file: {exc}")

    def _write_state(self, phase: str, **extra: Any) -> None:
        state.update(
            self.settings.local_path,
            {
                "pid": os.getpid(),
                "pid_start": state.process_start(os.getpid()),
                "state": phase,
                **extra,
            },
        )

    def _publish_sync(self, request: int, outcome: str, detail: str) -> None:
        try:
            state.update(
                self.settings.local_path,
                {"sync_done": request, "sync_outcome": outcome, "sync_detail": detail},
            )
        except OSError as exc:
            self.log.warning(f"Could not write the agent's state file: {exc}")
