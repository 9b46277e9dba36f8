"""Background server: start detached, reuse while alive, stop, stop by itself once idle; the endpoint env var
switch."""

from __future__ import annotations

import os
import time

import pytest

from kagflow.errors import KagflowError
from kagflow.hub.client import build_api
from kagflow.hub.endpoint import ENDPOINT_ENV
from kagflow.local.control import (
    LOG_FILE,
    PID_FILE,
    PORT_FILE,
    _gone,
    ensure_background_server,
    find_free_port,
    health,
    idle_from_env,
    running_url,
    stop_background_server,
)
from kagflow.local.env import IDLE_ENV
from kagflow.local.server.idle import Idle

from local_fixtures import *  # noqa: F401,F403
from local_fixtures import USER, write_dataset, write_kernel

IDLE_LINE = "kagflow local Kaggle stopping by itself: idle for"


def test_background_server_lifecycle(tmp_path, kaggle_env, monkeypatch):
    data = tmp_path / "bg"
    assert running_url(data) is None and not stop_background_server(data)
    url = ensure_background_server(data)
    try:
        assert health(url)["data_dir"] == str(data.resolve())
        assert ensure_background_server(data) == url  # reused, not a second process
        pid = int((data / PID_FILE).read_text())
        monkeypatch.setenv(ENDPOINT_ENV, url)  # the documented switch
        api = build_api()
        ds = write_dataset(tmp_path / "ds", "background-data", {"a.txt": "x"})
        assert api.dataset_create_new(str(ds), quiet=True).status == "ok"
    finally:
        assert stop_background_server(data)
    assert running_url(data) is None and not (data / PORT_FILE).exists()
    try:
        os.kill(pid, 0)
        alive = True
    except ProcessLookupError:
        alive = False
    assert not alive
    # state survives: a new background server on the same dir still has the dataset
    url = ensure_background_server(data)
    try:
        assert build_api(url).dataset_status(f"{USER}/background-data") == "ready"
    finally:
        stop_background_server(data)


def test_free_port_and_health_of_nothing():
    port = find_free_port()
    assert 0 < port < 65536
    assert health(f"http://127.0.0.1:{port}", timeout=0.5) is None


def wait_gone(data, pid: int, timeout: float = 60.0) -> None:
    """Wait (a generous bound: nothing here is timed) for the server ``pid`` of ``data`` to have ended by itself;
    stopped, and the test failed, if it has not."""
    deadline = time.monotonic() + timeout
    while not _gone(pid):
        if time.monotonic() > deadline:
            stop_background_server(data)
            raise AssertionError(f"the background server {pid} still runs after {timeout:g} s")
        time.sleep(0.05)


def test_an_idle_background_server_stops_by_itself_and_the_next_ensure_starts_a_fresh_one(tmp_path):
    data = tmp_path / "bg"
    url = ensure_background_server(data, idle_s=0.5)
    pid = health(url)["pid"]
    wait_gone(data, pid)  # nobody asks it anything: it ends by itself
    assert not (data / PID_FILE).exists() and not (data / PORT_FILE).exists()  # as stop_background_server leaves it
    assert (data / LOG_FILE).read_text().count(IDLE_LINE) == 1  # says why, once
    url = ensure_background_server(data, idle_s=0)  # 0: this one never stops by itself
    try:
        assert health(url)["pid"] != pid
        assert int((data / PID_FILE).read_text()) == health(url)["pid"]
    finally:
        assert stop_background_server(data)
    assert (data / LOG_FILE).read_text().count(IDLE_LINE) == 1  # stopped, not idle


def test_a_polling_client_keeps_an_idle_background_server_alive(tmp_path):
    data = tmp_path / "bg"
    url = ensure_background_server(data, idle_s=2)
    pid = health(url)["pid"]
    try:
        for _ in range(45):  # 4.5 s of polls 0.1 s apart: over twice its idle time, each poll restarting the clock
            assert health(url)["pid"] == pid
            time.sleep(0.1)
    except BaseException:
        stop_background_server(data)
        raise
    wait_gone(data, pid)  # the polls stop: so does it
    assert (data / LOG_FILE).read_text().count(IDLE_LINE) == 1


def test_a_running_kernel_keeps_an_idle_background_server_alive(tmp_path, kaggle_env):
    """Pushed, then nobody asks anything while the kernel runs far longer than the idle time: the server stays
    until the run has ended (COMPLETE; a server stopped during it would have ended it in ERROR), then stops."""
    data = tmp_path / "bg"
    url = ensure_background_server(data, idle_s=0.5)
    pid = health(url)["pid"]
    folder = write_kernel(tmp_path / "k", "idle-kernel", "import time\ntime.sleep(4)\nopen('done.txt', 'w').write('x')")
    try:
        assert build_api(url).kernels_push(str(folder)).version_number == 1
    except BaseException:
        stop_background_server(data)
        raise
    wait_gone(data, pid, timeout=300)
    url = ensure_background_server(data, idle_s=0)
    try:
        status = build_api(url).kernels_status(f"{USER}/idle-kernel")
        assert status.status.name == "COMPLETE", status.failure_message
    finally:
        stop_background_server(data)


def test_the_idle_clock_restarts_on_each_request_and_waits_for_requests_and_jobs():
    now, jobs = [0.0], [False]
    idle = Idle(lambda: jobs[0], clock=lambda: now[0])
    now[0] = 9.0
    assert not idle.expire(10)
    assert idle.begin()  # a request at 9 s, lasting (a live log followed) 100 s
    now[0] = 109.0
    assert not idle.expire(10)
    idle.end()
    now[0] = 118.0
    assert not idle.expire(10)  # 9 s after that request ended
    jobs[0] = True  # a kernel queued then running, for hours
    now[0] = 10_000.0
    assert not idle.expire(10)
    jobs[0] = False
    now[0] = 10_009.0
    assert not idle.expire(10)
    now[0] = 10_010.0
    assert idle.expire(10)
    assert not idle.begin()  # stopping: a request now is refused (503), not answered by a server about to go
    assert idle.expire(10)


def test_the_idle_time_comes_from_its_variable_and_is_checked(monkeypatch):
    monkeypatch.setenv(IDLE_ENV, "90")
    assert idle_from_env() == 90.0
    monkeypatch.setenv(IDLE_ENV, "0")
    assert idle_from_env() is None  # never
    monkeypatch.setenv(IDLE_ENV, "half an hour")
    with pytest.raises(KagflowError, match=f"\\${IDLE_ENV} must be a number of seconds"):
        idle_from_env()
