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

from container.state import process_start

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


class ProcessGroup:
    """The app when the user's entrypoint keeps it (``startup``): the entrypoint's process group.

    A script without job control starts its commands (``app &``) in its own process group, so
    the group that ran ``startup`` is the writer the agent must stop when it loses the lease.
    Members are found in /proc; a group whose leader was replaced by a newer process of the
    same pid is another group, and is left alone.
    """

    def __init__(self, pgid: int) -> None:
        if pgid == os.getpgrp():
            raise ValueError(f"process group {pgid} is the agent's own")
        self.pgid = pgid
        self._leader_start = process_start(pgid)

    @property
    def pid(self) -> int:
        return self.pgid

    def members(self) -> list[int]:
        if self._leader_start is not None and process_start(self.pgid) not in (
            None, self._leader_start,
        ):
            return []  # the pid names a newer process: our group is gone
        me = os.getpid()
        return [pid for pid, pgrp, status in _processes() if pgrp == self.pgid
                and status != "Z" and pid != me]

    def poll(self) -> int | None:
        return None if self.members() else 0

    def signal(self, signum: int) -> None:
        if self.members():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.pgid, signum)

    def stop(self, grace: float, clock: Callable[[], float] = time.monotonic) -> int:
        """SIGTERM the group, wait up to ``grace`` seconds for it to empty, then SIGKILL it."""
        self.signal(signal.SIGTERM)
        if not _gone_within(self.members, grace, clock):
            self.signal(signal.SIGKILL)
            _gone_within(self.members, KILL_WAIT, clock)
        return 0


# How long a SIGKILLed process may take to disappear from /proc before it counts as stuck.
KILL_WAIT = 2.0


def open_elsewhere(paths: Sequence[str]) -> list[int]:
    """Pids of other processes that have any of ``paths`` open (a database and its sidecars).

    A file must never be moved from under an open connection: its writer would go on writing
    to the moved file, and SQLite's locking relies on the -shm staying where it is.
    """
    wanted = {os.path.realpath(path) for path in paths}
    me = os.getpid()
    holders = []
    for pid, _pgrp, _status in _processes():
        if pid == me:
            continue
        folder = f"/proc/{pid}/fd"
        try:
            descriptors = os.listdir(folder)
        except OSError:
            continue
        for fd in descriptors:
            try:
                target = os.readlink(f"{folder}/{fd}")
            except OSError:
                continue
            if target in wanted:
                holders.append(pid)
                break
    return holders


def _processes() -> list[tuple[int, int, str]]:
    """``(pid, process group, state)`` of every process visible in /proc."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="ascii", errors="replace") as handle:
                fields = handle.read().rsplit(")", 1)[-1].split()
        except OSError:
            continue
        found.append((int(entry), int(fields[2]), fields[0]))
    return found


def _gone_within(members: Callable[[], list[int]], seconds: float,
                 clock: Callable[[], float]) -> bool:
    deadline = clock() + seconds
    while members():
        if clock() >= deadline:
            return False
        time.sleep(0.02)
    return True
