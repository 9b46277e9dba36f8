"""The official CLI's commands this workflow's users call, against the local Kaggle: each works, or refuses
the way Kaggle does (never a 5xx that the client prints as "a problem on Kaggle's side")."""

from __future__ import annotations

import json
import time

import pytest
from requests.exceptions import HTTPError

from kagflow.hub.client import EndpointKaggleApi
from kagflow.hub.official_cli import run_official_cli

from local_fixtures import *  # noqa: F401,F403
from local_fixtures import COMPETITION, USER, wait_kernel, write_dataset, write_kernel
from repo_root import REPO


def kaggle(server, *args):
    result = run_official_cli(EndpointKaggleApi(server.url), list(args), capture=True)
    assert "Kaggle's side" not in result.stdout + result.stderr, result
    return result


def test_datasets_download_metadata_update_delete(server, api, tmp_path):
    api.dataset_create_new(str(write_dataset(tmp_path / "ds", "meta-dataset", {"a.csv": "x\n1\n"})), quiet=True)
    got = kaggle(server, "datasets", "download", "-d", f"{USER}/meta-dataset", "-p", str(tmp_path / "dl"), "--unzip")
    assert got.exit_code == 0 and (tmp_path / "dl" / "a.csv").read_text() == "x\n1\n", got
    assert "CC0-1.0" in got.stdout  # the license comes from GetDatasetMetadata
    meta_dir = tmp_path / "meta"
    assert kaggle(server, "datasets", "metadata", f"{USER}/meta-dataset", "-p", str(meta_dir)).exit_code == 0
    meta = json.loads((meta_dir / "dataset-metadata.json").read_text())  # the client writes {"info": {...}}
    assert meta["info"]["title"] == "Meta Dataset" and meta["info"]["ownerUser"] == USER
    meta["info"]["title"] = "A better title"
    (meta_dir / "dataset-metadata.json").write_text(json.dumps(meta))
    updated = kaggle(server, "datasets", "metadata", f"{USER}/meta-dataset", "-p", str(meta_dir), "--update")
    assert updated.exit_code == 0
    assert api.dataset_list(user=USER)[0].title == "A better title"
    assert api.dataset_delete(USER, "meta-dataset", no_confirm=True)
    assert api.dataset_list(user=USER) == []


def test_models_instances_list_update_and_deletes(server, api, tmp_path):
    model = tmp_path / "model"
    model.mkdir()
    (model / "model-metadata.json").write_text(json.dumps(
        {"ownerSlug": USER, "slug": "cmd-model", "title": "Cmd model", "isPrivate": True, "description": "d"}))
    api.model_create_new(str(model))
    inst = tmp_path / "inst"
    inst.mkdir()
    (inst / "model-instance-metadata.json").write_text(json.dumps(
        {"ownerSlug": USER, "modelSlug": "cmd-model", "instanceSlug": "lora", "framework": "transformers",
         "licenseName": "Apache 2.0", "overview": "first"}))
    (inst / "w.txt").write_text("1")
    api.model_instance_create(str(inst))
    api.model_instance_version_create(f"{USER}/cmd-model/transformers/lora", str(inst))
    listed = kaggle(server, "models", "instances", "list", f"{USER}/cmd-model", "--csv")
    assert listed.exit_code == 0 and listed.stdout.splitlines()[1].startswith("2,"), listed
    assert [i.slug for i in api.model_instances_list(f"{USER}/cmd-model").instances] == ["lora"]
    meta = json.loads((model / "model-metadata.json").read_text())
    meta["title"] = "Renamed model"
    (model / "model-metadata.json").write_text(json.dumps(meta))
    assert not api.model_update(str(model)).error
    assert api.model_get(f"{USER}/cmd-model").title == "Renamed model"
    imeta = json.loads((inst / "model-instance-metadata.json").read_text())
    imeta["overview"] = "second"
    (inst / "model-instance-metadata.json").write_text(json.dumps(imeta))
    assert not api.model_instance_update(str(inst)).error
    assert api.model_instance_get(f"{USER}/cmd-model/transformers/lora").overview == "second"
    assert not api.model_instance_version_delete(f"{USER}/cmd-model/transformers/lora/2", no_confirm=True).error
    versions = api.model_instance_versions_list(f"{USER}/cmd-model/transformers/lora").version_list.versions
    assert [v.version_number for v in versions] == [1]
    assert not api.model_instance_delete(f"{USER}/cmd-model/transformers/lora", no_confirm=True).error
    assert not api.model_delete(f"{USER}/cmd-model", no_confirm=True).error
    assert kaggle(server, "models", "get", f"{USER}/cmd-model", "-p", str(tmp_path / "g")).exit_code == 1


