"""kagglehub, Kaggle's other official library, as a second real client of the local Kaggle; and refusals
shaped as Kaggle shapes them (HTTP 200 with error/errorCode in the body for create handlers)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from local_fixtures import *  # noqa: F401,F403
from local_fixtures import KEY, USER, write_dataset

kagglehub = pytest.importorskip("kagglehub")


@pytest.fixture
def hub(server, monkeypatch, tmp_path):
    """kagglehub pointed at the local server (KAGGLE_API_ENVIRONMENT=TEST is kagglesdk's localhost:7777; the
    test moves that entry to the server's port), with its cache in a temp folder."""
    from kagglesdk import kaggle_env

    monkeypatch.setenv("KAGGLE_API_ENVIRONMENT", "TEST")
    monkeypatch.setitem(kaggle_env._env_to_endpoint, kaggle_env.KaggleEnv.TEST, server.url)
    monkeypatch.setenv("KAGGLEHUB_CACHE", str(tmp_path / "hub-cache"))
    monkeypatch.setenv("KAGGLE_USERNAME", USER)
    monkeypatch.setenv("KAGGLE_KEY", KEY)
    return kagglehub


def test_kagglehub_dataset_upload_twice_makes_a_version_and_downloads(hub, api, tmp_path):
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "rows.csv").write_text("a,b\n1,2\n")
    (src / "sub" / "more.csv").write_text("c\n3\n")
    hub.dataset_upload(f"{USER}/hub-dataset", str(src), version_notes="first")
    (src / "rows.csv").write_text("a,b\n5,6\n")
    hub.dataset_upload(f"{USER}/hub-dataset", str(src), version_notes="second")  # "already exists" → new version
    files = sorted(f.name for f in api.dataset_list_files(f"{USER}/hub-dataset").files)
    assert files == ["rows.csv", "sub/more.csv"]
    path = hub.dataset_download(f"{USER}/hub-dataset")
    from pathlib import Path
    assert (Path(path) / "rows.csv").read_text() == "a,b\n5,6\n"
    assert (Path(path) / "sub" / "more.csv").read_text() == "c\n3\n"
    first = hub.dataset_download(f"{USER}/hub-dataset/versions/1")
    assert (Path(first) / "rows.csv").read_text() == "a,b\n1,2\n"


def test_kagglehub_model_upload_create_then_version_and_download(hub, tmp_path):
    from pathlib import Path
    src = tmp_path / "weights"
    src.mkdir()
    (src / "config.json").write_text('{"r": 16}')
    handle = f"{USER}/hub-model/transformers/lora"
    hub.model_upload(handle, str(src), license_name="Apache 2.0", version_notes="v1")
    (src / "config.json").write_text('{"r": 8}')
    hub.model_upload(handle, str(src), license_name="Apache 2.0", version_notes="v2")  # errorCode 409 → version
    latest = hub.model_download(handle)
    assert json.loads((Path(latest) / "config.json").read_text()) == {"r": 8}
    first = hub.model_download(f"{handle}/1")
    assert json.loads((Path(first) / "config.json").read_text()) == {"r": 16}


def test_kagglehub_uploads_the_slugs_and_titles_kaggle_accepts(hub, api, tmp_path):
    """kagglehub's own integration tests create ``<user>/model_<uuid>`` (title = slug) on Kaggle; Kaggle hosts
    ``keras/bert`` (title "BERT") with instance ``bert_tiny_en_uncased`` and models with dots (``qwen2.5``)."""
    from pathlib import Path
    src = tmp_path / "weights"
    src.mkdir()
    (src / "config.json").write_text("{}")
    for handle in (f"{USER}/model_3ff33db0-e362-4366-8a3b-f3b69f7d1d73/pyTorch/new-variation",
                   f"{USER}/bert/keras/bert_tiny_en_uncased", f"{USER}/qwen2.5/transformers/1.5b-instruct"):
        hub.model_upload(handle, str(src), license_name="Apache 2.0")
        assert (Path(hub.model_download(handle)) / "config.json").read_text() == "{}"
    assert api.model_get(f"{USER}/bert").title == "bert"


def test_kagglehub_model_upload_without_a_licence(hub, api, tmp_path):
    """kagglehub's own integration test (test_model_upload_empty_files) uploads with no license_name on Kaggle."""
    src = tmp_path / "weights"
    src.mkdir()
    (src / "empty.json").touch()
    (src / "non_empty.json").write_bytes(b"hello")
    hub.model_upload(f"{USER}/no-licence/pyTorch/new-variation", str(src))
    assert api.model_instance_get(f"{USER}/no-licence/pytorch/new-variation").license_name == "Unknown"


