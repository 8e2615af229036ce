"""``python -m wakeful_local demo | up``: the local stack's two commands."""

from __future__ import annotations

import signal
import sys

from wakeful_local import demo
from wakeful_local.resources import Timings
from wakeful_local.stack import API_KEY, LocalStack, StackError

USAGE = """usage: python -m wakeful_local demo [--resources=auto|terraform|python]
       python -m wakeful_local up   [--resources=auto|terraform|python]

demo  runs the whole wake → run → sync → stop → wake story and exits 0 when every step held
up    keeps the stack up for exploring with curl and the CLI until Ctrl-C"""


def up(args: list[str]) -> int:
    provisioner = next(
        (a.split("=", 1)[1] for a in args if a.startswith("--resources=")), "auto"
    )
    stack = LocalStack(provisioner=provisioner, timings=Timings(idle_timeout=300))
    try:
        stack.start()
    except (StackError, OSError) as exc:
        print(f"wakeful-local: {exc}", file=sys.stderr)
        stack.stop()
        return 1
    names = stack.names
    assert names is not None
    print(f"""
The stack is up. In another shell:

  export AWS_ENDPOINT_URL={stack.moto.url if stack.moto else ''} AWS_ACCESS_KEY_ID=local \\
         AWS_SECRET_ACCESS_KEY=local AWS_DEFAULT_REGION=us-east-1
  export WAKEFUL_API_URL={stack.api_url} WAKEFUL_API_KEY={API_KEY}
  export DB_S3_BUCKET={names.bucket} DB_S3_KEY={names.key} \\
         WAKEFUL_LEASE_TABLE={names.table} WAKEFUL_LEASE_NAME={names.lease_name} \\
         WAKEFUL_CLUSTER={names.cluster}

  curl -X POST -H 'x-api-key: {API_KEY}' $WAKEFUL_API_URL/wake
  wakeful wake --wait && wakeful status

Ctrl-C puts the backend to sleep (it uploads) and stops everything.""", flush=True)
    stopping = False

    def interrupt(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, interrupt)
    signal.signal(signal.SIGTERM, interrupt)
    while not stopping:
        signal.pause()
    print("stopping: the backend uploads and sleeps...", flush=True)
    stack.stop()
    print("stopped", flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] not in ("demo", "up"):
        print(USAGE, file=sys.stderr)
        return 2
    if args[0] == "demo":
        return demo.main(args[1:])
    return up(args[1:])


if __name__ == "__main__":
    sys.exit(main())
