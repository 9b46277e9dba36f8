"""The eventual-consistency mode: what the official client meets just after a create, as on Kaggle."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest
import requests

from kagflow.local.server.api import Settings
from kagflow.local.server.consistency import MODES, with_mode
from kagflow.local.server.httpd import start_server

from local_fixtures import *  # noqa: F401,F403
from local_fixtures import KEY, USER, write_dataset

WINDOW = 0.6  # seconds: long enough to be met at once, short for a unit test


def post(srv, route, body):
    return requests.post(f"{srv.url}/api/v1/{route}", json=body, auth=(USER, KEY), timeout=10)


def _until_shown(srv, route, body, deadline=10.0):
    end = time.monotonic() + deadline
    while (resp := post(srv, route, body)).status_code == 404:
        assert time.monotonic() < end, resp.text
        time.sleep(0.05)
    return resp


def test_a_new_model_answers_404_then_shows_up(data_dir, kaggle_env):
    with start_server(data_dir, settings=Settings(not_found_s=WINDOW)) as srv:
        made = post(srv, "models.ModelApiService/CreateModel",
                    {"ownerSlug": USER, "slug": "eventual-model", "title": "Eventual model", "isPrivate": True})
        assert made.status_code == 200 and not made.json().get("error")
        got = post(srv, "models.ModelApiService/GetModel", {"ownerSlug": USER, "modelSlug": "eventual-model"})
        assert got.status_code == 404 and "not found" in got.json()["message"]
        assert post(srv, "models.ModelApiService/ListModels", {}).json().get("models", []) == []
        again = post(srv, "models.ModelApiService/CreateModel",  # the name is taken all the same
                     {"ownerSlug": USER, "slug": "eventual-model", "title": "Eventual model"})
        assert again.json()["errorCode"] == 409
        shown = _until_shown(srv, "models.ModelApiService/GetModel", {"ownerSlug": USER, "modelSlug": "eventual-model"})
        assert shown.json()["title"] == "Eventual model"


def test_a_new_dataset_version_processes_before_its_files_are_listed(data_dir, kaggle_env, tmp_path):
    from requests import HTTPError

    from kagflow.hub.client import build_api

    window = 10 * WINDOW  # the calls below must all land inside it, on a loaded machine too
    with start_server(data_dir, settings=Settings(dataset_processing_s=window)) as srv:
        api = build_api(srv.url)
        folder = write_dataset(tmp_path / "ds", "late-files", {"a.csv": "1\n"})
        assert not api.dataset_create_new(str(folder), quiet=True).error
        assert api.dataset_status(f"{USER}/late-files") == "blobs_received"
        assert api.dataset_list_files(f"{USER}/late-files").files == []  # unpacked late
        late = post(srv, "datasets.DatasetApiService/DownloadDataset", {"ownerSlug": USER, "datasetSlug": "late-files"})
        assert late.status_code == 404 and "still being processed" in late.json()["message"]
        with pytest.raises(HTTPError) as busy:
            api.dataset_create_version(str(folder), "too soon", quiet=True)
        assert busy.value.response.status_code == 403
        time.sleep(window)
        assert [f.name for f in api.dataset_list_files(f"{USER}/late-files").files] == ["a.csv"]
        assert api.dataset_status(f"{USER}/late-files") == "ready"


def test_every_nth_call_is_a_429_with_retry_after(data_dir, kaggle_env):
    with start_server(data_dir, settings=Settings(rate_limit_every=3, rate_limit_retry_after_s=2)) as srv:
        answers = [post(srv, "models.ModelApiService/ListModels", {}) for _ in range(6)]
        assert [a.status_code for a in answers] == [200, 200, 429, 200, 200, 429]
        assert answers[2].headers["Retry-After"] == "2" and "RESOURCE_EXHAUSTED" in answers[2].json()["message"]


def test_the_modes():
    assert with_mode(Settings(), "instant") == Settings()
    eventual = with_mode(Settings(), "eventual")
    assert eventual.not_found_s > 0 and eventual.model_processing_s > 0 and eventual.rate_limit_every > 0
    assert set(MODES) == {"instant", "eventual"}
    with pytest.raises(ValueError, match="instant or eventual"):
        with_mode(Settings(), "sometimes")


@pytest.mark.parametrize("command", [["kagflow.local", "serve"], ["kagflow", "local", "serve"]],
                         ids=["server-module", "kagflow-cli"])
def test_serve_takes_the_mode_from_its_flag(tmp_path, command):
    """`python -m kagflow.local serve` and `kagflow local serve` (through workflow/local.serve) both take it."""
    from kagflow.project.init import init_project

    root = init_project(tmp_path / "proj", username="alice").parent
    proc = subprocess.Popen([sys.executable, "-m", *command, "--data-dir", str(tmp_path / "d"), "--consistency",
                             "eventual"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=root)
    try:
        first = proc.stdout.readline()
        assert "consistency eventual" in first, first
    finally:
        proc.terminate()
        proc.wait(10)


def test_an_unknown_mode_in_the_environment_is_one_error(tmp_path, monkeypatch):
    from kagflow.errors import KagflowError
    from kagflow.local.control import serve_forever
    monkeypatch.setenv("KAGFLOW_LOCAL_CONSISTENCY", "sometimes")
    with pytest.raises(KagflowError) as err:
        serve_forever(tmp_path / "d")
    assert "sometimes" in err.value.message and "eventual" in err.value.hint