def test_kagglehub_whoami_is_answered(hub, monkeypatch):
    """kagglehub checks credentials with a hand-made api.v1.DiagnosticsService/Hello (no kagglesdk binding)."""
    assert hub.whoami() == {"username": USER}
    monkeypatch.delenv("KAGGLE_USERNAME")
    monkeypatch.delenv("KAGGLE_KEY")
    with pytest.raises(hub.exceptions.UnauthenticatedError):
        hub.whoami()


def test_create_conflicts_come_back_in_the_body_like_kaggle(server, api, tmp_path):
    import requests

    ds = write_dataset(tmp_path / "ds", "twice-dataset", {"a.csv": "1"})
    api.dataset_create_new(str(ds), quiet=True)
    again = api.dataset_create_new(str(ds), quiet=True)
    assert again.error and "already in use" in again.error  # HTTP 200, error in the body
    post = lambda route, body: requests.post(f"{server.url}/api/v1/models.ModelApiService/{route}", json=body,  # noqa
                                             auth=(USER, KEY), timeout=10)
    assert post("CreateModel", {"ownerSlug": USER, "slug": "dup-model", "title": "Dup model"}).json()["ref"]
    resp = post("CreateModel", {"ownerSlug": USER, "slug": "dup-model", "title": "Dup model"})
    # Kaggle's wording: kaggle-cli's backend tests recover from a model conflict only on "already used"
    assert resp.status_code == 200 and resp.json()["errorCode"] == 409 and "already used" in resp.json()["error"]
    denied = post("CreateModel", {"ownerSlug": "bob", "slug": "bobs-model", "title": "Bobs model"})
    assert denied.status_code == 403  # permission checks stay HTTP statuses, as on Kaggle


class _RacingApi:
    """The official client, except that someone else creates the same thing just before each create call: with
    other files (``same=False``), or with exactly ours (a create that went through, then seemed to fail)."""

    def __init__(self, api, tmp_path, same=False):
        self._api, self._tmp, self._same = api, tmp_path, same

    def __getattr__(self, name):
        return getattr(self._api, name)

    def _theirs(self, folder):
        import shutil
        if self._same:
            return folder
        other = self._tmp / f"theirs-{Path(folder).name}"
        shutil.copytree(folder, other)
        for marker in other.glob("kagflow-content-*.json"):
            marker.unlink()
        (other / "theirs.txt").write_text("another uploader's file\n")
        return other

    def model_instance_create(self, folder, **kw):
        assert not self._api.model_instance_create(str(self._theirs(folder)), **kw).error  # they win the race
        return self._api.model_instance_create(folder, **kw)            # ours: HTTP 200, errorCode 409

    def dataset_create_new(self, folder, **kw):
        assert not self._api.dataset_create_new(str(self._theirs(folder)), **kw).error
        return self._api.dataset_create_new(folder, **kw)               # ours: HTTP 200, error, no code


@pytest.mark.parametrize("same", [False, True], ids=["their-files", "our-files"])
def test_gateway_turns_a_create_conflict_in_the_body_into_a_new_version(server, tmp_path, monkeypatch, same):
    from kagflow.hub import datasets
    from kagflow.hub.client import build_api
    from kagflow.hub.endpoint import Endpoint
    from kagflow.hub.gateway import Gateway
    from kagflow.project.config import load_config
    from kagflow.project.init import init_project
    from kagflow.workflow.model import publish_files

    from local_fixtures import COMPETITION

    monkeypatch.setenv("KAGFLOW_KAGGLE_ENDPOINT", server.url)
    cfg = load_config(init_project(tmp_path / "proj", username=USER, competition=COMPETITION))
    logs = []
    gw = Gateway(_RacingApi(build_api(server.url), tmp_path, same), Endpoint("local", server.url, USER),
                 log=logs.append)
    weights = tmp_path / "weights"
    weights.mkdir()
    (weights / "config.json").write_text("{}")
    published = publish_files(gw, cfg, "base_model", weights, license_name="MIT")
    pushed = datasets.push_dataset(gw, write_dataset(tmp_path / "ds", "racing-dataset", {"a.csv": "1"}))
    assert not pushed.created
    if same:  # our files are already there: no duplicate version of either
        assert published.handle.version == 1 and not published.uploaded and not pushed.uploaded
        assert len(server.store.all("SELECT * FROM dataset_versions")) == 1
    else:
        assert published.handle.version == 2 and any("uploading a new version instead" in m for m in logs)
        assert pushed.uploaded and len(server.store.all("SELECT * FROM dataset_versions")) == 2
