"""Progress of uploads, downloads and wheel fetches: bytes, rate and ETA.

On a terminal a rich progress bar (on stderr); otherwise a plain line every
``Transfers.PLAIN_EVERY`` seconds and one at the end, so logs of long transfers show movement.
Transfers smaller than ``Transfers.MIN_BYTES`` that end quickly print nothing.
"""

from __future__ import annotations

import contextlib
import sys
import threading
import time
from pathlib import Path
from typing import Iterator, Optional


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
    stop = threading.Event()

    def size() -> int:
        return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) if folder.is_dir() else 0

    with transfer(label) as bar:
        def watch() -> None:
            while not stop.wait(interval):
                grown = size() - bar.done
                if grown > 0:
                    bar.advance(grown)

        thread = threading.Thread(target=watch, daemon=True)
        thread.start()
        try:
            yield bar
        finally:
            stop.set()
            thread.join()
            grown = size() - bar.done
            if grown > 0:
                bar.advance(grown)
