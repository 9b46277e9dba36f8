"""State: survives a restart, versions number like Kaggle's, processing versions refuse a successor."""

from __future__ import annotations

import json
import time

import pytest
from requests.exceptions import HTTPError

from kagflow.hub.client import build_api
from kagflow.local.server.api import Settings
from kagflow.local.server.httpd import start_server

from local_fixtures import *  # noqa: F401,F403
from local_fixtures import COMPETITION, USER, wait_kernel, wait_submission, write_dataset, write_kernel


def test_restart_loses_nothing(server, data_dir, kaggle_env, tmp_path):
    api = build_api(server.url)
    ds = write_dataset(tmp_path / "ds", "kept-dataset", {"a.csv": "1\n"})
    api.dataset_create_new(str(ds), quiet=True)
    kernel = write_kernel(tmp_path / "k", "kept-kernel",
                          "open('submission.csv','w').write('id,winner_model_a,winner_model_b,winner_tie\\n'"
                          " + ''.join(f'{i},0.6,0.2,0.2\\n' for i in (1,2,3)))", competition_sources=[COMPETITION])
    api.kernels_push(str(kernel))
    wait_kernel(api, f"{USER}/kept-kernel")
    sub = api.competition_submit_code("submission.csv", "before restart", COMPETITION, f"{USER}/kept-kernel", 1,
                                      quiet=True)
    score = wait_submission(api, COMPETITION, sub.ref).public_score
    server.stop()

    with start_server(data_dir) as again:
        api = build_api(again.url)
        assert api.dataset_status(f"{USER}/kept-dataset") == "ready"
        (ds / "a.csv").write_text("2\n")
        api.dataset_create_version(str(ds), "after restart", quiet=True)
        assert json.loads(api.dataset_status(f"{USER}/kept-dataset", format="json"))["current_version_number"] == 2
        assert api.kernels_status(f"{USER}/kept-kernel").status.name == "COMPLETE"
        files, _ = api.kernels_output(f"{USER}/kept-kernel", str(tmp_path / "out"))
        assert (tmp_path / "out" / "submission.csv").exists()
        [kept] = api.competition_submissions(COMPETITION)
        assert kept.public_score == score and kept.description == "before restart"
        assert api.kernels_push(str(kernel)).version_number == 2
        assert wait_kernel(api, f"{USER}/kept-kernel").status.name == "COMPLETE"


def test_work_interrupted_by_a_stop_is_recovered(data_dir, kaggle_env, tmp_path):
    """A run cut by a stop ends in ERROR; the version queued behind it (one worker) runs after the restart."""
    srv = start_server(data_dir, settings=Settings(kernel_workers=1))
    api = build_api(srv.url)
    slow = write_kernel(tmp_path / "slow", "slow-kernel", "import time; time.sleep(30)")
    api.kernels_push(str(slow))
    api.kernels_push(str(write_kernel(tmp_path / "next", "next-kernel", "print('ran after restart')")))
    for _ in range(100):
        if api.kernels_status(f"{USER}/slow-kernel").status.name == "RUNNING":
            break
        time.sleep(0.1)
    srv.stop()
    with start_server(data_dir) as again:
        api = build_api(again.url)
        interrupted = api.kernels_status(f"{USER}/slow-kernel")
        assert interrupted.status.name == "ERROR" and "stopped" in interrupted.failure_message
        assert wait_kernel(api, f"{USER}/next-kernel").status.name == "COMPLETE"


def test_new_version_while_processing_is_refused(data_dir, kaggle_env, tmp_path):
    with start_server(data_dir, settings=Settings(dataset_processing_s=30, model_processing_s=30)) as srv:
        api = build_api(srv.url)
        ds = write_dataset(tmp_path / "ds", "slow-process", {"a.csv": "1\n"})
        api.dataset_create_new(str(ds), quiet=True)
        assert api.dataset_status(f"{USER}/slow-process") == "blobs_received"
        with pytest.raises(HTTPError) as refused:
            api.dataset_create_version(str(ds), "too soon", quiet=True)
        assert refused.value.response.status_code == 403
        assert "still processing" in refused.value.response.json()["message"]

        (tmp_path / "m").mkdir()
        (tmp_path / "m" / "model-metadata.json").write_text(json.dumps(
            {"ownerSlug": USER, "slug": "slow-model", "title": "Slow model", "isPrivate": True, "description": "d"}))
        (tmp_path / "m" / "model-instance-metadata.json").write_text(json.dumps(
            {"ownerSlug": USER, "modelSlug": "slow-model", "instanceSlug": "base", "framework": "pyTorch",
             "licenseName": "MIT"}))
        (tmp_path / "m" / "w.bin").write_bytes(b"\0" * 10)
        api.model_create_new(str(tmp_path / "m"))
        api.model_instance_create(str(tmp_path / "m"), quiet=True)
        with pytest.raises(HTTPError) as refused:
            api.model_instance_version_create(f"{USER}/slow-model/pytorch/base", str(tmp_path / "m"), quiet=True)
        assert refused.value.response.status_code == 403


def test_kernel_versions_count_up_and_pull_by_version(server, api, tmp_path):
    folder = write_kernel(tmp_path / "k", "versioned-kernel", "print(1)")
    assert api.kernels_push(str(folder)).version_number == 1
    write_kernel(tmp_path / "k", "versioned-kernel", "print(2)")
    assert api.kernels_push(str(folder)).version_number == 2
    wait_kernel(api, f"{USER}/versioned-kernel")
    wait_kernel(api, f"{USER}/versioned-kernel/1")  # the two versions run at the same time, as on Kaggle
    first = api.kernels_pull(f"{USER}/versioned-kernel/1", str(tmp_path / "v1"))
    assert "print(1)" in open(first).read()
    assert api.kernels_status(f"{USER}/versioned-kernel/1").status.name == "COMPLETE"
