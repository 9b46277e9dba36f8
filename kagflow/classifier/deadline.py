"""The inference deadline (``[infer] deadline_s``): a submission.csv is always written before Kaggle's limit.

An inference run is a queue of passes, most important first: (member 0, original order), (member 0, A/B swapped)
with TTA, (member 1, original), ... ``run_passes`` runs each pass longest rows first, in chunks of about
``chunk_tokens`` tokens, and measures the rate (tokens per second, the first chunk left out: it compiles). Before
every chunk, with the seconds left (the deadline less ``reserve_s`` for writing the file) against the seconds the
queued tokens need at that rate (x ``SAFETY``):

1. later members go, whole, from the end of the queue, while this member's work and theirs do not fit; a member's
   TTA pass runs as far as time allows (the rows it does not reach keep their original view);
2. if the first pass alone does not fit, every other pass goes and its remaining rows are encoded again at the
   longest of ``LENGTHS`` (below max_length) whose tokens fit 90 % of what is left;
3. a chunk that cannot finish in time is not started: the rows left get the prior (the mean probabilities of the
   rows predicted so far, uniform if none), counted in the report.

Every decision is printed in one line and kept in ``Outcome.decisions``. The clock is ``resume.now`` (monotonic;
tests drive it), and ``deadline_s`` counts from the start of this process (the notebook's kernel).
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field

from . import resume

LENGTHS = (2048, 1536, 1024, 768, 512, 256)  # the max_length values rows are shortened to, longest first
SAFETY = 1.1  # the measured rate's margin
RESERVE_S = 60.0  # kept for combining the views and writing submission.csv
_IMPORTED = time.monotonic()


def process_age_s() -> float:
    """Seconds since this process started (/proc on Linux; elsewhere since this module was imported)."""
    try:
        ticks = os.sysconf("SC_CLK_TCK")
        with open("/proc/self/stat") as f:
            started = int(f.read().rsplit(")", 1)[1].split()[19]) / ticks
        with open("/proc/uptime") as f:
            return max(0.0, float(f.read().split()[0]) - started)
    except (OSError, ValueError, IndexError):
        return time.monotonic() - _IMPORTED


@dataclass
class Deadline:
    """The clock value (``resume.now``) by which submission.csv is written, and the rate measured so far."""

    at: float
    reserve_s: float = RESERVE_S
    tokens: int = 0
    seconds: float = 0.0
    chunks: int = 0

    @classmethod
    def after(cls, deadline_s: float, *, started: float | None = None, reserve_s: float = RESERVE_S):
        """``deadline_s`` seconds after ``started`` (a ``resume.now`` value; None: when this process started);
        None for ``deadline_s`` 0 (no deadline)."""
        if not deadline_s:
            return None
        if started is None:
            started = resume.now() - process_age_s()
        return cls(at=started + float(deadline_s), reserve_s=min(reserve_s, float(deadline_s) / 10))

    def left(self) -> float:
        return self.at - self.reserve_s - resume.now()

    def record(self, tokens: int, seconds: float) -> None:
        """One chunk's tokens and seconds; the first chunk (compilation, warm-up) is not part of the rate."""
        self.chunks += 1
        if self.chunks > 1:
            self.tokens += tokens
            self.seconds += seconds

    def need(self, tokens: int) -> float | None:
        """Seconds ``tokens`` need at the measured rate, with the margin; None before a rate is measured."""
        if self.tokens <= 0 or self.seconds <= 0:
            return None
        return tokens * self.seconds / self.tokens * SAFETY


@dataclass
class Outcome:
    """What ``run_passes`` did: per pass its probabilities (NaN where a row did not run), the length each row's
    first view ran at, and the decisions made."""

    probs: dict  # (member, view) -> array n x labels, NaN rows where the pass did not reach them
    lengths: list  # per row: the max_length its member-0 original view ran at (0: never ran)
    decisions: list = field(default_factory=list)
    dropped: list = field(default_factory=list)  # (member, view) passes dropped whole