def test_kernels_list_filters_files_delete(server, api, tmp_path):
    bob = EndpointKaggleApi(server.url)
    bob.authenticate()
    bob.config_values.update(username="bob", key="bob-key")
    api.dataset_create_new(str(write_dataset(tmp_path / "ds", "listed-data", {"a.csv": "1"})), quiet=True, public=True)
    api.kernels_push(str(write_kernel(tmp_path / "a1", "alice-comp", "print(1)", is_private=False,
                                      competition_sources=[COMPETITION])))
    api.kernels_push(str(write_kernel(tmp_path / "a2", "alice-data", "print(2)", is_private=False,
                                      dataset_sources=[f"{USER}/listed-data"])))
    bob.kernels_push(str(write_kernel(tmp_path / "b1", "bob-public", "print(3)", owner="bob", is_private=False)))
    for ref in (f"{USER}/alice-comp", f"{USER}/alice-data", "bob/bob-public"):
        wait_kernel(api, ref)

    def refs(*args):
        result = kaggle(server, "kernels", "list", "--csv", *args)
        assert result.exit_code == 0, result
        return sorted(line.split(",")[0] for line in result.stdout.splitlines()[1:] if line)

    assert refs() == [f"{USER}/alice-comp", f"{USER}/alice-data", "bob/bob-public"]
    assert refs("-m") == [f"{USER}/alice-comp", f"{USER}/alice-data"]
    assert refs("--user", "bob") == ["bob/bob-public"]
    assert refs("--competition", COMPETITION) == [f"{USER}/alice-comp"]
    assert refs("--dataset", f"{USER}/listed-data") == [f"{USER}/alice-data"]
    files = kaggle(server, "kernels", "files", f"{USER}/alice-comp")
    assert files.exit_code == 0 and "alice-comp.ipynb" in files.stdout, files
    assert kaggle(server, "kernels", "delete", f"{USER}/alice-comp", "--yes").exit_code == 0
    assert refs("-m") == [f"{USER}/alice-data"]
    assert not (server.data_dir / "runs" / USER / "alice-comp").exists()


def test_quota_counts_accelerator_runs_per_user(server, api, tmp_path):
    from kagflow.local.server import quota

    before = kaggle(server, "quota")
    assert before.exit_code == 0 and "30.00h" in before.stdout, before
    api.kernels_push(str(write_kernel(tmp_path / "g", "gpu-kernel", "import time; time.sleep(1)", enable_gpu=True)))
    api.kernels_push(str(write_kernel(tmp_path / "c", "cpu-kernel", "import time; time.sleep(1)")))
    wait_kernel(api, f"{USER}/gpu-kernel")
    wait_kernel(api, f"{USER}/cpu-kernel")
    gpu = quota.used_seconds(server.store, USER, "gpu")
    assert gpu >= 1 and quota.used_seconds(server.store, "bob", "gpu") == 0
    stats = api.quota_view()
    assert stats.gpu_quota.time_used.total_seconds() == round(gpu)
    assert stats.gpu_quota.total_time_allowed.total_seconds() == 30 * 3600
    server.settings.gpu_quota_s = 1  # used up: a GPU push is refused in the body, a CPU push is not
    refused = api.kernels_push(str(write_kernel(tmp_path / "g2", "gpu-kernel-two", "print(1)", enable_gpu=True)))
    assert "weekly GPU quota" in refused.error
    assert not api.kernels_push(str(write_kernel(tmp_path / "c2", "cpu-kernel-two", "print(1)"))).error


