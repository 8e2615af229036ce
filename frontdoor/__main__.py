"""``python -m frontdoor [--host H] [--port P]``: the front door on loopback until SIGTERM.

It reads the Lambda's environment (the control plane's variables and ``WAKEFUL_FRONT_DOOR_*``)
and prints ``export WAKEFUL_FRONT_DOOR_URL=...`` once it listens. With ``--wake-url`` (or
``WAKEFUL_FRONT_DOOR_WAKE_URL``) it wakes through that control plane's ``POST /wake`` (key
from ``WAKEFUL_API_KEY``) instead of in-process: the local stack's tasks are processes of the
one control plane that started them, so a second launcher must not start any.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from typing import Any

from chalicelib.errors import ConfigError

EXIT_CONFIG = 2


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m frontdoor", description=__doc__.split("\n")[0])
    parser.add_argument("--host", default=os.environ.get("WAKEFUL_FRONT_DOOR_HOST", "127.0.0.1"))
    parser.add_argument("--port", type=int,
                        default=int(os.environ.get("WAKEFUL_FRONT_DOOR_PORT") or 0))
    parser.add_argument("--wake-url", default=os.environ.get("WAKEFUL_FRONT_DOOR_WAKE_URL"),
                        help="wake through this control plane API instead of in-process")
    args = parser.parse_args(argv)

    from frontdoor import handler
    from frontdoor.local import serve

    try:
        door = _build(handler, args.wake_url)
    except ConfigError as exc:
        print(f"frontdoor: configuration error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    server = serve(door.handle, args.host, args.port)
    print(f"export WAKEFUL_FRONT_DOOR_URL={server.url}", flush=True)
    stopped = threading.Event()

    def stop(signum: int, frame: Any) -> None:
        stopped.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    stopped.wait()
    server.stop()
    return 0


def _build(handler: Any, wake_url: str | None) -> Any:
    if not wake_url:
        return handler.front_door()
    from frontdoor.waker import ApiWaker

    return handler.build(handler.log(), wake=ApiWaker(wake_url, os.environ.get("WAKEFUL_API_KEY")))


if __name__ == "__main__":
    sys.exit(main())
