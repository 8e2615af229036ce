"""A moto server on loopback, started as a real process, reached only over HTTP.

The local stack runs on it; so do the tests."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# One request at a time: DynamoDB applies conditional writes to one item one after another,
# moto's threaded server does not (two racing conditional updates can both pass).
_SERIAL = (
    "import sys\n"
    "from werkzeug.serving import run_simple\n"
    "from moto.moto_server.threaded_moto_server import DomainDispatcherApplication\n"
    "from moto.server import create_backend_app\n"
    "run_simple('127.0.0.1', int(sys.argv[1]), DomainDispatcherApplication(create_backend_app),"
    " threaded=False, use_reloader=False)\n"
)


class MotoServer:
    def __init__(self, port: int | None = None, serial: bool = False) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.serial = serial
        self._process: subprocess.Popen[bytes] | None = None

    def command(self) -> list[str]:
        if self.serial:
            return [sys.executable, "-c", _SERIAL, str(self.port)]
        return [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)]

    def start(self, timeout: float = 30.0) -> MotoServer:
        self._process = subprocess.Popen(
            self.command(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env={**os.environ, "MOTO_CALL_RESET_API": "true"},
            # Its own session: a terminal's Ctrl-C reaches the whole foreground process group,
            # and AWS must stay up while the backend uploads on the way down.
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"moto server exited with {self._process.returncode}")
            try:
                urllib.request.urlopen(f"{self.url}/moto-api/", timeout=1).close()
                return self
            except (urllib.error.URLError, ConnectionError, OSError):
                time.sleep(0.05)
        raise RuntimeError(f"moto server on {self.url} did not start in {timeout}s")

    def reset(self) -> None:
        request = urllib.request.Request(f"{self.url}/moto-api/reset", method="POST")
        urllib.request.urlopen(request, timeout=10).close()

    def stop(self) -> None:
        if self._process and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
