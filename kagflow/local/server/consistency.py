"""Kaggle's eventual consistency, imitated when asked: what a client meets on Kaggle just after it creates something.

On Kaggle a new dataset, model, model instance or kernel answers 404 for a few seconds after its create; a new
dataset or model version is "processing" for a while (another version is refused with 403, its files are
listed, and can be downloaded, only once its archives are unpacked); and now and then a call answers 429
RESOURCE_EXHAUSTED with a Retry-After. The local Kaggle is ready at once unless a mode says otherwise:

    instant    (the default) every create is visible, listed and downloadable at once; no 429
    eventual   as Kaggle: 404 for :data:`EVENTUAL` ``not_found_s`` seconds after a create, versions processing
               ``*_processing_s`` seconds, every ``rate_limit_every``-th API call a 429 (Retry-After 1 s)

Chosen with ``kagflow local serve --consistency eventual`` or ``KAGFLOW_LOCAL_CONSISTENCY=eventual``
(:data:`kagflow.local.env.CONSISTENCY_ENV`); the knobs are :class:`kagflow.local.server.api.Settings` fields,
which tests set directly. The windows are short (seconds): long enough that a client which reads its own write
too early meets them on every run, short enough for the whole-flow test.
"""

from __future__ import annotations

import threading
from dataclasses import replace

from kagflow.local.server.protocol import ApiError

MODES = {
    "instant": {},
    "eventual": {"not_found_s": 3.0, "dataset_processing_s": 3.0, "model_processing_s": 3.0,
                 "rate_limit_every": 20},
}
DEFAULT_MODE = "instant"


def with_mode(settings, mode: str):
    """``settings`` (a :class:`~kagflow.local.server.api.Settings`) with the knobs of ``mode`` set."""
    if mode not in MODES:
        raise ValueError(f"unknown consistency mode {mode!r}: use {' or '.join(MODES)}")
    return replace(settings, **MODES[mode])


class RateLimit:
    """Every ``every``-th API call (0: none) answers 429 RESOURCE_EXHAUSTED with ``Retry-After``, as Kaggle's
    undisclosed rate limits do now and then. Counted per server, so a run sees the same sequence every time."""

    def __init__(self, every: int, retry_after_s: int = 1):
        self.every = every
        self.retry_after_s = retry_after_s
        self._calls = 0
        self._lock = threading.Lock()

    def check(self, route: str) -> None:
        if self.every <= 0:
            return
        with self._lock:
            self._calls += 1
            hit = self._calls % self.every == 0
        if hit:
            raise ApiError(429, f"RESOURCE_EXHAUSTED: too many requests ({route}); retry after "
                                f"{self.retry_after_s} s", headers={"Retry-After": str(self.retry_after_s)})
