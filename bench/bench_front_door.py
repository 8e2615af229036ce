"""The front door on the local stack: what it adds per request, and how long a first request
to a sleeping backend waits for its answer.

Run: ``python bench/bench_front_door.py [--requests 500] [--wakes 3]`` (starts its own local
stack; prints a table and writes ``bench/results/front_door.json``). Not part of the test suite.

- added latency: the same GET, alternately straight to the app's endpoint and through the front
  door, ``--requests`` times each; p50/p99 of each and of the difference.
- first request while asleep: a GET of the front door's URL with the backend asleep, until its
  200 (the wake, the task's start, the agent's lease and download, the app's start), ``--wakes``
  times, putting the backend to sleep between.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from wakeful_local.resources import Timings  # noqa: E402
from wakeful_local.stack import LocalStack  # noqa: E402


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))]


def timed_get(url: str) -> tuple[float, int]:
    started = time.perf_counter()
    with urllib.request.urlopen(url, timeout=60) as response:
        response.read()
        status = response.status
    return time.perf_counter() - started, status


def wait_asleep(stack: LocalStack) -> None:
    stack.wait_for(
        lambda: stack.api("GET", "/status").body.get("state") == "asleep"
        and stack.agent_pid() is None,
        120, "the backend to sleep",
    )


def first_requests(stack: LocalStack, wakes: int) -> list[float]:
    times = []
    for _ in range(wakes):
        wait_asleep(stack)
        elapsed, status = timed_get(f"{stack.front_door_url}/health")
        if status != 200:
            raise SystemExit(f"first request answered {status}")
        times.append(elapsed)
        stack.api("POST", "/sleep")
    wait_asleep(stack)
    return times


def added_latency(stack: LocalStack, requests: int) -> dict[str, list[float]]:
    timed_get(f"{stack.front_door_url}/health")  # wake
    endpoint = stack.api("POST", "/wake").body["endpoint"]
    direct, door = [], []
    for _ in range(requests):
        direct.append(timed_get(f"{endpoint}/health")[0])
        door.append(timed_get(f"{stack.front_door_url}/health")[0])
    return {"direct": direct, "door": door}


def summary(values: list[float]) -> dict[str, float]:
    return {
        "p50_ms": round(percentile(values, 0.5) * 1000, 2),
        "p99_ms": round(percentile(values, 0.99) * 1000, 2),
        "mean_ms": round(statistics.fmean(values) * 1000, 2),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--wakes", type=int, default=3)
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "front_door.json"))
    args = parser.parse_args(argv)
    stack = LocalStack(
        provisioner="python", timings=Timings(idle_timeout=600), say=lambda _line: None
    )
    try:
        stack.start()
        latency = added_latency(stack, args.requests)
        stack.api("POST", "/sleep")
        wakes = first_requests(stack, args.wakes)
    finally:
        stack.stop()
        stack.remove()
    direct, door = summary(latency["direct"]), summary(latency["door"])
    added = [b - a for a, b in zip(latency["direct"], latency["door"], strict=True)]
    result: dict[str, Any] = {
        "requests": args.requests,
        "direct": direct,
        "front_door": door,
        "added": summary(added),
        "ratio_p50": round(door["p50_ms"] / direct["p50_ms"], 2),
        "first_request_while_asleep_s": [round(t, 2) for t in wakes],
        "first_request_median_s": round(statistics.median(wakes), 2),
    }
    rows = [
        ("GET straight to the app", f"{direct['p50_ms']:.2f}", f"{direct['p99_ms']:.2f}"),
        ("GET through the front door", f"{door['p50_ms']:.2f}", f"{door['p99_ms']:.2f}"),
        ("added by the front door", f"{result['added']['p50_ms']:.2f}",
         f"{result['added']['p99_ms']:.2f}"),
    ]
    print(f"{'local stack, ' + str(args.requests) + ' requests each':<34} {'p50 ms':>9} "
          f"{'p99 ms':>9}")
    for name, p50, p99 in rows:
        print(f"{name:<34} {p50:>9} {p99:>9}")
    print(f"first request while asleep → 200: median {result['first_request_median_s']} s "
          f"(each: {', '.join(f'{t:.2f}' for t in wakes)} s)")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(f"written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
