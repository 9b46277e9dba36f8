"""How long a local server has done nothing: no request in flight or answered, no job queued or running.

A background server (``kagflow.local.control.ensure_background_server``) stops by itself once idle for its
``idle_s``: :meth:`Idle.watch` decides that once, under the lock requests take, so a request arriving as the
server stops is refused (503, :meth:`Idle.begin` False) rather than answered by a server about to go. A kernel
running for hours keeps the server alive (``busy``: :meth:`kagflow.local.server.jobs.Jobs.busy`), and so does a
client that polls.
"""

from __future__ import annotations

import threading
import time
from typing import Callable

STOPPING = "The local Kaggle is stopping (it was idle); run the command again to start a fresh one"


class Idle:
    """The clock of a server's last activity; ``busy()``: True while a job is queued or running."""

    def __init__(self, busy: Callable[[], bool], clock: Callable[[], float] = time.monotonic):
        self._busy = busy
        self._clock = clock
        self._lock = threading.Lock()
        self._in_flight = 0
        self._last = clock()
        self._stopping = False

    def begin(self) -> bool:
        """A request starts (the clock restarts); False once the server is stopping: refuse it."""
        with self._lock:
            if self._stopping:
                return False
            self._in_flight += 1
            self._last = self._clock()
            return True

    def end(self) -> None:
        """A request :meth:`begin` let in has ended (the clock restarts)."""
        with self._lock:
            self._in_flight -= 1
            self._last = self._clock()

    def expire(self, idle_s: float) -> bool:
        """True, once and for good (every later request refused), when nothing happened for ``idle_s`` seconds."""
        with self._lock:
            if self._stopping:
                return True
            now = self._clock()
            if self._in_flight or self._busy():
                self._last = now
                return False
            self._stopping = now - self._last >= idle_s
            return self._stopping

    def watch(self, idle_s: float, then: Callable[[], None]) -> threading.Thread:
        """Call ``then()`` (in a daemon thread) once idle for ``idle_s`` seconds (checked each tenth of it, 10 s
        at most apart)."""
        tick = min(max(idle_s / 10, 0.05), 10.0)

        def loop() -> None:
            while not self.expire(idle_s):
                time.sleep(tick)
            then()

        thread = threading.Thread(target=loop, name="kagflow-local-idle", daemon=True)
        thread.start()
        return thread
