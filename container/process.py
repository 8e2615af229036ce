"""The app as a supervised child: its own process group, signals forwarded, killed on timeout."""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

_PR_SET_PDEATHSIG = 1
# Loaded before any fork: dlopen in a forked child of a threaded parent can deadlock.
_LIBC = ctypes.CDLL(None, use_errno=True) if sys.platform.startswith("linux") else None

Spawner = Callable[..., "subprocess.Popen[bytes]"]


def _die_with_agent() -> None:
    """Runs in the child before exec: if the agent dies, the kernel kills the app.

    An app left running without its agent would write with no lease and no sync.
    """
    if _LIBC is not None:
        _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


class AppProcess:
    """One run of the user's app."""

    def __init__(
        self,
        argv: Sequence[str],
        env: Mapping[str, str] | None = None,
        spawner: Spawner = subprocess.Popen,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not argv:
            raise ValueError("no command to run")
        self.argv = list(argv)
        self._env = dict(env) if env is not None else None
        self._spawner = spawner
        self._clock = clock
        self._process: Any = None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def start(self) -> None:
        self._process = self._spawner(
            self.argv,
            env=self._env,
            start_new_session=True,
            preexec_fn=_die_with_agent,
        )

    def wait(self) -> int:
        return int(self._process.wait())

    def poll(self) -> int | None:
        return None if self._process is None else self._process.poll()

    def signal(self, signum: int) -> None:
        """Send ``signum`` to the app's whole process group (workers included)."""
        if self._process is None or self._process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self._process.pid, signum)

    def stop(self, grace: float) -> int:
        """SIGTERM the group, wait up to ``grace`` seconds, then SIGKILL it."""
        if self._process is None:
            return 0
        if self._process.poll() is None:
            self.signal(signal.SIGTERM)
            try:
                self._process.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                self.signal(signal.SIGKILL)
                self._process.wait()
        # Workers the app left behind in its group must not outlive it.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self._process.pid, signal.SIGKILL)
        return self.exit_code()

    def exit_code(self) -> int:
        """The shell's convention: 128 + N when killed by signal N."""
        code = self._process.returncode if self._process is not None else 0
        if code is None:
            return 0
        return 128 - code if code < 0 else int(code)
