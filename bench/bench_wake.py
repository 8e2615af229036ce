"""Wake handler latency, AWS calls per wake, and cold import time of the control plane.

Run: ``python bench/bench_wake.py`` (starts its own moto server; prints a table and writes
``bench/results/bench_wake.json``). Targets: asleep wake <= 3 AWS calls, awake <= 1, cold
import of ``app.py`` (building the control plane) <= 1.3x a bare Chalice app creating the same
boto3 clients. The control plane makes each client on its first call, so building it makes
none; the second ratio makes all three after building, as an invocation that calls each would.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.moto_server import MotoServer  # noqa: E402

REGION = "us-east-1"


class CallCounter:
    """Counts AWS API calls with a botocore event hook on each client."""

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()

    def attach(self, client: Any) -> Any:
        client.meta.events.register("before-call.*.*", self._count)
        return client

    def _count(self, model: Any, **_: Any) -> None:
        self.calls[f"{model.service_model.service_name}:{model.name}"] += 1

    def take(self) -> Counter[str]:
        taken, self.calls = self.calls, Counter()
        return taken


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]


def setup(server: MotoServer) -> dict[str, str]:
    from tests.conftest import BUCKET, TABLE, create_bucket, create_lease_table
    from tests.controlplane.conftest import CLUSTER, CONTAINER, FAMILY, create_cluster, pin_tasks

    create_bucket()
    create_lease_table()
    pin_tasks(server)
    network = create_cluster()
    return {
        "DB_S3_BUCKET": BUCKET,
        "WAKEFUL_LEASE_TABLE": TABLE,
        "WAKEFUL_CLUSTER": CLUSTER,
        "WAKEFUL_TASK_DEFINITION": FAMILY,
        "WAKEFUL_CONTAINER_NAME": CONTAINER,
        "WAKEFUL_SUBNETS": network["subnet"],
        "WAKEFUL_SECURITY_GROUPS": network["security_group"],
    }


def wake_figures(env: dict[str, str], rounds: int) -> dict[str, Any]:
    from chalicelib import aws
    from chalicelib.control import ControlPlane
    from chalicelib.lease import LeaseTable
    from chalicelib.ledger import TaskLedger
    from chalicelib.settings import ControlPlaneSettings
    from chalicelib.store import DatabaseStore
    from chalicelib.tasks import EcsTaskLauncher

    class Quiet:
        def __getattr__(self, _: str) -> Any:
            return lambda *a, **k: None

    settings = ControlPlaneSettings.from_env({**os.environ, **env})
    location = settings.location
    counter = CallCounter()
    ddb = counter.attach(aws.client("dynamodb", REGION))
    plane = ControlPlane(
        settings=settings,
        lease=LeaseTable(location.lease_table, location.lease_name, client=ddb),
        store=DatabaseStore(location.bucket, location.key,
                            client=counter.attach(aws.client("s3", REGION))),
        launcher=EcsTaskLauncher(settings, client=counter.attach(aws.client("ecs", REGION))),
        ledger=TaskLedger(location.lease_table, location.lease_name, client=ddb),
        log=Quiet(),
        metrics=Quiet(),
    )
    plane.wake()  # the first ever wake also creates the lease item; not what we measure
    plane.lease.force_release(plane.lease.read().holder)
    counter.take()

    asleep_ms, asleep_calls = [], []
    for _ in range(rounds):
        started = time.perf_counter()
        reply = plane.wake()
        asleep_ms.append((time.perf_counter() - started) * 1000)
        assert reply.status == 202, reply
        asleep_calls.append(sum(counter.take().values()))
        plane.lease.force_release(reply.body["reservation_id"])
        counter.take()

    holder = "arn:aws:ecs:us-east-1:123456789012:task/bench/holder"
    taken = plane.lease.acquire(holder, ttl=3600)
    plane.lease.record_task(holder, None, "http://10.0.0.9:8000")
    # Running means the app answers: its agent marks the lease ready once it does.
    plane.lease.mark_ready(holder, taken.token)
    counter.take()
    awake_ms, awake_calls = [], []
    for _ in range(rounds):
        started = time.perf_counter()
        reply = plane.wake()
        awake_ms.append((time.perf_counter() - started) * 1000)
        assert reply.status == 200, reply
        awake_calls.append(sum(counter.take().values()))

    plane.lease.force_release(holder)
    for task in plane.launcher.running():  # asleep: the tasks the wakes started are gone
        plane.launcher.stop(task.task_arn, "bench: asleep")
    counter.take()
    # The first run after a stop sweeps the family's tasks until nothing is left alive and
    # unaccounted; from then on the asleep path is one read.
    plane.reconcile()
    reconcile_settling = counter.take()
    plane.reconcile()
    reconcile_asleep = counter.take()
    return {
        "rounds": rounds,
        "asleep_p50_ms": statistics.median(asleep_ms),
        "asleep_p95_ms": percentile(asleep_ms, 0.95),
        "asleep_calls_per_wake": max(asleep_calls),
        "awake_p50_ms": statistics.median(awake_ms),
        "awake_p95_ms": percentile(awake_ms, 0.95),
        "awake_calls_per_wake": max(awake_calls),
        "reconcile_settling_calls": dict(reconcile_settling),
        "reconcile_asleep_calls": dict(reconcile_asleep),
    }


_BARE = (
    "import boto3\n"
    "from chalice import Chalice\n"
    "app = Chalice(app_name='bare')\n"
    "session = boto3.session.Session()\n"
    "clients = [session.client(name) for name in ('dynamodb', 's3', 'ecs')]\n"
)
_OURS = "import app\napp.control()\n"
# Then each client made (touching ``meta`` makes a lazy one): the bare app's work and ours.
_OURS_ALL = (
    "import app\nplane = app.control()\n"
    "for client in (plane.lease._client, plane.store._s3, plane.launcher._ecs):\n"
    "    client.meta\n"
)


def cold_import(env: dict[str, str], runs: int) -> dict[str, Any]:
    full_env = {**os.environ, **env, "AWS_REGION": REGION, "PYTHONPATH": str(ROOT)}

    def timed(code: str) -> float:
        started = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], check=True, env=full_env, cwd=ROOT)
        return (time.perf_counter() - started) * 1000

    timed(_BARE), timed(_OURS), timed(_OURS_ALL)  # warm the file cache
    # Alternate them so a change in machine load weighs on each alike.
    runs_of = [(timed(_BARE), timed(_OURS), timed(_OURS_ALL)) for _ in range(runs)]
    bare = statistics.median(r[0] for r in runs_of)
    ours = statistics.median(r[1] for r in runs_of)
    every = statistics.median(r[2] for r in runs_of)
    return {"bare_ms": bare, "app_ms": ours, "ratio": ours / bare,
            "app_all_clients_ms": every, "ratio_all_clients": every / bare}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=50)
    parser.add_argument("--import-runs", type=int, default=11)
    args = parser.parse_args()
    server = MotoServer().start()
    os.environ.update({
        "AWS_ENDPOINT_URL": server.url, "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench", "AWS_REGION": REGION, "AWS_DEFAULT_REGION": REGION,
    })
    try:
        env = setup(server)
        wake = wake_figures(env, args.rounds)
        cold = cold_import(env, args.import_runs)
    finally:
        server.stop()
    rows = [
        ("wake asleep p50 / p95 (ms)",
         f"{wake['asleep_p50_ms']:.1f} / {wake['asleep_p95_ms']:.1f}", ""),
        ("wake awake p50 / p95 (ms)",
         f"{wake['awake_p50_ms']:.1f} / {wake['awake_p95_ms']:.1f}", ""),
        ("AWS calls per wake, asleep", str(wake["asleep_calls_per_wake"]), "<= 3"),
        ("AWS calls per wake, awake", str(wake["awake_calls_per_wake"]), "<= 1"),
        ("reconciler calls, first run after a stop",
         json.dumps(wake["reconcile_settling_calls"]), ""),
        ("reconciler calls, asleep", json.dumps(wake["reconcile_asleep_calls"]), "1 read"),
        ("cold import: bare / app (ms)", f"{cold['bare_ms']:.0f} / {cold['app_ms']:.0f}", ""),
        ("cold import ratio", f"{cold['ratio']:.2f}x", "<= 1.3x"),
        ("cold import, every client made (ms)", f"{cold['app_all_clients_ms']:.0f}", ""),
        ("cold import ratio, every client made", f"{cold['ratio_all_clients']:.2f}x",
         "<= 1.3x"),
    ]
    width = max(len(r[0]) for r in rows)
    print(f"{'measure'.ljust(width)}  {'value':<28} target")
    for name, value, target in rows:
        print(f"{name.ljust(width)}  {value:<28} {target}")
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "bench_wake.json").write_text(json.dumps({"wake": wake, "cold_import": cold},
                                                    indent=2) + "\n")
    print(f"written {out / 'bench_wake.json'}")


if __name__ == "__main__":
    main()
