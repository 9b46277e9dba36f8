"""Background server: start detached, reuse while alive, stop; the endpoint env var switch."""

from __future__ import annotations

import os

from kagflow.hub.client import build_api
from kagflow.hub.endpoint import ENDPOINT_ENV
from kagflow.local.control import (
    PID_FILE,
    PORT_FILE,
    ensure_background_server,
    find_free_port,
    health,
    running_url,
    stop_background_server,
)

from local_fixtures import *  # noqa: F401,F403
from local_fixtures import USER, write_dataset


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
