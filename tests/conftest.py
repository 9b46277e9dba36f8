"""Shared test set-up: every test runs isolated from the user's Kaggle credentials and config."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Local kernels run on the local Kaggle image, built once per machine (`make test` builds it first):
# every test shares the real cache, whatever HOME a test sets.
from kagflow.local.run.image import CACHE_ENV, cache_root  # noqa: E402

os.environ.setdefault(CACHE_ENV, str(cache_root()))

SECRET_ENV = ("KAGGLE_USERNAME", "KAGGLE_KEY", "KAGGLE_API_TOKEN", "KAGGLE_CONFIG_DIR",
              "KAGFLOW_KAGGLE_ENDPOINT", "KAGFLOW_CONFIG", "KAGFLOW_FROM", "KAGFLOW_LOCAL_TRAIN",
              "KAGFLOW_JSON", "KAGFLOW_LOCAL_CONSISTENCY", "KAGFLOW_LOCAL_IDLE_S")


@pytest.fixture(autouse=True)
def isolation(tmp_path_factory, monkeypatch):
    """A private HOME (no ~/.kaggle), no Kaggle variables, no colour, zero retry waits."""
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / ".config"))
    monkeypatch.setenv("NO_COLOR", "1")
    for name in SECRET_ENV:
        monkeypatch.delenv(name, raising=False)
    from kagflow.hub.kernels import WaitPolicy
    from kagflow.hub.retry import RetryPolicy

    monkeypatch.setattr(RetryPolicy, "BASE_WAIT", 0.0)
    monkeypatch.setattr(RetryPolicy, "MAX_WAIT", 0.0)  # Retry-After too
    monkeypatch.setattr(WaitPolicy, "FIRST", 0.05)
    monkeypatch.setattr(WaitPolicy, "CAP", 0.5)
    yield home


@pytest.fixture
def project(tmp_path) -> Path:
    """A fresh `kagflow init` project; returns its kagflow.toml."""
    from kagflow.project.init import init_project

    return init_project(tmp_path / "proj", username="alice")


@pytest.fixture(autouse=True)
def background_servers_stop(monkeypatch):
    """A background local Kaggle a test starts in this process (a session on the local target that connects)
    stops when the test ends: none outlives pytest. (Servers a subprocess starts are its fixture's to stop.)"""
    from kagflow.local import control

    started = []
    start = control.ensure_background_server

    def recording(data_dir, *args, **kwargs):
        started.append(data_dir)
        return start(data_dir, *args, **kwargs)

    monkeypatch.setattr(control, "ensure_background_server", recording)
    yield
    for data_dir in started:
        control.stop_background_server(data_dir)


@pytest.fixture
def kaggle_credentials(isolation, monkeypatch):
    """Fake Kaggle credentials in ~/.kaggle/kaggle.json (the local server takes any key)."""
    import json

    cfg = Path(isolation) / ".kaggle"
    cfg.mkdir(exist_ok=True)
    key = "0123456789abcdef0123456789abcdef"[::-1]
    (cfg / "kaggle.json").write_text(json.dumps({"username": "alice", "key": key}))
    os.chmod(cfg / "kaggle.json", 0o600)
    monkeypatch.setenv("KAGGLE_CONFIG_DIR", str(cfg))
    # the official client fixes its config path at import time; the variables it reads each time
    monkeypatch.setenv("KAGGLE_USERNAME", "alice")
    monkeypatch.setenv("KAGGLE_KEY", key)
    return {"username": "alice", "key": key}
