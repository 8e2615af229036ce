"""``python -m wakeful_local demo | up``: the local stack's two commands."""

from __future__ import annotations

import functools
import sys
from pathlib import Path

from wakeful_cli import profile
from wakeful_local import demo
from wakeful_local.resources import Timings
from wakeful_local.signals import StopSignals
from wakeful_local.stack import API_KEY, REGION, LocalStack, StackCancelled, StackError

USAGE = """usage: python -m wakeful_local demo [--resources=python|terraform|auto] [--app=COMMAND]
       python -m wakeful_local up   [--resources=python|terraform|auto] [--app=COMMAND]
                                    [--workdir=PATH]

demo  runs the whole wake → run → sync → stop → wake story and exits 0 when every step held
up    keeps the stack up for exploring with curl and the CLI until Ctrl-C; --app runs your
      own app command in each task (default: the notes example), e.g.
      --app='sh examples/django/start.sh'

--resources=python (the default) creates the resources from Python in seconds; terraform
applies infra/ to the moto server (about 70 s; needs the Terraform CLI and a provider mirror);
auto picks terraform when it can. Work folders are removed after a clean run and kept (their
path printed) after a failure or when --workdir names one."""


def up(args: list[str]) -> int:
    options = _options(args)
    signals = StopSignals()
    stack = LocalStack(
        workdir=Path(options["workdir"]) if "workdir" in options else None,
        provisioner=options.get("resources", "python"),
        timings=Timings(idle_timeout=300, lease_ttl=15.0),
        app_command=options.get("app") or None,
        say=functools.partial(print, flush=True),
        cancelled=signals.cancelled,
    )
    with signals:
        try:
            stack.start()
            signals.started()
        except (StackError, OSError) as exc:
            with signals.ignored():
                print(f"wakeful-local: {exc}; stopping what was started", file=sys.stderr)
                stack.stop()
            print(f"wakeful-local: logs kept in {stack.workdir}", file=sys.stderr)
            return 130 if isinstance(exc, StackCancelled) else 1
        print(_exports(stack), flush=True)
        signals.wait()
        with signals.ignored():
            print("stopping: the backend uploads and sleeps...", flush=True)
            stack.stop()
            problem = stack.last_task_problem()
    if problem:
        print(f"stopped, but {problem}; logs kept in {stack.workdir}", flush=True)
        return 1
    if "workdir" not in options:
        stack.remove()
    print("stopped: the backend uploaded its database and slept", flush=True)
    return 0


def write_profile(stack: LocalStack) -> Path:
    """``wakeful.toml`` in the work folder: the CLI's profile for this stack (no exports)."""
    names = stack.names
    assert names is not None
    path = Path(stack.workdir) / "wakeful.toml"
    path.write_text(profile.render("local", {
        "bucket": names.bucket, "key": names.key, "lease_table": names.table,
        "lease_name": names.lease_name, "cluster": names.cluster, "region": REGION,
        "endpoint_url": stack.moto.url if stack.moto else None,
        "aws_access_key_id": "local", "aws_secret_access_key": "local",
        "api_url": stack.api_url, "api_key": API_KEY,
    }))
    return path


def _exports(stack: LocalStack) -> str:
    names = stack.names
    assert names is not None
    profile_file = write_profile(stack)
    return f"""
The stack is up. In another shell, with its profile:

  export WAKEFUL_CONFIG={profile_file}
  curl {stack.front_door_url}/         # wakes the backend and is served once it is ready
  wakeful status && wakeful history

or with the environment:

  export AWS_ENDPOINT_URL={stack.moto.url if stack.moto else ''} AWS_ACCESS_KEY_ID=local \\
         AWS_SECRET_ACCESS_KEY=local AWS_DEFAULT_REGION=us-east-1
  export WAKEFUL_FRONT_DOOR_URL={stack.front_door_url}
  export WAKEFUL_API_URL={stack.api_url} WAKEFUL_API_KEY={API_KEY}
  export DB_S3_BUCKET={names.bucket} DB_S3_KEY={names.key} \\
         WAKEFUL_LEASE_TABLE={names.table} WAKEFUL_LEASE_NAME={names.lease_name} \\
         WAKEFUL_CLUSTER={names.cluster}

  curl $WAKEFUL_FRONT_DOOR_URL/         # wakes the backend and is served once it is ready
  wakeful status

Ctrl-C puts the backend to sleep (it uploads) and stops everything.
Work folder (logs, each task's disk): {stack.workdir}"""


def _options(args: list[str]) -> dict[str, str]:
    options: dict[str, str] = {}
    for arg in args:
        name, sep, value = arg.removeprefix("--").partition("=")
        if not arg.startswith("--") or not sep or name not in ("resources", "workdir", "app"):
            raise SystemExit(f"up: unknown option {arg!r}\n{USAGE}")
        options[name] = value
    return options


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
