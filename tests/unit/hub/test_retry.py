"""The one retry layer with scripted response sequences (as huggingface_hub's test_utils_http.py),
the client's timeouts, and the deadline for an endpoint that does not answer."""

from __future__ import annotations

import socket

import pytest
import requests

from kagflow.hub import retry
from kagflow.hub.retry import RetryPolicy, call_with_retry


def http_error(status: int, retry_after: str | None = None) -> requests.HTTPError:
    response = requests.Response()
    response.status_code = status
    if retry_after is not None:
        response.headers["Retry-After"] = retry_after
    return requests.HTTPError(f"HTTP {status}", response=response)


class Script:
    """Plays a sequence of outcomes: exceptions are raised, anything else is returned."""

    def __init__(self, *outcomes):
        self.outcomes = list(outcomes)
        self.calls = 0

    def __call__(self):
        self.calls += 1
        outcome = self.outcomes.pop(0)
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome


@pytest.fixture
def waits(monkeypatch):
    monkeypatch.setattr(RetryPolicy, "BASE_WAIT", 1.0)
    monkeypatch.setattr(RetryPolicy, "MAX_WAIT", 30.0)
    monkeypatch.setattr(RetryPolicy, "JITTER", 0.25)
    slept: list[float] = []
    return slept


def run(fn, slept, logs=None, **kw):
    return call_with_retry(fn, what="get model", sleep=slept.append,
                           log=(logs.append if logs is not None else lambda m: None), **kw)


def test_transient_failures_then_success_each_retry_logged_once(waits):
    logs: list[str] = []
    script = Script(http_error(503), requests.ConnectionError("refused"), http_error(429), "ok")
    assert run(script, waits, logs) == "ok"
    assert script.calls == 4 and len(waits) == 3
    assert logs == [f"get model: {what}; retrying in {w:.1f}s [retry {n}/8]"
                    for n, (what, w) in enumerate(zip(["HTTP 503", "connection failed", "HTTP 429"], waits), 1)]


def test_retry_after_is_honoured_and_capped(waits):
    script = Script(http_error(429, "7"), http_error(503, "120"), "ok")
    assert run(script, waits) == "ok"
    assert waits == [7.0, 30.0]


def test_backoff_never_exceeds_the_cap_even_with_full_jitter(waits):
    assert [retry.backoff(n, rand=lambda: 1.0) for n in (1, 2, 3, 5, 6, 10)] == [1.25, 2.5, 5.0, 20.0, 30.0, 30.0]


def test_refusals_are_not_retried(waits):
    script = Script(http_error(404), "never")
    with pytest.raises(requests.HTTPError):
        run(script, waits)
    assert script.calls == 1 and waits == []


def test_gives_up_after_max_retries_with_the_last_error(waits):
    script = Script(*[http_error(500)] * 4)
    with pytest.raises(requests.HTTPError):
        run(script, waits, max_retries=3)
    assert script.calls == 4 and len(waits) == 3


def test_creating_call_looks_before_it_creates_again(waits):
    created = []
    script = Script(requests.ConnectionError("answer lost"), "created twice")
    result = run(script, waits, before_retry=lambda: created.append(1) or "found the first one")
    assert result == "found the first one" and script.calls == 1 and created == [1]


def test_unreachable_endpoint_stops_at_the_deadline(waits):
    """A fake clock: the retries stop once the next wait would end past the deadline."""
    now = [0.0]

    def sleep(seconds):
        waits.append(seconds)
        now[0] += seconds

    def down():
        now[0] += 5.0  # each attempt spends the connect timeout
        raise requests.ConnectTimeout("no answer")

    with pytest.raises(requests.ConnectTimeout):
        call_with_retry(down, what="get model", sleep=sleep, clock=lambda: now[0], log=lambda m: None,
                        max_retries=100, deadline=60.0)
    assert now[0] <= 60.0 and len(waits) < 10


def test_status_retries_do_not_count_against_the_unreachable_deadline(waits):
    now = [0.0]
    script = Script(*[http_error(503)] * 5, "ok")
    assert call_with_retry(script, what="x", sleep=lambda s: now.__setitem__(0, now[0] + s),
                           clock=lambda: now[0], log=lambda m: None, deadline=1.0) == "ok"