def run_passes(passes, n_rows: int, encode, proba, *, max_length: int, deadline: Deadline | None,
               chunk_tokens: int, n_labels: int = 3) -> Outcome:
    """Run ``passes`` ((member, view) pairs, most important first) over ``n_rows`` rows.

    ``encode(view, rows, max_length) -> token id lists`` of those rows (each view and length asked once);
    ``proba(member, view, ids) -> probabilities``
    (n x labels, the swapped view's already mapped back to A / B / tie). Without a deadline each pass runs whole."""
    import numpy as np

    queue = list(passes)
    out = Outcome({p: np.full((n_rows, n_labels), np.nan) for p in queue}, [0] * n_rows)
    cache = {}

    def whole(view, length):  # every row of a view at a length, tokenised once
        if (view, length) not in cache:
            cache[(view, length)] = encode(view, list(range(n_rows)), length)
        return cache[(view, length)]

    def pass_tokens(view) -> int:
        return sum(len(s) for s in whole(view, max_length))

    def say(text: str) -> None:
        out.decisions.append(text)
        print(f"deadline: {text}", flush=True)

    q = 0
    while q < len(queue):
        member, view = queue[q]
        length = max_length
        ids = list(whole(view, length))
        todo = sorted(range(n_rows), key=lambda i: -len(ids[i]))
        # the guard looks at least ~24 times a pass (a chunk: at most chunk_tokens, at least the longest row)
        size = min(chunk_tokens, max(len(ids[todo[0]]) if todo else 0, sum(map(len, ids)) // 24))
        while todo:
            chunk = _chunk(todo, ids, size if deadline else math.inf)
            if deadline is not None:
                left = deadline.left()
                if left <= 0:
                    say(f"time is up ({-left:.0f}s past the deadline less its reserve) with {len(todo)} rows of "
                        f"pass {member}/{view} left")
                    _drop(queue, q + 1, out, say, "time is up")
                    return out
                # later members go first, whole, while this member's work and theirs need more than is left
                later = sum(pass_tokens(v) for _, v in queue[q + 1:])
                need = deadline.need(sum(len(ids[i]) for i in todo) + later)
                while need is not None and need > left and queue[-1][0] != member:
                    dropped = queue[-1]
                    _drop(queue, len(queue) - 1, out, say, f"{need:.0f}s needed, {left:.0f}s left")
                    later -= pass_tokens(dropped[1])
                    need = deadline.need(sum(len(ids[i]) for i in todo) + later)
                need = deadline.need(sum(len(ids[i]) for i in todo))
                if q == 0 and need is not None and need > left:  # the first pass: shorter rows for what is left
                    _drop(queue, 1, out, say, f"the first pass needs {need:.0f}s, {left:.0f}s left")
                    shorter = _shorter_length(deadline, whole, view, todo, length, 0.9 * left)
                    if shorter < length:
                        length = shorter
                        for i in todo:
                            ids[i] = whole(view, length)[i]
                        todo.sort(key=lambda i: -len(ids[i]))
                        say(f"{len(todo)} rows left re-encoded at max_length {length} ({need:.0f}s needed at "
                            f"{max_length}, {left:.0f}s left)")
                        chunk = _chunk(todo, ids, size)
                one = deadline.need(sum(len(ids[i]) for i in chunk))
                if one is not None and one > left:
                    say(f"pass {member}/{view} stopped: its next {len(chunk)} rows need {one:.0f}s, {left:.0f}s left; "
                        f"{len(todo)} rows without this view")
                    if q == 0:
                        return out
                    break
            start = resume.now()
            p = proba(member, view, [ids[i] for i in chunk])
            if deadline is not None:
                deadline.record(sum(len(ids[i]) for i in chunk), resume.now() - start)
            out.probs[(member, view)][chunk] = p
            if q == 0:
                for i in chunk:
                    out.lengths[i] = length
            todo = todo[len(chunk):]
        q += 1
    return out


def _chunk(todo, ids, chunk_tokens: float) -> list:
    """The next rows of ``todo`` (longest first) holding about ``chunk_tokens`` tokens (at least one row)."""
    total, k = 0, 0
    while k < len(todo) and (k == 0 or total + len(ids[todo[k]]) <= chunk_tokens):
        total += len(ids[todo[k]])
        k += 1
    return todo[:k]


def _shorter_length(deadline: Deadline, whole, view, rows, length: int, seconds: float) -> int:
    """The longest of ``LENGTHS`` below ``length`` whose tokens for ``rows`` fit ``seconds`` (else the shortest)."""
    options = [n for n in LENGTHS if n < length]
    for n in options:
        need = deadline.need(sum(len(whole(view, n)[i]) for i in rows))
        if need is not None and need <= seconds:
            return n
    return options[-1] if options else length


def _drop(queue, start: int, out: Outcome, say, why: str) -> None:
    """Drop the passes from ``start`` on (whole: none of their rows ran yet)."""
    while len(queue) > start:
        member, view = queue.pop()
        out.dropped.append((member, view))
        say(f"pass {member}/{view} dropped ({why})")


def combine(out: Outcome, members: int, views: tuple, prior=None):
    """Probabilities per row: each member's views averaged (those it got), then the members that reached the row;
    rows no pass reached get ``prior`` (default: the mean of the predicted rows, uniform if none). Returns
    (probs, rows on the prior, per member its probabilities or None where it left rows without a view)."""
    import numpy as np

    per_member = [_mean(np.stack([out.probs[(m, v)] for v in views])) for m in range(members)]
    probs = _mean(np.stack(per_member))
    missing = np.isnan(probs).any(axis=1)
    if prior is None:
        prior = probs[~missing].mean(axis=0) if (~missing).any() else np.full(probs.shape[1], 1 / probs.shape[1])
    probs[missing] = prior
    probs = probs / probs.sum(axis=1, keepdims=True)
    return probs, int(missing.sum()), [None if np.isnan(p).any() else p for p in per_member]


def _mean(stack):
    """The mean over the first axis of the rows that are not NaN (NaN where none is)."""
    import numpy as np

    ok = ~np.isnan(stack).any(axis=2)
    count = ok.sum(axis=0)
    mean = np.where(ok[..., None], stack, 0.0).sum(axis=0) / np.maximum(count, 1)[:, None]
    mean[count == 0] = np.nan
    return mean
