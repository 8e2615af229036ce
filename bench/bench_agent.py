"""Benchmark: the sync agent against the seed's ``aws s3 cp``, on a 100 MB database.

    python bench/bench_agent.py [--runs 3] [--size-mb 100] [--commits 2000]

One local moto server serves both sides. Measured, side by side in one run:

1. shutdown: SIGTERM to a ``python -m container run -- APP`` agent until that process has exited
   having uploaded and released, vs ``aws s3 cp FILE s3://...``;
2. boot: agent process start until its app has started (acquire + download + verify), vs
   ``aws s3 cp s3://... FILE``; both sides pay their own Python start-up, which is also
   measured on its own;
3. the app's commit latency (p99) with the agent syncing every second vs not syncing.

Prints a table and writes ``bench/results/agent.json``. The seed's side uses the ``aws`` of a
separate virtualenv (``.venv-bench``, created on first use), because awscli v1 pins botocore and
would otherwise move the project's own boto3/botocore.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import venv
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import local_aws  # noqa: E402
from local_aws import client  # noqa: E402

from tests.moto_server import MotoServer  # noqa: E402

BENCH = ROOT / "bench"
RESULTS = BENCH / "results" / "agent.json"
VENV = ROOT / ".venv-bench"
APP = BENCH / "commit_app.py"

REGION = "us-east-1"
BUCKET = "wakeful-bench"
TABLE = "wakeful-bench-leases"
AGENT_KEY = "db.sqlite3"
SEED_KEY = "seed/db.sqlite3"
CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_REGION": REGION,
    "AWS_DEFAULT_REGION": REGION,
}
TARGET_TRANSFER_RATIO = 1.2
TARGET_P99_RATIO = 2.0
MiB = 1024 * 1024


# -- setup --------------------------------------------------------------------------------------


def ensure_aws_cli(explicit: str | None) -> str:
    """The ``aws`` binary for the seed's side, installing awscli into ``.venv-bench`` once."""
    if explicit:
        return explicit
    aws = VENV / "bin" / "aws"
    if not aws.exists():
        print(f"Creating {VENV.name} with awscli (once)...", flush=True)
        venv.create(VENV, with_pip=True)
        subprocess.run(
            [str(VENV / "bin" / "python"), "-m", "pip", "install", "--quiet",
             "-r", str(BENCH / "requirements.txt")],
            check=True,
        )
    return str(aws)