# --------------------------------------------------------------------------- the real client


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_endpoint_down_fails_within_the_deadline_naming_it(monkeypatch):
    """With the deadline short and retries unbounded, the command still ends, with one message."""
    from kagflow.errors import UnreachableError
    from kagflow.hub.client import build_api
    from kagflow.hub.endpoint import Endpoint
    from kagflow.hub.gateway import Gateway

    monkeypatch.setattr(RetryPolicy, "MAX_RETRIES", 10_000)
    monkeypatch.setattr(RetryPolicy, "BASE_WAIT", 0.05)
    monkeypatch.setattr(RetryPolicy, "MAX_WAIT", 0.05)
    monkeypatch.setattr(RetryPolicy, "DEADLINE", 0.5)
    monkeypatch.setenv("KAGGLE_USERNAME", "alice")
    monkeypatch.setenv("KAGGLE_KEY", "k" * 32)
    url = f"http://127.0.0.1:{_closed_port()}"
    logs: list[str] = []
    gw = Gateway(build_api(url), Endpoint("local", url, "alice"), log=logs.append)
    with pytest.raises(UnreachableError) as err:
        gw.call(lambda: gw.api.model_get("alice/some-model"), what="get model", handle="alice/some-model")
    assert url in err.value.message and "kagflow local start" in err.value.hint
    assert 0 < len(logs) < 10_000


def test_a_hung_connection_times_out(monkeypatch):
    """A server that accepts and never answers: the read timeout ends the request."""
    from kagflow.hub.client import Timeouts, build_api

    monkeypatch.setattr(Timeouts, "READ", 0.3)
    monkeypatch.setenv("KAGGLE_USERNAME", "alice")
    monkeypatch.setenv("KAGGLE_KEY", "k" * 32)
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)  # the kernel completes the handshake; nobody ever reads or answers
        url = f"http://127.0.0.1:{listener.getsockname()[1]}"
        with pytest.raises(requests.Timeout):
            build_api(url).model_get("alice/some-model")


def test_the_clients_own_retry_loops_are_off():
    from kagflow.hub.client import BoundedSession, EndpointKaggleApi

    api = EndpointKaggleApi("http://127.0.0.1:1")
    fn = object()
    assert api.with_retry(fn) is fn
    session = BoundedSession()
    from requests.adapters import HTTPAdapter
    from urllib3.util.retry import Retry

    session.mount("http://", HTTPAdapter(max_retries=Retry(total=10, backoff_factor=0.5)))
    assert session.get_adapter("http://x").max_retries.total == 0


def test_nested_and_successive_calls_share_one_deadline(waits):
    """A creating call whose look-before-retry is itself a call: together they stay within the deadline."""
    now = [0.0]

    def sleep(seconds):
        now[0] += seconds

    def down():
        now[0] += 5.0
        raise requests.ConnectTimeout("no answer")

    outage = retry.Outage()
    common = dict(sleep=sleep, clock=lambda: now[0], log=lambda m: None, max_retries=100, deadline=60.0,
                  outage=outage)

    def look():
        return call_with_retry(down, what="get kernel", **common)

    with pytest.raises(requests.ConnectTimeout):
        call_with_retry(down, what="push kernel", before_retry=look, **common)
    assert now[0] <= 60.0


def test_downloads_do_not_retry_inside_the_client(monkeypatch):
    """The client's download loop would retry 5 times with its own backoff: kagflow asks for none."""
    from kaggle.api.kaggle_api_extended import KaggleApi

    from kagflow.hub.client import EndpointKaggleApi

    seen = {}
    monkeypatch.setattr(KaggleApi, "download_file",
                        lambda self, response, outfile, http_client, *a, **k: seen.update(k))
    response = requests.Response()
    EndpointKaggleApi("http://127.0.0.1:1").download_file(response, "/tmp/x", None, True, False)
    assert seen == {"max_retries": 0}


def test_long_waits_poll_a_loopback_server_often_and_kaggle_with_growing_intervals(monkeypatch, tmp_path):
    """Kaggle is polled every 2 s, then up to every 60 s; the local Kaggle's endpoint caps the interval at a few
    seconds (a kernel that ends after 50 s was seen up to 15 s later, three times in each whole-flow test)."""
    from kagflow.hub.retry import WaitPolicy, poll_until
    from kagflow.project.config import load_config
    from kagflow.project.init import init_project
    from kagflow.workflow.target import LOCAL_POLL_CAP, LocalTarget

    for name, value in (("FIRST", 2.0), ("FACTOR", 1.5), ("CAP", 60.0)):  # Kaggle's, not the tests' fast ones
        monkeypatch.setattr(WaitPolicy, name, value)

    def waits(cap):
        slept, now = [], [0.0]

        def sleep(s):
            slept.append(s)
            now[0] += s
        poll_until(lambda: now[0], lambda t: t >= 600, timeout=3600, on_timeout=AssertionError, sleep=sleep,
                   clock=lambda: now[0], cap=cap)
        return slept

    kaggle = waits(None)
    assert kaggle[:3] == [2.0, 3.0, 4.5] and max(kaggle) == 60.0
    endpoint, _ = LocalTarget(load_config(init_project(tmp_path / "p")), "http://127.0.0.1:9").connect()
    assert endpoint.poll_cap == LOCAL_POLL_CAP and max(waits(endpoint.poll_cap)) == LOCAL_POLL_CAP