def test_week_starts_on_saturday():
    from datetime import datetime, timezone

    from kagflow.local.server import quota
    monday = datetime(2026, 11, 30, 12, tzinfo=timezone.utc).timestamp()
    saturday = datetime(2026, 11, 28, tzinfo=timezone.utc)
    assert datetime.fromtimestamp(quota.week_start(monday), tz=timezone.utc) == saturday
    saturday = datetime(2026, 11, 28, 0, 0, 1, tzinfo=timezone.utc).timestamp()
    assert quota.week_start(saturday) == datetime(2026, 11, 28, tzinfo=timezone.utc).timestamp()
    assert time.time() - quota.week_start(time.time()) < quota.WEEK_S


def test_unsupported_calls_say_so(server, tmp_path):
    result = kaggle(server, "forums")  # forums and topics are outside the workflow: 405, said so
    assert result.exit_code == 1 and "The local Kaggle does not support" in result.stderr, result


def test_folders_uploaded_as_zip_or_tar_are_unpacked(server, api, tmp_path):
    """`kaggle datasets create -r zip|tar`: Kaggle unpacks each folder archive back into the folder, in
    listings, downloads and kernel inputs."""
    import zipfile
    for mode in ("zip", "tar"):
        folder = write_dataset(tmp_path / mode, f"folders-{mode}", {"top.csv": "t\n"})
        (folder / "sub" / "deep").mkdir(parents=True)
        (folder / "sub" / "a.csv").write_text("a\n")
        (folder / "sub" / "deep" / "b.csv").write_text("b\n")
        result = kaggle(server, "datasets", "create", "-p", str(folder), "-r", mode)
        assert result.exit_code == 0, result
        names = sorted(f.name for f in api.dataset_list_files(f"{USER}/folders-{mode}").files)
        assert names == ["sub/a.csv", "sub/deep/b.csv", "top.csv"]
    api.dataset_download_files(f"{USER}/folders-zip", path=str(tmp_path / "dl"))
    with zipfile.ZipFile(tmp_path / "dl" / "folders-zip.zip") as zf:
        assert zf.read("sub/deep/b.csv") == b"b\n"
    api.kernels_push(str(write_kernel(
        tmp_path / "k", "reads-folders",
        "import os; print(open(os.path.join(os.environ['KAGFLOW_INPUT_ROOT'], 'folders-tar/sub/deep/b.csv')).read())",
        dataset_sources=[f"{USER}/folders-tar"])))
    assert wait_kernel(api, f"{USER}/reads-folders").status.name == "COMPLETE"


def test_hostile_archives_are_refused(server, api, tmp_path):
    import io
    import tarfile
    folder = write_dataset(tmp_path / "evil", "evil-archive", {})
    with tarfile.open(folder / "x.tar", "w") as tf:
        info = tarfile.TarInfo("../../escape.txt")
        info.size = 1
        tf.addfile(info, io.BytesIO(b"x"))
    with pytest.raises(HTTPError) as err:
        api.dataset_create_new(str(folder), quiet=True)
    assert err.value.response.status_code == 400 and "x.tar" in str(err.value)
    assert api.dataset_list(user=USER) == []
    assert not (server.data_dir.parent / "escape.txt").exists() and not (tmp_path / "escape.txt").exists()


def test_docs_list_every_implemented_call():
    """docs/local-kaggle.md names each call the server implements (the table must stay current)."""
    import kagflow.local.server.httpd  # noqa: F401 - registers the handlers
    from kagflow.local.server.api import HANDLERS

    text = (REPO / "docs" / "local-kaggle.md").read_text()
    missing = [route for route in HANDLERS if route.split("/")[1] not in text]
    assert not missing, missing
