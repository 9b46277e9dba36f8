"""Waiting for a kernel run with its figures in sight: the state polled (``hub.kernels.wait_kernel``) while a
thread follows the run's log stream and reads the training step, loss and ETA from the kernels' progress line
(``kagflow.classifier.progress_line``, its one parser); ``kagflow.progress.Watch`` shows them (a rich live line
on a terminal, otherwise a line per change of state and a heartbeat at least every minute).
"""

from __future__ import annotations

import threading
from typing import Optional

from kagflow.classifier.progress_line import LogReader
from kagflow.errors import KagflowError
from kagflow.progress import Watch


class LogWatch:
    """Class constants (tests lower them)."""

    FINAL_LINES = 30.0  # seconds given to the log stream, once the run ended, to deliver its last lines


def feed(watch: Watch, reader: LogReader):
    """A log writer (``follow_log``'s ``write``) that shows each new progress line's figures on ``watch``: the
    newest line's count (the bar), after the last figures of each earlier phase (training's last step and loss
    stay in sight while its validation rows are predicted)."""
    newest: dict = {}  # phase -> its newest progress, in the order the phases came

    def write(text: str) -> None:
        before = reader.latest
        latest = reader.feed(text)
        if latest is None or latest is before:
            return
        newest.pop(latest.phase, None)
        newest[latest.phase] = latest
        watch.figures(latest.done, latest.total, "; ".join(p.words() for p in newest.values()))
    return write


def _follow(gw, handle, version: int, watch: Watch, reader: LogReader) -> None:
    from kagflow.hub.kernels import follow_log

    try:
        follow_log(gw, handle, version, feed(watch, reader))
    except KagflowError as e:  # the wait goes on; its figures stop here, and the watch says why
        watch.note(f"no more progress figures: {e.message}")


def watch_kernel(gw, handle, version: int, *, timeout: float, label: str, watch: Optional[Watch] = None):
    """Wait for ``version`` of ``handle`` to end (``wait_kernel``), showing its state and its log's progress on
    ``watch`` (default: a Watch on stderr labelled ``label``); returns the final KernelStatus."""
    from kagflow.hub.kernels import wait_kernel

    watch = watch or Watch(label)
    reader = LogReader()
    follower = threading.Thread(target=_follow, args=(gw, handle, version, watch, reader), daemon=True,
                                name=f"log of {handle}/{version}")
    follower.start()
    try:
        status = wait_kernel(gw, handle, version, timeout=timeout, on_poll=watch.state, sleep=watch.sleep)
        follower.join(LogWatch.FINAL_LINES)  # the stream ends with the run: its last progress line is shown
        return status
    finally:
        watch.close()
