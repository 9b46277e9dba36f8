"""Progress: of uploads, downloads and wheel fetches (bytes, rate, ETA), and of long waits (``Watch``: a kernel
run's state and figures).

On a terminal a rich progress bar (on stderr); otherwise plain lines: a transfer's every
``Transfers.PLAIN_EVERY`` seconds and one at the end, so logs of long transfers show movement (transfers smaller
than ``Transfers.MIN_BYTES`` that end quickly print nothing); a wait's at each change of state and at least every
``Heartbeat.EVERY`` seconds.
"""

from __future__ import annotations

import contextlib
import sys
import threading
import time
from pathlib import Path
from typing import Callable, Iterator, Optional


class Transfers:
    """Class constants (tests lower them)."""

    PLAIN_EVERY = 10.0  # seconds between plain progress lines
    MIN_BYTES = 4 << 20  # smaller transfers show no bar


def _mb(n: float) -> str:
    return f"{n / 1e6:,.1f} MB"


class Transfer:
    """One transfer's counter; ``advance`` is called with each chunk's size."""

    def __init__(self, label: str, total: Optional[int], stream=None, clock=time.monotonic):
        self.label, self.total, self.done = label, total, 0
        self.stream = stream or sys.stderr
        self.clock = clock
        self.start = self.last_line = clock()
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self._bar = None
        self._lock = threading.Lock()
        if self.tty and (total is None or total >= Transfers.MIN_BYTES):
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                DownloadColumn,
                Progress,
                TextColumn,
                TimeRemainingColumn,
                TransferSpeedColumn,
            )

            self._bar = Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
                                 TransferSpeedColumn(), TimeRemainingColumn(),
                                 console=Console(file=self.stream), transient=False)
            self._task = self._bar.add_task(label, total=total)
            self._bar.start()

    def advance(self, n: int) -> None:
        with self._lock:
            self.done += n
            if self._bar is not None:
                self._bar.update(self._task, advance=n)
            elif not self.tty and self.clock() - self.last_line >= Transfers.PLAIN_EVERY:
                self._line()

    def _line(self, end: str = "") -> None:
        elapsed = max(self.clock() - self.start, 1e-9)
        rate = self.done / elapsed
        text = f"{self.label}: {_mb(self.done)}"
        if self.total:
            text += f" of {_mb(self.total)} ({100 * self.done / self.total:.0f}%)"
        text += f", {_mb(rate)}/s"
        if self.total and rate > 0 and self.done < self.total:
            text += f", about {(self.total - self.done) / rate:.0f}s left"
        print(text + end, file=self.stream, flush=True)
        self.last_line = self.clock()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
        elif not self.tty and (self.done >= Transfers.MIN_BYTES or self.clock() - self.start >= Transfers.PLAIN_EVERY):
            self._line(" (done)")


@contextlib.contextmanager
def transfer(label: str, total: Optional[int] = None) -> Iterator[Transfer]:
    bar = Transfer(label, total)
    try:
        yield bar
    finally:
        bar.close()


class CountingReader:
    """A file-like request body that reports what has been read (sent) to a Transfer."""

    def __init__(self, body, bar: Transfer):
        self._body, self._bar = body, bar

    def read(self, *args):
        chunk = self._body.read(*args)
        if chunk:
            self._bar.advance(len(chunk))
        return chunk

    def __getattr__(self, name):
        return getattr(self._body, name)


@contextlib.contextmanager
def watch_folder(folder: Path, label: str, interval: float = 0.5) -> Iterator[Transfer]:
    """Report the growth of ``folder`` (e.g. pip downloading wheels into it) while the block runs."""
    folder = Path(folder)

    def size() -> int:
        return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) if folder.is_dir() else 0

    with transfer(label) as bar:
        def grow() -> None:
            grown = size() - bar.done
            if grown > 0:
                bar.advance(grown)

        try:
            with every(interval, grow):
                yield bar
        finally:
            grow()


@contextlib.contextmanager
def every(interval: float, call: Callable[[], None]) -> Iterator[None]:
    """A thread calls ``call`` every ``interval`` seconds while the block runs."""
    stop = threading.Event()

    def loop() -> None:
        while not stop.wait(interval):
            call()

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


# --------------------------------------------------------------------------- long waits

class Heartbeat:
    """Class constants (tests lower them)."""

    EVERY = 60.0  # seconds: without a terminal, a wait prints a line at least this often


