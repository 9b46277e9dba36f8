"""The one retry helper: bounded exponential backoff with jitter, honouring Retry-After."""

from __future__ import annotations

import random
import sys
import time
from typing import Callable, Optional, TypeVar

import requests

T = TypeVar("T")

RETRY_STATUS = (408, 429, 500, 502, 503, 504)


class RetryPolicy:
    """Class constants so tests can set the waits to zero (papermill's GCSHandler does the same)."""

    MAX_RETRIES = 8
    BASE_WAIT = 1.0
    MAX_WAIT = 30.0
    JITTER = 0.5


def status_of(exc: BaseException) -> Optional[int]:
    response = getattr(exc, "response", None)
    return getattr(response, "status_code", None)


def is_transient(exc: BaseException) -> bool:
    """429, 5xx, timeouts and dropped connections are worth another try."""
    if isinstance(exc, (requests.ConnectionError, requests.Timeout, ConnectionError, TimeoutError)):
        return True
    if isinstance(exc, requests.exceptions.ChunkedEncodingError):
        return True
    return status_of(exc) in RETRY_STATUS


def retry_after(exc: BaseException) -> Optional[float]:
    response = getattr(exc, "response", None)
    value = response.headers.get("Retry-After") if response is not None and response.headers else None
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None


def backoff(attempt: int) -> float:
    wait = min(RetryPolicy.MAX_WAIT, RetryPolicy.BASE_WAIT * (2 ** (attempt - 1)))
    return wait * (1 + RetryPolicy.JITTER * random.random())


def call_with_retry(
    fn: Callable[[], T],
    *,
    what: str,
    should_retry: Callable[[BaseException], bool] = is_transient,
    before_retry: Optional[Callable[[], Optional[T]]] = None,
    max_retries: Optional[int] = None,
    sleep: Callable[[float], None] = time.sleep,
    log: Callable[[str], None] = lambda m: print(m, file=sys.stderr),
) -> T:
    """Run ``fn`` and retry transient failures, at most ``max_retries`` times.

    ``before_retry`` makes non-idempotent calls safe: it looks at the target before each retry
    and returns a result if the failed attempt did go through (so no duplicate is created).
    """
    retries = RetryPolicy.MAX_RETRIES if max_retries is None else max_retries
    attempt = 0
    while True:
        try:
            return fn()
        except Exception as exc:  # noqa: BLE001 - classified below
            attempt += 1
            if attempt > retries or not should_retry(exc):
                raise
            wait = retry_after(exc)
            wait = backoff(attempt) if wait is None else min(wait, RetryPolicy.MAX_WAIT)
            if RetryPolicy.BASE_WAIT == 0:  # tests switch waiting off entirely
                wait = 0.0
            log(f"{what}: {describe(exc)}; retrying in {wait:.1f}s [retry {attempt}/{retries}]")
            sleep(wait)
            if before_retry is not None:
                done = before_retry()
                if done is not None:
                    return done


def describe(exc: BaseException) -> str:
    status = status_of(exc)
    if status:
        return f"HTTP {status}"
    return type(exc).__name__


class WaitPolicy:
    """Polling intervals (seconds) for long waits (kernels, scores); tests set them small."""

    FIRST = 2.0
    FACTOR = 1.5
    CAP = 60.0


def poll_until(fetch: Callable[[], T], done: Callable[[T], bool], *, timeout: float,
               on_poll: Optional[Callable[[T, float], None]] = None,
               on_timeout: Callable[[T, float], BaseException],
               sleep: Callable[[float], None] = time.sleep,
               clock: Callable[[], float] = time.monotonic) -> T:
    """Call ``fetch`` until ``done(value)``, waiting WaitPolicy's growing, capped intervals between
    calls; past ``timeout`` raise ``on_timeout(value, elapsed)``. Returns the final value."""
    start, interval = clock(), WaitPolicy.FIRST
    while True:
        value = fetch()
        elapsed = clock() - start
        if on_poll:
            on_poll(value, elapsed)
        if done(value):
            return value
        if elapsed >= timeout:
            raise on_timeout(value, elapsed)
        sleep(min(interval, max(0.0, timeout - elapsed)))
        interval = min(WaitPolicy.CAP, interval * WaitPolicy.FACTOR)
