"""The one progress line the kernels print, and its one parser.

Training prints a line per logged step (and one per evaluation), inference a line at most every
``RowCounter.EVERY`` seconds and at the end; kagflow reads the newest one from the log (``kernel status
--wait``, ``kagflow flow``, the local Kaggle's kernel page). The line is plain words, readable in any log
viewer (Kaggle's own included), and parsed back by :func:`parse_line`::

    kagflow-progress train step=120/1000 loss=0.6931 lr=2.00e-04 eta=1h12m05s
    kagflow-progress train step=200/1000 val_loss=0.7012 eta=1h04m10s
    kagflow-progress infer rows=1200/25000 eta=12m03s

After the phase come ``key=value`` fields: the count (``step`` for training, ``rows`` otherwise) as
done/total, then any of ``loss``, ``lr``, ``val_loss`` and ``eta`` (a duration). Keys this version does not
know are skipped, so a newer kernel's line still parses.

Stdlib only: kagflow imports the parser without the ML stack.
"""

from __future__ import annotations

import contextlib
import os
import re
import threading
import time
from dataclasses import dataclass, replace
from typing import Callable, Iterator, Optional

PREFIX = "kagflow-progress"
COUNTS = {"train": "step"}  # the count's key per phase; every other phase counts rows
ROWS = "rows"
_SHOWN = (("loss", "loss", "{:.4f}"), ("lr", "lr", "{:.2e}"), ("val_loss", "val loss", "{:.4f}"))  # key, word, format
_FLOATS = tuple(key for key, _, _ in _SHOWN)
_LINE = re.compile(rf"{PREFIX} ([a-z_]+)((?: [a-z_]+=\S+)+)")
_DURATION = re.compile(r"(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?")


@dataclass(frozen=True)
class Progress:
    """One progress line: ``done`` of ``total`` (steps or rows) in ``phase``, with what it knew then."""

    phase: str
    done: int
    total: int
    loss: Optional[float] = None
    lr: Optional[float] = None
    val_loss: Optional[float] = None
    eta_s: Optional[float] = None

    @property
    def unit(self) -> str:
        return COUNTS.get(self.phase, ROWS)

    def after(self, earlier: Optional["Progress"]) -> "Progress":
        """This line with the figures it does not carry taken from ``earlier`` of the same phase (a validation
        line keeps the last training loss, a training line the last validation loss)."""
        if earlier is None or earlier.phase != self.phase:
            return self
        return replace(self, loss=_first(self.loss, earlier.loss), lr=_first(self.lr, earlier.lr),
                       val_loss=_first(self.val_loss, earlier.val_loss))

    def words(self) -> str:
        """The figures for people: ``train step 120/1000, loss 0.6931, lr 2.00e-04, ETA 1h12m05s``."""
        return ", ".join([f"{self.phase} {self.unit} {self.done}/{self.total}",
                          *(f"{word} {text}" for _, word, text in _figures(self))])


def _figures(p: Progress) -> list[tuple[str, str, str]]:
    """(line key, word, text) of each figure ``p`` carries, in the line's order."""
    found = [(key, word, form.format(getattr(p, key))) for key, word, form in _SHOWN if getattr(p, key) is not None]
    return found + ([("eta", "ETA", duration(p.eta_s))] if p.eta_s is not None else [])


def _first(a, b):
    return a if a is not None else b


def duration(seconds: float) -> str:
    """``4325`` -> ``1h12m05s``, ``95`` -> ``1m35s``, ``7`` -> ``7s`` (what ``eta=`` holds)."""
    s = max(0, int(round(seconds)))
    h, rest = divmod(s, 3600)
    m, s = divmod(rest, 60)
    if h:
        return f"{h}h{m:02d}m{s:02d}s"
    return f"{m}m{s:02d}s" if m else f"{s}s"


def parse_duration(text: str) -> Optional[float]:
    match = _DURATION.fullmatch(text)
    if not text or not match:
        return None
    h, m, s = (int(g or 0) for g in match.groups())
    return float(h * 3600 + m * 60 + s)


def format_line(p: Progress) -> str:
    """The line for ``p`` (see the module's docstring)."""
    fields = [f"{p.unit}={p.done}/{p.total}", *(f"{key}={text}" for key, _, text in _figures(p))]
    return f"{PREFIX} {p.phase} " + " ".join(fields)


def parse_line(line: str) -> Optional[Progress]:
    """The Progress of one progress line (surrounding whitespace allowed), None for any other line or a line
    whose count or figures do not read as numbers."""
    match = _LINE.fullmatch(line.strip())
    if not match:
        return None
    phase = match.group(1)
    fields = dict(item.split("=", 1) for item in match.group(2).split())
    done, slash, total = fields.get(COUNTS.get(phase, ROWS), "").partition("/")
    if not (slash and done.isdigit() and total.isdigit()):
        return None
    figures: dict = {}
    try:
        for key in _FLOATS:
            if key in fields:
                figures[key] = float(fields[key])
    except ValueError:
        return None
    if "eta" in fields:
        figures["eta_s"] = parse_duration(fields["eta"])
        if figures["eta_s"] is None:
            return None
    return Progress(phase, int(done), int(total), **figures)