def clock_text(seconds: float) -> str:
    """``725`` -> ``12m05s`` (a wait's elapsed time)."""
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes}m{secs:02d}s"


class Watch:
    """A long wait's display (a kernel run): its state, the time waited and the run's figures (``done`` of
    ``total``, and words such as ``train step 120/1000, loss 0.6931, ETA 1h12m05s``).

    On a terminal a rich live line on ``stream`` (stderr) with a bar of done/total; otherwise a plain line at
    each change of state and a heartbeat with the newest figures at least every ``Heartbeat.EVERY`` seconds:
    the wait sleeps through :meth:`sleep`, which wakes up for each beat. ``figures`` and ``note`` may be
    called from another thread (the log reader)."""

    def __init__(self, label: str, *, stream=None, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep):
        self.label, self.stream, self.clock, self._sleep = label, stream or sys.stderr, clock, sleep
        self.start = self.last_line = clock()
        self.status, self.done, self.total, self.words = "", 0, None, ""
        self._printed = ("", "")  # (status, words) of the last plain line
        self._lock = threading.Lock()
        self._bar = None
        if getattr(self.stream, "isatty", lambda: False)():
            from rich.console import Console
            from rich.progress import BarColumn, Progress, TextColumn

            self._bar = Progress(TextColumn("{task.description}"), TextColumn("{task.fields[status]:<9}"),
                                 TextColumn("{task.fields[waited]}"), BarColumn(),
                                 TextColumn("{task.fields[words]}"), console=Console(file=self.stream),
                                 transient=False)
            self._task = self._bar.add_task(label, total=None, status="", waited="", words="")
            self._bar.start()

    def line(self) -> str:
        """The plain line: ``train v3: RUNNING 12m05s, train step 120/1000, loss 0.6931, ETA 1h12m05s``."""
        text = f"{self.label}: {self.status or 'waiting'} {clock_text(self.clock() - self.start)}"
        return text + (f", {self.words}" if self.words else "")

    def state(self, status, elapsed: float = 0.0) -> None:
        """One poll's state (an ``on_poll(status, elapsed)``: a status object's ``.status``, or a string)."""
        with self._lock:
            self.status = getattr(status, "status", str(status))
            self._show(self.status != self._printed[0])

    def figures(self, done: int, total: int, words: str) -> None:
        with self._lock:
            self.done, self.total, self.words = done, total, words
            self._show(False)

    def note(self, message: str) -> None:
        """A line of its own (e.g. the log stream was lost), above a live display."""
        with self._lock:
            if self._bar is not None:
                self._bar.console.print(f"{self.label}: {message}", markup=False, highlight=False)
            else:
                print(f"{self.label}: {message}", file=self.stream, flush=True)

    def beat(self) -> None:
        """The heartbeat: a plain line when ``Heartbeat.EVERY`` seconds passed since the last one."""
        with self._lock:
            self._show(False)

    def sleep(self, seconds: float) -> None:
        """Sleep ``seconds``, waking for each heartbeat due meanwhile (the wait's ``sleep``)."""
        end = self.clock() + seconds
        while (left := end - self.clock()) > 0:
            due = 1.0 if self._bar is not None else self.last_line + Heartbeat.EVERY - self.clock()
            self._sleep(min(left, max(due, 0.0)))
            self.beat()

    @contextlib.contextmanager
    def beating(self, seconds: float = 1.0) -> Iterator["Watch"]:
        """A thread calls :meth:`beat` every ``seconds`` while the block runs: the heartbeat of a wait that
        does not sleep through :meth:`sleep` (a subprocess read line by line)."""
        with every(seconds, self.beat):
            yield self

    def close(self) -> None:
        """End the display; without a terminal the last figures are printed when no line showed them yet."""
        with self._lock:
            if self._bar is not None:
                self._show(False)
                self._bar.stop()
            elif self._printed != (self.status, self.words):
                self._print()

    def _show(self, changed: bool) -> None:
        if self._bar is not None:
            self._bar.update(self._task, total=self.total, completed=self.done, status=self.status,
                             waited=clock_text(self.clock() - self.start), words=self.words)
        elif changed or self.clock() - self.last_line >= Heartbeat.EVERY:
            self._print()

    def _print(self) -> None:
        print(self.line(), file=self.stream, flush=True)
        self.last_line, self._printed = self.clock(), (self.status, self.words)
