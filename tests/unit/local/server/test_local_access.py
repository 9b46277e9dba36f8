"""Authorization like Kaggle's: another user's private dataset, model or kernel output is neither visible
nor mountable; SaveKernel reports it in invalid_*_sources and `kagflow kernel push` fails naming it."""

from __future__ import annotations

import json

import pytest
from requests.exceptions import HTTPError

from kagflow.errors import HubError
from kagflow.hub import kernels
from kagflow.hub.client import build_api
from kagflow.hub.endpoint import Endpoint
from kagflow.hub.gateway import Gateway

from local_fixtures import *  # noqa: F401,F403
from local_fixtures import COMPETITION, USER, wait_kernel, write_dataset, write_kernel

LISTING = "import os; root = os.environ['KAGFLOW_INPUT_ROOT']; print(sorted(os.listdir(root)))"


def _as(server, username):
    api = build_api(server.url)
    api.config_values.update(username=username, key=f"{username}-key")
    return api


def _bobs_private_things(server, tmp_path):
    bob = _as(server, "bob")
    for slug, private in (("bob-secret-data", True), ("bob-open-data", False)):
        folder = write_dataset(tmp_path / slug, slug, {"secret.csv": "x\n1\n"}, owner="bob")
        meta = json.loads((folder / "dataset-metadata.json").read_text())
        meta["isPrivate"] = private
        (folder / "dataset-metadata.json").write_text(json.dumps(meta))
        bob.dataset_create_new(str(folder), quiet=True, public=not private)
    model = tmp_path / "model"
    model.mkdir()
    (model / "model-metadata.json").write_text(json.dumps(
        {"ownerSlug": "bob", "slug": "bob-model", "title": "Bob model", "isPrivate": True, "description": "x"}))
    bob.model_create_new(str(model))
    instance = tmp_path / "instance"
    instance.mkdir()
    (instance / "model-instance-metadata.json").write_text(json.dumps(
        {"ownerSlug": "bob", "modelSlug": "bob-model", "instanceSlug": "lora", "framework": "transformers",
         "licenseName": "Apache 2.0"}))
    (instance / "weights.txt").write_text("w")
    bob.model_instance_create(str(instance))
    bob.kernels_push(str(write_kernel(tmp_path / "bk", "bob-kernel", "open('out.txt','w').write('b')",
                                      owner="bob", is_private=True)))
    wait_kernel(bob, "bob/bob-kernel")
    return bob


def test_private_sources_of_another_user_are_refused_and_not_mounted(api, server, tmp_path):
    _bobs_private_things(server, tmp_path)
    with pytest.raises(HTTPError) as err:
        api.dataset_list_files("bob/bob-secret-data")
    assert err.value.response.status_code == 404
    mine = write_dataset(tmp_path / "mine", "alice-private", {"a.csv": "1"})
    api.dataset_create_new(str(mine), quiet=True)  # private by default
    folder = write_kernel(tmp_path / "ak", "alice-reader", LISTING,
                          dataset_sources=["bob/bob-secret-data", "bob/bob-open-data", f"{USER}/alice-private",
                                           "bob/no-such-data"],
                          model_sources=["bob/bob-model/transformers/lora/1"],
                          kernel_sources=["bob/bob-kernel"], competition_sources=[COMPETITION, "no-such-comp"])
    response = api.kernels_push(str(folder))
    assert response.invalid_dataset_sources == ["bob/bob-secret-data", "bob/no-such-data"]
    assert response.invalid_model_sources == ["bob/bob-model/transformers/lora/1"]
    assert response.invalid_kernel_sources == ["bob/bob-kernel"]
    assert response.invalid_competition_sources == ["no-such-comp"]
    assert wait_kernel(api, f"{USER}/alice-reader").status.name == "COMPLETE"
    log = api.kernels_output(f"{USER}/alice-reader", str(tmp_path / "out"), quiet=True)
    text = (tmp_path / "out" / "alice-reader.log").read_text()
    assert "bob-open-data" in text and "alice-private" in text and COMPETITION in text
    assert "bob-secret-data" not in text and "bob-model" not in text and "bob-kernel" not in text, log
    metadata = api.kernels_pull(f"{USER}/alice-reader", str(tmp_path / "pulled"), metadata=True)
    meta = json.loads((tmp_path / "pulled" / "kernel-metadata.json").read_text())
    assert meta["dataset_sources"] == ["bob/bob-open-data", f"{USER}/alice-private"], metadata