class LogReader:
    """The newest progress of a log fed to it in pieces as they arrive (a line may come in several pieces)."""

    def __init__(self) -> None:
        self.latest: Optional[Progress] = None
        self._pending = ""

    def feed(self, text: str) -> Optional[Progress]:
        """Read ``text``; returns the newest progress so far (None before any)."""
        lines = (self._pending + text.replace("\r", "\n")).split("\n")
        self._pending = lines.pop()
        for line in lines:
            found = parse_line(line)
            if found is not None:
                self.latest = found.after(self.latest)
        return self.latest


def say(line: str) -> None:
    """Print ``line`` at once (a DDP process's stdout is a pipe: unflushed lines would arrive late)."""
    print(line, flush=True)


def _rank0() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


# --------------------------------------------------------------------------- what the kernels print

class TrainProgress:
    """Prints training's progress lines: call it with fit_lora's ``on_log`` records (``{"step", "loss", "lr"}``;
    ``{"resumed_from", "step"}`` is printed as it is and restarts the ETA's clock), and ``validation(step,
    loss)`` after each evaluation. The ETA is this run's time per step so far times the steps left. Only
    rank 0 prints under DDP."""

    def __init__(self, total: int, *, out: Optional[Callable[[str], None]] = None,
                 clock: Callable[[], float] = time.monotonic):
        self.total, self.out, self.clock = total, out or say, clock
        self.start_step, self.started = 0, clock()

    def restart(self, step: int) -> None:
        self.start_step, self.started = step, self.clock()

    def eta(self, step: int) -> Optional[float]:
        done = step - self.start_step
        return (self.clock() - self.started) / done * (self.total - step) if done > 0 else None

    def __call__(self, record: dict) -> None:
        if "resumed_from" in record:
            self.restart(int(record.get("step", 0)))
            if _rank0():
                say(str(record))
            return
        step = int(record["step"])
        self._print(Progress("train", step, self.total, loss=record.get("loss"), lr=record.get("lr"),
                             eta_s=self.eta(step)))

    def validation(self, step: int, loss: float) -> None:
        self._print(Progress("train", step, self.total, val_loss=loss, eta_s=self.eta(step)))

    def _print(self, p: Progress) -> None:
        if _rank0():
            self.out(format_line(p))


def trainer_callback(out: Optional[Callable[[str], None]] = None):
    """An HF ``TrainerCallback`` printing the Trainer's progress in the same lines: a line per ``logging_steps``
    (its loss and learning rate) and one per evaluation (its ``eval_log_loss``)."""
    from transformers import TrainerCallback

    class ProgressCallback(TrainerCallback):
        line = None

        def on_train_begin(self, args, state, control, **kwargs):
            self.line = TrainProgress(state.max_steps, out=out)
            self.line.restart(state.global_step)  # a resumed run counts from its checkpoint

        def on_log(self, args, state, control, logs=None, **kwargs):
            if self.line is None or not state.is_world_process_zero or not logs:
                return
            if "eval_log_loss" in logs:
                self.line.validation(state.global_step, float(logs["eval_log_loss"]))
            elif "loss" in logs:
                self.line({"step": state.global_step, "loss": float(logs["loss"]),
                           "lr": logs.get("learning_rate")})

    return ProgressCallback()


class RowCounter:
    """Rows predicted of ``total`` in ``phase``: a progress line at most every ``every`` seconds (None: only at
    the end) and one when the last row is done. Thread-safe (one model per GPU adds from its own thread)."""

    EVERY = 30.0

    def __init__(self, phase: str, total: int, *, every: Optional[float] = EVERY,
                 out: Optional[Callable[[str], None]] = None, clock: Callable[[], float] = time.monotonic):
        self.phase, self.total, self.every, self.out, self.clock = phase, total, every, out or say, clock
        self.done, self.finished = 0, False
        self.started = self.last = clock()
        self._lock = threading.Lock()

    def advance(self, rows: int) -> None:
        with self._lock:
            self.done += rows
            now = self.clock()
            last = self.done >= self.total and not self.finished
            if last or (self.every is not None and now - self.last >= self.every and not self.finished):
                self.last, self.finished = now, self.done >= self.total
                rate = self.done / max(now - self.started, 1e-9)
                eta = (self.total - self.done) / rate if rate > 0 else None
                if _rank0():
                    self.out(format_line(Progress(self.phase, min(self.done, self.total), self.total, eta_s=eta)))


_job: list[RowCounter] = []  # the open counting() job, if any


@contextlib.contextmanager
def counting(phase: str, total: int, **kwargs) -> Iterator[RowCounter]:
    """Count every row predicted inside the block into one job of ``total`` rows (e.g. all of inference's
    passes: TTA and each adapter of an ensemble), instead of a counter per call of ``rows``."""
    counter = RowCounter(phase, total, **kwargs)
    _job.append(counter)
    try:
        yield counter
    finally:
        _job.remove(counter)


def rows(total: int, every: Optional[float] = RowCounter.EVERY) -> RowCounter:
    """The open ``counting`` job, else a counter of ``total`` rows for this call alone ("predict"; silent with
    ``every`` None)."""
    if _job:
        return _job[-1]
    return RowCounter("predict", total, every=every, out=say if every is not None else _silent)


def _silent(line: str) -> None:
    pass
