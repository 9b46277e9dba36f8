"""kagflow against a Kaggle that is only eventually consistent: a new model, instance, dataset or kernel answers
404 for a while, a new version lists its files late (and refuses another version with 403 meanwhile), a call
now and then is a 429. Each command still succeeds and makes exactly one version. Waits are zero (papermill and
huggingface_hub style: WaitPolicy/RetryPolicy class constants); the server's windows are real, and short."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import requests

from kagflow.errors import HubError, NotFoundError
from kagflow.hub import datasets, kernels, models
from kagflow.hub.endpoint import Endpoint
from kagflow.hub.gateway import Gateway
from kagflow.hub.retry import WaitPolicy
from kagflow.local.server.api import Settings
from kagflow.rules import slugs
from kagflow.workflow.model import publish_files

from local_fixtures import *  # noqa: F401,F403
from local_fixtures import USER, write_dataset, write_kernel

WINDOW = 0.5


@pytest.fixture
def server_settings() -> Settings:
    """The eventual mode's knobs with windows of half a second, and a 429 every 7th call."""
    return Settings(not_found_s=WINDOW, dataset_processing_s=WINDOW, model_processing_s=WINDOW, rate_limit_every=7,
                    rate_limit_retry_after_s=0, daily_submissions=50)


def _count(server, table: str) -> int:
    return server.store.one(f"SELECT COUNT(*) AS n FROM {table}")["n"]


def _weights(folder: Path, payload: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps({"model_type": "gemma2"}))
    (folder / "model.safetensors").write_text(payload * 100)
    return folder


def test_publish_model_instance_version_then_kernel_push_without_duplicates(server, gw, cfg, tmp_path):
    """The base model's create is followed at once by its instance (refused with 404 until the model shows up),
    then a version (403 while the first one processes, its files listed late), then a kernel that mounts it."""
    weights = _weights(tmp_path / "base", "a")
    first = publish_files(gw, cfg, "base_model", weights, license_name="MIT")
    assert first.uploaded and first.handle.version == 1
    again = publish_files(gw, cfg, "base_model", weights, license_name="MIT")  # at once: its files are not listed yet
    assert not again.uploaded and again.handle.version == 1
    (weights / "model.safetensors").write_text("b" * 100)
    second = publish_files(gw, cfg, "base_model", weights, license_name="MIT")
    assert second.uploaded and second.handle.version == 2
    assert _count(server, "model_versions") == 2 and _count(server, "model_instances") == 1

    folder = write_kernel(tmp_path / "k", "eventual-kernel", "import os; print(sorted(os.listdir('/kaggle/input')))",
                          model_sources=[slugs.model_source(second.handle)])
    pushed = kernels.push_kernel(gw, folder)
    assert pushed.pushed and pushed.version == 1
    status = kernels.wait_kernel(gw, pushed.handle, pushed.version, timeout=120)  # no 404 for the new kernel
    assert status.status == "COMPLETE", status
    assert not kernels.push_kernel(gw, folder).pushed  # unchanged: not pushed again
    assert _count(server, "kernel_versions") == 1


def test_push_dataset_twice_at_once_makes_one_version(server, gw, tmp_path):
    folder = write_dataset(tmp_path / "wheels", "eventual-wheels", {"a.whl": "wheel\n"})
    assert datasets.push_dataset(gw, folder).created
    assert not datasets.push_dataset(gw, folder).uploaded  # the first version's files are still processing
    (folder / "b.whl").write_text("another wheel\n")
    assert datasets.push_dataset(gw, folder).uploaded  # a version while the first processes: 403, waited out
    assert _count(server, "dataset_versions") == 2


def test_a_dataset_a_stopped_command_made_seconds_ago_is_not_made_twice(server, gw, tmp_path, monkeypatch):
    """A push that created the dataset and stopped before seeing it (here: no wait at all), then a new push at
    once: the dataset still answers 404, its create says the slug is in use; the files are there: no new version."""
    folder = write_dataset(tmp_path / "wheels", "stopped-wheels", {"a.whl": "wheel\n"})
    settle = WaitPolicy.SETTLE
    monkeypatch.setattr(WaitPolicy, "SETTLE", 0.0)
    with pytest.raises(HubError):
        datasets.push_dataset(gw, folder)  # created, then gave up looking for it
    monkeypatch.setattr(WaitPolicy, "SETTLE", settle)
    again = datasets.push_dataset(gw, folder)
    assert not again.uploaded and _count(server, "dataset_versions") == 1


def _not_found() -> requests.HTTPError:
    response = requests.Response()
    response.status_code = 404
    response._content = b'{"code": 404, "message": "Model alice/m not found"}'
    return requests.HTTPError("404", response=response)


def test_settle_waits_for_a_404_within_its_bound_and_never_hides_a_lasting_one(monkeypatch):
    gw = Gateway(api=None, endpoint=Endpoint("local", "http://127.0.0.1:9", USER), log=lambda m: None)
    outcomes = [_not_found(), _not_found(), "model"]

    def fetch():
        outcome = outcomes.pop(0)
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    read = gw.read(fetch, what="get model", handle="alice/m")
    assert gw.settle(read, what="get model", handle="alice/m", ready=bool) == "model"
    monkeypatch.setattr(WaitPolicy, "SETTLE", 0.0)  # the bound: past it, the 404 is the answer
    outcomes[:] = [_not_found()]
    with pytest.raises(NotFoundError):
        gw.settle(read, what="get model", handle="alice/m", ready=bool)
    with pytest.raises(HubError, match="still not listing"):
        gw.settle(lambda: None, what="list files", handle="alice/m", ready=lambda v: v is not None,
                  waiting="not listing")


def test_a_404_of_something_kagflow_did_not_create_is_not_waited_on(gw, cfg, monkeypatch):
    """Looking for a model that does not exist answers at once (exists() is False): no settle there."""
    looks = []
    monkeypatch.setattr(Gateway, "settle", lambda self, *a, **k: looks.append(a) or pytest.fail("waited"))
    assert models.latest_version(gw, cfg.instance_handle("base_model")) is None
    assert not gw.exists(lambda: gw.api.model_get(f"{USER}/no-such-model"), what="get model", handle="x")
    assert looks == []
