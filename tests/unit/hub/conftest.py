"""The hub tests' shared fixtures: kagflow's Gateway on the local Kaggle, and a project that targets it."""

from __future__ import annotations

import pytest

from kagflow.hub.client import build_api
from kagflow.hub.endpoint import Endpoint
from kagflow.hub.gateway import Gateway
from kagflow.project.config import load_config

from local_fixtures import COMPETITION, USER


@pytest.fixture
def gw(server):
    return Gateway(build_api(server.url), Endpoint("local", server.url, USER), log=lambda m: None)


@pytest.fixture
def cfg(tmp_path, server, monkeypatch):
    from kagflow.project.init import init_project

    path = init_project(tmp_path / "proj", username=USER, competition=COMPETITION)
    monkeypatch.setenv("KAGFLOW_KAGGLE_ENDPOINT", server.url)
    return load_config(path)
