"""The one retry layer: bounded exponential backoff, honouring Retry-After, never waiting past the
cap, and giving up once the endpoint has been unreachable for ``RetryPolicy.DEADLINE`` seconds.

Every hub call goes through ``call_with_retry`` (via ``Gateway.call``); nothing below it retries
(the official client's own retry loops are switched off in ``kagflow.hub.client``).
"""

from __future__ import annotations

import random
import sys
import time
from email.utils import parsedate_to_datetime
from typing import Callable, Optional, TypeVar

import requests

T = TypeVar("T")

RETRY_STATUS = (408, 429, 500, 502, 503, 504)


class RetryPolicy:
    """Class constants so tests can set the waits to zero (papermill's GCSHandler does the same)."""

    MAX_RETRIES = 8
    BASE_WAIT = 1.0
    MAX_WAIT = 30.0  # no single wait is longer, jitter and Retry-After included
    JITTER = 0.25
    DEADLINE = 60.0  # seconds an endpoint may stay unreachable before the command gives up


def status_of(exc: BaseException) -> Optional[int]:
    response = getattr(exc, "response", None)
    return getattr(response, "status_code", None)


def is_unreachable(exc: BaseException) -> bool:
    """No answer at all: refused, reset, timed out, DNS."""
    if isinstance(exc, requests.exceptions.ChunkedEncodingError):
        return True
    return isinstance(exc, (requests.ConnectionError, requests.Timeout, ConnectionError, TimeoutError))


def is_transient(exc: BaseException) -> bool:
    """429, 5xx, timeouts and dropped connections are worth another try."""
    return is_unreachable(exc) or status_of(exc) in RETRY_STATUS


def retry_after(exc: BaseException) -> Optional[float]:
    """Seconds the server asked us to wait (Retry-After as seconds or an HTTP date), if any."""
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None) or {}
    value = headers.get("Retry-After")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


def backoff(attempt: int, rand: Callable[[], float] = random.random) -> float:
    """``BASE_WAIT * 2**(attempt-1)`` with up to ``JITTER`` added, then capped at ``MAX_WAIT``."""
    wait = RetryPolicy.BASE_WAIT * (2 ** (attempt - 1)) * (1 + RetryPolicy.JITTER * rand())
    return min(RetryPolicy.MAX_WAIT, wait)


def next_wait(exc: BaseException, attempt: int) -> float:
    asked = retry_after(exc)
    wait = backoff(attempt) if asked is None else asked
    return max(0.0, min(wait, RetryPolicy.MAX_WAIT))


def describe(exc: BaseException) -> str:
    status = status_of(exc)
    if status:
        return f"HTTP {status}"
    if isinstance(exc, requests.Timeout):
        return "no answer (timed out)"
    if is_unreachable(exc):
        return "connection failed"
    return type(exc).__name__


class Outage:
    """Since when the endpoint has not answered (None: it answers). One per command (the Gateway
    holds it), so nested and successive calls share one deadline."""

    def __init__(self) -> None:
        self.since: Optional[float] = None


def _stderr(message: str) -> None:
    print(message, file=sys.stderr)


def call_with_retry(
    fn: Callable[[], T],
    *,
    what: str,
    should_retry: Callable[[BaseException], bool] = is_transient,
    before_retry: Optional[Callable[[], Optional[T]]] = None,
    max_retries: Optional[int] = None,
    deadline: Optional[float] = None,
    outage: Optional[Outage] = None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
    log: Callable[[str], None] = _stderr,
) -> T:
    """Run ``fn`` and retry transient failures, at most ``max_retries`` times.

    Each retry is logged in one line (``what: HTTP 503; retrying in 2.0s [retry 1/8]``).
    ``before_retry`` makes creating calls safe: it looks at the target before each retry and
    returns a result if the failed attempt did go through (so no duplicate is created).
    While the endpoint does not answer at all, retrying stops once the next wait would end
    past ``deadline`` seconds (default ``RetryPolicy.DEADLINE``) since it stopped answering,
    counting the time the next attempt may take; ``outage`` shares that clock between calls.
    """
    retries = RetryPolicy.MAX_RETRIES if max_retries is None else max_retries
    limit = RetryPolicy.DEADLINE if deadline is None else deadline
    attempt = 0
    outage = outage or Outage()
    while True:
        attempt_started = clock()
        try:
            result = fn()
            outage.since = None
            return result
        except Exception as exc:  # noqa: BLE001 - classified below
            attempt += 1
            if attempt > retries or not should_retry(exc):
                raise
            wait = next_wait(exc, attempt)
            if is_unreachable(exc):
                now = clock()
                if outage.since is None:
                    outage.since = attempt_started
                # the next attempt may take as long as this one did (a connect timeout)
                if now - outage.since + wait + (now - attempt_started) > limit:
                    raise
            else:
                outage.since = None
            log(f"{what}: {describe(exc)}; retrying in {wait:.1f}s [retry {attempt}/{retries}]")
            sleep(wait)
            if before_retry is not None:
                done = before_retry()
                if done is not None:
                    return done


class WaitPolicy:
    """Polling intervals (seconds) for long waits (kernels, scores, a new resource showing up); tests set them
    small."""

    FIRST = 2.0
    FACTOR = 1.5
    CAP = 60.0
    SETTLE = 120.0  # how long something kagflow just created may stay unseen (Kaggle: 404, files listed late)


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