def make_database(path: Path, size_mb: int) -> int:
    """A WAL-mode database of random (incompressible) blobs, checkpointed to ``size_mb``."""
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("CREATE TABLE blobs (id INTEGER PRIMARY KEY, data BLOB)")
    blob = 4000  # one row per 4 KiB page, so the file size tracks the row count
    db.execute("BEGIN")
    for _ in range(size_mb * MiB // 4096):
        db.execute("INSERT INTO blobs (data) VALUES (?)", (os.urandom(blob),))
    db.execute("COMMIT")
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()
    return path.stat().st_size


def create_resources(endpoint: str) -> None:
    local_aws.create_resources(endpoint, BUCKET, TABLE)


def lease_state(endpoint: str) -> str:
    item = client("dynamodb", endpoint).get_item(
        TableName=TABLE, Key={"pk": {"S": f"{BUCKET}/{AGENT_KEY}"}}
    )["Item"]
    return item["state"]["S"]


# -- the agent's side ---------------------------------------------------------------------------


@dataclass
class AgentRun:
    """One agent process, its log lines stamped as they arrive."""

    process: subprocess.Popen
    started: float
    lines: list[tuple[float, str]] = field(default_factory=list)
    reader: threading.Thread | None = None

    def drain(self, timeout: float = 30.0) -> None:
        """Wait until every line the agent (and its app) wrote has been read and stamped."""
        if self.reader is not None:
            self.reader.join(timeout)
            if self.reader.is_alive():
                raise RuntimeError(f"the agent's output did not end within {timeout}s")

    def read(self) -> None:
        assert self.process.stdout is not None
        for raw in self.process.stdout:
            stamp = time.time()
            try:
                message = json.loads(raw).get("message")
            except ValueError:
                message = raw.decode(errors="replace").strip()
            if isinstance(message, str):
                self.lines.append((stamp, message))

    def at(self, prefix: str, after: float = 0.0) -> float | None:
        """When the first log line starting with ``prefix`` (and logged after ``after``) came."""
        for stamp, message in list(self.lines):
            if stamp >= after and message.startswith(prefix):
                return stamp
        return None

    def need(self, prefix: str, after: float = 0.0) -> float:
        """``at``, for a line the breakdown cannot do without: missing, it is an error."""
        stamp = self.at(prefix, after)
        if stamp is None:
            raise RuntimeError(f"no log line {prefix!r} from the agent: {tail(self)}")
        return stamp

    def between(self, start: str, end: str) -> list[tuple[float, float]]:
        """Every (start, end) window of log lines, e.g. each sync from begin to success."""
        windows, opened = [], None
        for stamp, message in list(self.lines):
            if message.startswith(start):
                opened = stamp
            elif message.startswith(end) and opened is not None:
                windows.append((opened, stamp))
                opened = None
        return windows


def agent_env(endpoint: str, local: Path, sync_interval: float) -> dict[str, str]:
    return {
        **os.environ,
        **CREDENTIALS,
        "AWS_ENDPOINT_URL": endpoint,
        "DB_S3_BUCKET": BUCKET,
        "DB_S3_KEY": AGENT_KEY,
        "DB_LOCAL_PATH": str(local),
        "WAKEFUL_LEASE_TABLE": TABLE,
        "WAKEFUL_SYNC_INTERVAL": f"{sync_interval:g}",
        "WAKEFUL_STOP_GRACE": "10",
        "WAKEFUL_STOP_BUDGET": "100",
        "PYTHONPATH": str(ROOT),
        "PYTHONUNBUFFERED": "1",
    }


def start_agent(env: dict[str, str], app_args: list[str]) -> AgentRun:
    started = time.time()
    process = subprocess.Popen(
        [sys.executable, "-m", "container", "run", "--", sys.executable, str(APP), *app_args],
        env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    run = AgentRun(process, started)
    run.reader = threading.Thread(target=run.read, daemon=True)
    run.reader.start()
    return run


def wait_for_file(path: Path, run: AgentRun, timeout: float = 120.0) -> float:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and path.read_text().strip():
            return float(path.read_text())
        if run.process.poll() is not None:
            raise RuntimeError(f"agent exited with {run.process.returncode}: {tail(run)}")
        time.sleep(0.002)
    raise RuntimeError(f"app did not start within {timeout}s: {tail(run)}")


def tail(run: AgentRun) -> str:
    return " | ".join(message for _, message in run.lines[-8:])


def agent_cycle(
    endpoint: str, workdir: Path, index: int, breakdown: bool = True
) -> dict[str, float]:
    """Boot an agent on the stored database, let its app commit, SIGTERM it; time each phase
    (``breakdown=False``: only the totals, for the first run, which finds no database)."""
    local = workdir / f"agent-{index}" / "db.sqlite3"
    marker = workdir / f"agent-{index}.started"
    run = start_agent(agent_env(endpoint, local, 0), [str(marker), "idle"])
    app_started = wait_for_file(marker, run)
    time.sleep(0.3)  # let the app commit, so the final upload carries a change
    signalled = time.time()
    run.process.send_signal(signal.SIGTERM)
    code = run.process.wait(timeout=150)
    exited = time.time()
    # The lines are stamped as they are read: the breakdown waits for the last of them, and a
    # line it needs that never came is an error, not a silent zero.
    run.drain()
    if code != 0:
        raise RuntimeError(f"agent exited with {code}: {tail(run)}")
    if lease_state(endpoint) != "FREE":
        raise RuntimeError("agent exited 0 but the lease is not released")
    totals = {"boot": app_started - run.started, "shutdown": exited - signalled}
    if not breakdown:
        return totals
    acquired = run.need("Lease acquired")
    checking = run.need("Checking for existing database")
    downloaded = run.need("Database downloaded successfully")
    upload_begin = run.need("Uploading database to S3", after=signalled)
    uploaded = run.need("Database uploaded successfully", after=signalled)
    released = run.need("Lease released", after=signalled)
    return {
        **totals,
        "boot_until_first_log": acquired - run.started,
        "boot_download_verify": downloaded - checking,
        "boot_app_start": app_started - downloaded,
        "shutdown_app_stop": upload_begin - signalled,
        "shutdown_snapshot_upload": uploaded - upload_begin,
        "shutdown_backup_release": released - uploaded,
        "shutdown_exit": exited - released,
    }


# -- the seed's side ----------------------------------------------------------------------------


def timed(argv: list[str], env: dict[str, str]) -> float:
    begin = time.perf_counter()
    subprocess.run(argv, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    return time.perf_counter() - begin


def seed_cycle(aws: str, endpoint: str, source: Path, workdir: Path, index: int) -> dict:
    env = {**os.environ, **CREDENTIALS, "AWS_ENDPOINT_URL": endpoint}
    url = f"s3://{BUCKET}/{SEED_KEY}"
    common = ["--endpoint-url", endpoint, "--only-show-errors"]
    up = timed([aws, "s3", "cp", str(source), url, *common], env)
    stamp = time.strftime("%Y%m%d_%H%M%S")
    backup = timed([aws, "s3", "cp", url, f"{url}.backup.{stamp}{index}", *common], env)
    down = timed([aws, "s3", "cp", url, str(workdir / f"seed-{index}.sqlite3"), *common], env)
    # What every `aws` call pays before its first byte moves: interpreter, imports, one request.
    startup = timed([aws, "s3api", "head-bucket", "--bucket", BUCKET, *common[:2]], env)
    return {"up": up, "backup_copy": backup, "down": down, "cli_startup": startup}


def python_import_time() -> float:
    """The agent process's fixed cost before it does any work: interpreter and imports."""
    return timed(
        [sys.executable, "-c", "import container.cli"],
        {**os.environ, "PYTHONPATH": str(ROOT)},
    )


# -- the steps inside, in-process ----------------------------------------------------------------


def step_times(endpoint: str, source: Path, workdir: Path, runs: int) -> dict[str, float]:
    """Time each step of the agent's sync and boot on its own, with the alternatives they could use.

    The shutdown and boot figures above are whole-process; these say where their time goes.
    """
    os.environ.update({**CREDENTIALS, "AWS_ENDPOINT_URL": endpoint})
    from chalicelib.download import download_newest_good
    from chalicelib.files import sha256_file
    from chalicelib.integrity import check
    from chalicelib.store import SINGLE_COPY_LIMIT, DatabaseStore, UploadIntent
    from container import snapshot

    store = DatabaseStore(BUCKET, "steps/db.sqlite3", region=REGION)
    s3 = client("s3", endpoint)
    snap_path, fetched = str(workdir / "steps.snapshot"), str(workdir / "steps.download")
    times: dict[str, list[float]] = {}

    def clock(name: str, action):
        begin = time.perf_counter()
        result = action()
        times.setdefault(name, []).append(time.perf_counter() - begin)
        return result

    # The labels say what the store really does at this size (one conditional PUT below its
    # multipart threshold, one CopyObject below 5 GiB) and what the other way would cost.
    size = source.stat().st_size
    single_put = size < store.multipart_threshold
    multipart = f"multipart ({store.part_size // MiB} MiB parts, {store.concurrency} threads)"
    upload_now, upload_other = (
        ("one conditional PutObject", multipart) if single_put else (multipart, "one PutObject")
    )
    single_copy = size < SINGLE_COPY_LIMIT
    copy_now, copy_other = ("one CopyObject", "managed multipart copy") if single_copy else (
        "managed multipart copy", "one CopyObject")

    etag = None
    for index in range(runs):
        snap = clock("snapshot: backup API copy + quick_check + sha256",
                     lambda: snapshot.take(str(source), snap_path))
        clock("  of which sha256", lambda: sha256_file(snap_path))
        clock("  of which quick_check", lambda: check(snap_path))
        intent = UploadIntent("bench", 1, "shutdown")
        info = clock(f"upload: {upload_now} (as now)",
                     lambda: store.upload(snap, etag, intent))  # noqa: B023
        etag = info.etag
        other = DatabaseStore(BUCKET, f"steps/put.{index}", region=REGION,
                              multipart_threshold=1 if single_put else 1 << 40)
        clock(f"  alternative: {upload_other}",
              lambda: other.upload(snap, None, intent))  # noqa: B023
        source_version = {"Bucket": BUCKET, "Key": info.key, "VersionId": info.version_id}
        copies = {
            "managed multipart copy": lambda: s3.copy(
                source_version, BUCKET, f"steps/managed.{index}",  # noqa: B023
                Config=store._transfer_config(), ExtraArgs={"MetadataDirective": "COPY"}),
            "one CopyObject": lambda: s3.copy_object(
                CopySource=source_version, Bucket=BUCKET,  # noqa: B023
                Key=f"steps/copy.{index}", MetadataDirective="COPY"),  # noqa: B023
        }
        clock(f"backup: {copy_now} (as now)", copies[copy_now])
        clock(f"  alternative: {copy_other}", copies[copy_other])
        clock("boot: download + sha256 + quick_check",
              lambda: download_newest_good(store, fetched))
    return {name: statistics.median(values) for name, values in times.items()}


# -- commit latency -----------------------------------------------------------------------------


def latency_run(
    endpoint: str, workdir: Path, name: str, sync_interval: float, commits: int, pace: float
) -> dict:
    local = workdir / f"latency-{name}" / "db.sqlite3"
    marker = workdir / f"latency-{name}.started"
    latencies_path = workdir / f"latency-{name}.txt"
    run = start_agent(
        agent_env(endpoint, local, sync_interval),
        [str(marker), "commits", str(commits), str(pace), str(latencies_path)],
    )
    code = run.process.wait(timeout=300)
    run.drain()
    if code != 0:
        raise RuntimeError(f"latency agent ({name}) exited with {code}: {tail(run)}")
    samples = [
        (float(at), float(value))
        for at, value in (line.split() for line in latencies_path.read_text().splitlines())
    ]
    first, last = samples[0][0], samples[-1][0]
    syncs = [
        (begin, end)
        for begin, end in run.between("Uploading database to S3", "Database uploaded successfully")
        if begin < last and end > first
    ]
    during = [value for at, value in samples if any(b <= at <= e for b, e in syncs)]
    values = [value for _, value in samples]
    return {
        "commits": len(values),
        "p50_ms": 1000 * percentile(values, 50),
        "p99_ms": 1000 * percentile(values, 99),
        "max_ms": 1000 * max(values),
        "syncs": len(syncs),
        "sync_seconds": [round(end - begin, 3) for begin, end in syncs],
        "commits_during_sync": len(during),
        "p99_during_sync_ms": 1000 * percentile(during, 99) if during else None,
    }


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(pct / 100 * len(ordered) + 0.5) - 1))
    return ordered[rank]


# -- report -------------------------------------------------------------------------------------


def median(runs: list[dict], key: str) -> float:
    return statistics.median(run[key] for run in runs)


def summarize(agent: list[dict], seed: list[dict], idle: dict, syncing: dict) -> dict:
    agent_med = {key: median(agent, key) for key in agent[0]}
    seed_med = {key: median(seed, key) for key in seed[0]}
    shutdown_ratio = agent_med["shutdown"] / seed_med["up"]
    boot_ratio = agent_med["boot"] / seed_med["down"]
    p99_ratio = syncing["p99_ms"] / idle["p99_ms"]
    # The seed's own shutdown also copies the upload to a timestamped backup, as the agent does.
    seed_med["shutdown_script"] = median(
        [{"v": run["up"] + run["backup_copy"]} for run in seed], "v"
    )
    return {
        "agent_median": agent_med,
        "seed_median": seed_med,
        "shutdown_ratio": shutdown_ratio,
        "boot_ratio": boot_ratio,
        "p99_ratio": p99_ratio,
        "shutdown_ratio_vs_seed_script": agent_med["shutdown"] / seed_med["shutdown_script"],
        "targets": {
            "shutdown": shutdown_ratio <= TARGET_TRANSFER_RATIO,
            "boot": boot_ratio <= TARGET_TRANSFER_RATIO,
            "p99": p99_ratio <= TARGET_P99_RATIO,
        },
    }


def print_table(
    summary: dict, idle: dict, syncing: dict, imports: float, steps: dict[str, float]
) -> None:
    agent, seed = summary["agent_median"], summary["seed_median"]
    ok = {True: "ok", False: "MISSED"}
    targets = summary["targets"]
    rows = [
        ("shutdown: SIGTERM -> uploaded + released", agent["shutdown"], seed["up"],
         summary["shutdown_ratio"], f"<= {TARGET_TRANSFER_RATIO}x {ok[targets['shutdown']]}"),
        ("boot: start -> app running", agent["boot"], seed["down"],
         summary["boot_ratio"], f"<= {TARGET_TRANSFER_RATIO}x {ok[targets['boot']]}"),
        ("commit p99 (ms): syncing every 1 s vs none", syncing["p99_ms"], idle["p99_ms"],
         summary["p99_ratio"], f"<= {TARGET_P99_RATIO}x {ok[targets['p99']]}"),
    ]
    print()
    print(f"{'measure (median s unless noted)':<44} {'agent':>8} {'seed':>8} {'ratio':>7}  target")
    for label, ours, theirs, ratio, target in rows:
        print(f"{label:<44} {ours:>8.3f} {theirs:>8.3f} {ratio:>6.2f}x  {target}")
    print(
        f"{'shutdown vs the seed script (cp up + backup cp)':<44} {agent['shutdown']:>8.3f} "
        f"{seed['shutdown_script']:>8.3f} {summary['shutdown_ratio_vs_seed_script']:>6.2f}x  "
        "(context)"
    )
    print()
    print("breakdown (median s)")
    details = [
        ("agent boot: start -> first log (imports, acquire)", agent["boot_until_first_log"]),
        ("agent boot: download + verify + local backup", agent["boot_download_verify"]),
        ("agent boot: app start", agent["boot_app_start"]),
        ("agent shutdown: app stop", agent["shutdown_app_stop"]),
        ("agent shutdown: snapshot + check + upload", agent["shutdown_snapshot_upload"]),
        ("agent shutdown: backup copy + release", agent["shutdown_backup_release"]),
        ("agent shutdown: process exit", agent["shutdown_exit"]),
        ("python -c 'import container.cli'", imports),
        ("aws s3api head-bucket (CLI start-up + one request)", seed["cli_startup"]),
        ("aws s3 cp backup copy (seed's shutdown step 2)", seed["backup_copy"]),
    ]
    for label, value in details:
        print(f"  {label:<52} {value:>8.3f}")
    print()
    print("steps, in-process (median s)")
    for label, value in steps.items():
        print(f"  {label:<52} {value:>8.3f}")
    print()
    for name, result in (("no sync", idle), ("sync 1 s", syncing)):
        during = result["p99_during_sync_ms"]
        print(
            f"  commits {name:<9} n={result['commits']:<5} p50 {result['p50_ms']:.3f} ms  "
            f"p99 {result['p99_ms']:.3f} ms  max {result['max_ms']:.1f} ms  "
            f"syncs {result['syncs']}  p99 inside syncs "
            + (f"{during:.3f} ms" if during is not None else "-")
        )


# -- main ---------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3, help="boot/shutdown runs (median)")
    parser.add_argument("--step-runs", type=int, default=2, help="in-process step timings")
    parser.add_argument("--size-mb", type=int, default=100)
    parser.add_argument("--commits", type=int, default=2000)
    parser.add_argument("--pace", type=float, default=0.005,
                        help="seconds between commits, so the commits span several syncs")
    parser.add_argument("--aws", help="the aws CLI to compare with (default: .venv-bench's)")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args(argv)

    began = time.monotonic()
    aws = ensure_aws_cli(args.aws)
    server = MotoServer().start()
    try:
        with tempfile.TemporaryDirectory(prefix="wakeful-bench-") as tmp:
            workdir = Path(tmp)
            create_resources(server.url)
            source = workdir / "source.sqlite3"
            size = make_database(source, args.size_mb)
            print(f"database {size / MiB:.1f} MiB, moto at {server.url}, aws {aws}", flush=True)

            # Seed S3 with the database through the agent itself: its first run finds no object,
            # keeps the local file and uploads it at shutdown. Not timed.
            first = workdir / "agent-0" / "db.sqlite3"
            first.parent.mkdir()
            first.write_bytes(source.read_bytes())
            agent_cycle(server.url, workdir, 0, breakdown=False)

            agent_runs, seed_runs = [], []
            for index in range(1, args.runs + 1):
                agent_runs.append(agent_cycle(server.url, workdir, index))
                seed_runs.append(seed_cycle(aws, server.url, source, workdir, index))
                print(
                    f"run {index}: agent boot {agent_runs[-1]['boot']:.2f}s "
                    f"shutdown {agent_runs[-1]['shutdown']:.2f}s | seed down "
                    f"{seed_runs[-1]['down']:.2f}s up {seed_runs[-1]['up']:.2f}s",
                    flush=True,
                )
            imports = statistics.median(python_import_time() for _ in range(3))
            print("timing the steps in-process...", flush=True)
            steps = step_times(server.url, source, workdir, args.step_runs)

            idle = latency_run(server.url, workdir, "idle", 0, args.commits, args.pace)
            syncing = latency_run(server.url, workdir, "sync", 1, args.commits, args.pace)
    finally:
        server.stop()

    summary = summarize(agent_runs, seed_runs, idle, syncing)
    print_table(summary, idle, syncing, imports, steps)
    print(f"\nbench took {time.monotonic() - began:.0f} s")
    report = {
        "database_bytes": size,
        "runs": args.runs,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "aws_cli": subprocess.run([aws, "--version"], capture_output=True, text=True)
        .stdout.strip(),
        "summary": summary,
        "agent_runs": agent_runs,
        "seed_runs": seed_runs,
        "import_seconds": imports,
        "steps": steps,
        "latency": {"no_sync": idle, "sync_every_1s": syncing, "pace_seconds": args.pace},
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2))
    print(f"\nresults: {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