def test_a_source_made_private_after_the_push_is_not_mounted(api, server, tmp_path):
    """Checked again at run time: bob's kernel may not mount alice's dataset once it is private to her."""
    public = write_dataset(tmp_path / "pub", "alice-shared", {"a.csv": "1"})
    api.dataset_create_new(str(public), quiet=True, public=True)
    server.store.run("UPDATE datasets SET is_private=1 WHERE slug='alice-shared'")
    bob = _as(server, "bob")
    folder = write_kernel(tmp_path / "bk", "bob-reader", LISTING, owner="bob", dataset_sources=[f"{USER}/alice-shared"])
    assert bob.kernels_push(str(folder)).invalid_dataset_sources == [f"{USER}/alice-shared"]
    settings = json.loads(server.store.one("SELECT settings FROM kernel_versions v JOIN kernels k ON "
                                           "k.id = v.kernel_id WHERE k.slug='bob-reader'")["settings"])
    settings["dataset_sources"] = [f"{USER}/alice-shared"]  # as if saved while it was public
    server.jobs.mount_sources(tmp_path / "input", settings, "bob")
    assert not (tmp_path / "input" / "alice-shared").exists()
    server.jobs.mount_sources(tmp_path / "input2", settings, USER)
    assert (tmp_path / "input2" / "alice-shared" / "a.csv").read_text() == "1"


def test_kagflow_kernel_push_fails_naming_each_refused_source(api, server, tmp_path):
    _bobs_private_things(server, tmp_path)
    gw = Gateway(build_api(server.url), Endpoint("local", server.url, USER), log=lambda m: None)
    folder = write_kernel(tmp_path / "ak", "alice-pusher", "print(1)",
                          dataset_sources=["bob/bob-secret-data"], model_sources=["bob/bob-model/transformers/lora/1"])
    with pytest.raises(HubError) as err:
        kernels.push_kernel(gw, folder)
    text = str(err.value)
    assert "dataset bob/bob-secret-data" in text and "model bob/bob-model/transformers/lora/1" in text
    assert "private to another user" in text and "push again" in err.value.hint
    # once bob makes the dataset public (and the model source is dropped), the same content is pushed again
    server.store.run("UPDATE datasets SET is_private=0 WHERE slug='bob-secret-data'")
    meta = json.loads((folder / "kernel-metadata.json").read_text())
    meta["model_sources"] = []
    (folder / "kernel-metadata.json").write_text(json.dumps(meta))
    again = kernels.push_kernel(gw, folder)
    assert again.pushed and again.version == 2
    assert not kernels.push_kernel(gw, folder).pushed


def test_official_cli_prints_the_refused_sources(server, tmp_path):
    from kagflow.hub.client import EndpointKaggleApi
    from kagflow.hub.official_cli import run_official_cli

    folder = write_kernel(tmp_path / "ak", "alice-cli-push", "print(1)", dataset_sources=["bob/nothing-here"])
    result = run_official_cli(EndpointKaggleApi(server.url), ["kernels", "push", "-p", str(folder)], capture=True)
    assert result.exit_code == 0
    assert "not valid dataset sources" in result.stdout and "bob/nothing-here" in result.stdout


def test_a_pinned_dataset_version_is_mounted_not_the_latest(api, server, tmp_path):
    """`owner/slug/N` in dataset_sources (how kagflow pins the wheels dataset) mounts version N at the same path;
    a version that does not exist is an invalid source."""
    folder = write_dataset(tmp_path / "pinned", "alice-pinned", {"a.csv": "one"})
    api.dataset_create_new(str(folder), quiet=True)
    (folder / "a.csv").write_text("two")
    api.dataset_create_version(str(folder), "v2", quiet=True)
    kernel = write_kernel(tmp_path / "pk", "pinned-reader", "print(1)",
                          dataset_sources=[f"{USER}/alice-pinned/1", f"{USER}/alice-pinned/9"])
    assert api.kernels_push(str(kernel)).invalid_dataset_sources == [f"{USER}/alice-pinned/9"]
    for source, text in ((f"{USER}/alice-pinned/1", "one"), (f"{USER}/alice-pinned", "two")):
        root = tmp_path / f"input-{text}"
        server.jobs.mount_sources(root, {"dataset_sources": [source]}, USER)
        assert (root / "alice-pinned" / "a.csv").read_text() == text
