"""A wake-up inbox for the agent's main loop, safe to post to from threads and signal handlers.

Signal handlers must not take locks the interrupted code may hold, so posting is a lock-free
``deque.append`` plus one byte on a self-pipe that the loop waits on. Other threads also take a
lock that only ``close`` holds, so none writes to a descriptor after it was closed.
"""

from __future__ import annotations

import contextlib
import os
import select
import threading
from collections import deque
from dataclasses import dataclass


@dataclass(frozen=True)
class Message:
    kind: str
    detail: str = ""


class Inbox:
    def __init__(self) -> None:
        self._messages: deque[Message] = deque()
        self._read, self._write = os.pipe()
        os.set_blocking(self._read, False)
        os.set_blocking(self._write, False)
        # Guards the pipe's descriptors against close(): a thread posting late (a watchdog
        # that fires as the agent exits) must not write to a number the process reused.
        # Never taken by a signal handler that interrupted a holder: handlers run on the main
        # thread, and only close() takes it there.
        self._closing = threading.Lock()
        self._closed = False

    def post(self, kind: str, detail: str = "") -> None:
        self._messages.append(Message(kind, detail))
        if threading.current_thread() is threading.main_thread():
            self._wake()  # a signal handler, maybe: must not wait on a lock
            return
        with self._closing:
            self._wake()

    def _wake(self) -> None:
        if self._closed:
            return
        # A full pipe already guarantees a wake-up.
        with contextlib.suppress(BlockingIOError):
            os.write(self._write, b"\x00")

    def wait(self, timeout: float | None) -> list[Message]:
        """Messages posted so far, waiting up to ``timeout`` seconds for the first one."""
        if not self._messages:
            with contextlib.suppress(InterruptedError):
                select.select([self._read], [], [], None if timeout is None else max(0.0, timeout))
        with contextlib.suppress(BlockingIOError):
            while os.read(self._read, 4096):
                pass
        drained = []
        while self._messages:
            drained.append(self._messages.popleft())
        return drained

    def close(self) -> None:
        with self._closing:
            self._closed = True
            for fd in (self._read, self._write):
                with contextlib.suppress(OSError):
                    os.close(fd)
