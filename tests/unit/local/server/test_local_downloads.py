"""Download archives and signed links never serve one resource's bytes for another: a deleted private dataset,
model or kernel output is not handed to the next user whose resource takes its place, and every read of a link
re-checks that the user it was issued to may still see what it names."""

from __future__ import annotations

import io
import json
import tarfile
import zipfile

import requests

from local_fixtures import *  # noqa: F401,F403
from local_fixtures import USER, wait_kernel, write_dataset, write_kernel


def _as(server, username):
    from kagflow.hub.client import build_api
    api = build_api(server.url)
    api.config_values.update(username=username, key=f"{username}-key")
    return api


def _private_dataset(api, folder, owner, slug, files):
    folder = write_dataset(folder, slug, files, owner=owner)
    api.dataset_create_new(str(folder), quiet=True, public=False)


def _model(api, folder, owner, slug, files):
    folder.mkdir(parents=True)
    (folder / "model-metadata.json").write_text(json.dumps(
        {"ownerSlug": owner, "slug": slug, "title": f"{slug} title", "isPrivate": True, "description": "x"}))
    api.model_create_new(str(folder))
    instance = folder / "instance"
    instance.mkdir()
    (instance / "model-instance-metadata.json").write_text(json.dumps(
        {"ownerSlug": owner, "modelSlug": slug, "instanceSlug": "lora", "framework": "transformers",
         "licenseName": "Apache 2.0"}))
    for name, text in files.items():
        (instance / name).write_text(text)
    api.model_instance_create(str(instance))


def _redirect(server, route, body, user=USER):
    """The signed download link a call answers with (302 Location), as ``user``."""
    resp = requests.post(f"{server.url}/api/v1/{route}", json=body, auth=(user, f"{user}-key"),
                         allow_redirects=False, timeout=10)
    assert resp.status_code == 302, resp.text
    return resp.headers["Location"]


def test_a_deleted_private_dataset_is_never_downloaded_as_the_next_dataset(server, api, tmp_path):
    bob = _as(server, "bob")
    _private_dataset(bob, tmp_path / "b", "bob", "bob-secret-data", {"secret.csv": "bob's secret\n"})
    bob.dataset_download_files("bob/bob-secret-data", path=str(tmp_path / "bob-down"), quiet=True)  # cache filled
    bob.dataset_delete("bob", "bob-secret-data", no_confirm=True)
    _private_dataset(api, tmp_path / "a", USER, "alice-new-data", {"mine.csv": "alice\n"})
    api.dataset_download_files(f"{USER}/alice-new-data", path=str(tmp_path / "down"), quiet=True)
    with zipfile.ZipFile(tmp_path / "down" / "alice-new-data.zip") as zf:
        assert zf.namelist() == ["mine.csv"] and zf.read("mine.csv") == b"alice\n"
    assert not list((server.data_dir / "cache").rglob("*bob-secret-data*"))
    assert not (server.data_dir / "cache" / "datasets" / "bob" / "bob-secret-data").exists()  # dropped on delete


def test_a_deleted_private_model_is_never_downloaded_as_the_next_model(server, api, tmp_path):
    bob = _as(server, "bob")
    _model(bob, tmp_path / "b", "bob", "bob-model", {"weights.txt": "bob weights"})
    bob.model_instance_version_download("bob/bob-model/transformers/lora/1", path=str(tmp_path / "bob-down"))
    bob.model_delete("bob/bob-model", no_confirm=True)
    _model(api, tmp_path / "a", USER, "alice-model", {"config.json": "{}"})
    out = api.model_instance_version_download(f"{USER}/alice-model/transformers/lora/1", path=str(tmp_path / "down"))
    with tarfile.open(out) as tf:
        assert tf.getnames() == ["config.json"]


def test_a_deleted_kernels_output_is_never_downloaded_as_the_next_kernels(server, api, tmp_path):
    bob = _as(server, "bob")
    bob.kernels_push(str(write_kernel(tmp_path / "bk", "bob-kernel", "open('secret.txt','w').write('bob')",
                                      owner="bob", is_private=True)))
    assert wait_kernel(bob, "bob/bob-kernel").status.name == "COMPLETE"
    body = {"ownerSlug": "bob", "kernelSlug": "bob-kernel"}
    route = "kernels.KernelsApiService/DownloadKernelOutput"
    assert b"secret.txt" in requests.get(_redirect(server, route, body, "bob"), timeout=10).content  # cache filled
    bob.kernels_delete("bob/bob-kernel", no_confirm=True)
    api.kernels_push(str(write_kernel(tmp_path / "ak", "alice-kernel", "open('mine.txt','w').write('a')")))
    assert wait_kernel(api, f"{USER}/alice-kernel").status.name == "COMPLETE"
    link = _redirect(server, route, {"ownerSlug": USER, "kernelSlug": "alice-kernel"})
    archive = tmp_path / "out.zip"
    archive.write_bytes(requests.get(link, timeout=10).content)
    with zipfile.ZipFile(archive) as zf:
        assert "secret.txt" not in zf.namelist() and "mine.txt" in zf.namelist()


def test_ids_are_never_reused_after_a_delete(server, api, tmp_path):
    _private_dataset(api, tmp_path / "one", USER, "first-data", {"a.csv": "1"})
    first = server.store.one("SELECT id FROM datasets WHERE slug='first-data'")["id"]
    api.dataset_delete(USER, "first-data", no_confirm=True)
    _private_dataset(api, tmp_path / "two", USER, "second-data", {"a.csv": "1"})
    assert server.store.one("SELECT id FROM datasets WHERE slug='second-data'")["id"] > first


def test_every_read_of_a_link_rechecks_access(server, api, tmp_path):
    """A link handed out while the dataset was public stops working once it is private or deleted (it is bound to
    the user it was issued to), for the archive and for one file alike."""
    bob = _as(server, "bob")
    folder = write_dataset(tmp_path / "b", "bob-open-data", {"open.csv": "x\n"}, owner="bob")
    bob.dataset_create_new(str(folder), quiet=True, public=True)
    route = "datasets.DatasetApiService/DownloadDataset"
    archive = _redirect(server, route, {"ownerSlug": "bob", "datasetSlug": "bob-open-data"})
    one_file = _redirect(server, route, {"ownerSlug": "bob", "datasetSlug": "bob-open-data", "fileName": "open.csv"})
    bobs_own = _redirect(server, route, {"ownerSlug": "bob", "datasetSlug": "bob-open-data"}, "bob")
    assert requests.get(archive, timeout=10).status_code == 200 and requests.get(one_file, timeout=10).text == "x\n"
    meta = tmp_path / "meta"
    meta.mkdir()
    bob.dataset_metadata("bob/bob-open-data", str(meta))
    data = json.loads((meta / "dataset-metadata.json").read_text())
    data["info"]["isPrivate"] = True
    (meta / "dataset-metadata.json").write_text(json.dumps(data))
    bob.dataset_metadata_update("bob/bob-open-data", str(meta))
    for link in (archive, one_file):
        resp = requests.get(link, timeout=10)
        assert resp.status_code == 404 and resp.json()["code"] == 404, resp.text
    assert requests.get(bobs_own, timeout=10).status_code == 200  # still bob's to read
    bob.dataset_delete("bob", "bob-open-data", no_confirm=True)
    assert requests.get(bobs_own, timeout=10).status_code == 404


def test_kernel_output_links_recheck_access(server, api, tmp_path):
    """bob's link to alice's public kernel output dies when she makes the kernel private."""
    folder = write_kernel(tmp_path / "k", "alice-outputs", "open('o.txt','w').write('o')", is_private=False)
    api.kernels_push(str(folder))
    assert wait_kernel(api, f"{USER}/alice-outputs").status.name == "COMPLETE"
    files = requests.post(f"{server.url}/api/v1/kernels.KernelsApiService/ListKernelSessionOutput",
                          json={"userName": USER, "kernelSlug": "alice-outputs"}, auth=("bob", "bob-key"),
                          timeout=10).json()["files"]
    link = next(f["url"] for f in files if f["fileName"] == "o.txt")
    archive = _redirect(server, "kernels.KernelsApiService/DownloadKernelOutput",
                        {"ownerSlug": USER, "kernelSlug": "alice-outputs"}, "bob")
    assert requests.get(link, timeout=10).text == "o" and requests.get(archive, timeout=10).status_code == 200
    meta = json.loads((folder / "kernel-metadata.json").read_text())
    meta["is_private"] = True
    (folder / "kernel-metadata.json").write_text(json.dumps(meta))
    api.kernels_push(str(folder))
    wait_kernel(api, f"{USER}/alice-outputs")
    for url in (link, archive):
        assert requests.get(url, timeout=10).status_code == 404


def test_an_older_data_dir_is_migrated_to_ids_never_reused(tmp_path):
    """A data dir from before AUTOINCREMENT keeps its rows, ids and added columns; a deleted highest id stays used."""
    import sqlite3

    from kagflow.local.server.store import SCHEMA, Store

    (tmp_path / "data").mkdir()
    old = sqlite3.connect(tmp_path / "data" / "kaggle.sqlite3")
    old.executescript(SCHEMA.replace("id INTEGER PRIMARY KEY AUTOINCREMENT,", "id INTEGER PRIMARY KEY,"))
    old.executemany("INSERT INTO datasets (owner, slug, is_private) VALUES (?, ?, 1)", [("bob", "one"), ("bob", "two")])
    old.execute("ALTER TABLE submissions ADD COLUMN progress TEXT DEFAULT ''")
    old.execute("INSERT INTO submissions (competition, progress) VALUES ('c', 'scoring')")
    old.commit()
    old.close()
    store = Store(tmp_path / "data")
    assert [tuple(r) for r in store.all("SELECT id, slug FROM datasets")] == [(1, "one"), (2, "two")]
    assert tuple(store.one("SELECT id, competition, progress FROM submissions")) == (1, "c", "scoring")
    store.run("DELETE FROM datasets WHERE id=2")
    assert store.run("INSERT INTO datasets (owner, slug) VALUES ('alice', 'three')") == 3
    store.close()
    assert "AUTOINCREMENT" in Store(tmp_path / "data").one("SELECT sql FROM sqlite_master WHERE name='kernels'")[0]


def test_one_file_of_a_dataset_or_model_version_is_served_alone_and_a_missing_one_is_named(server, api, tmp_path):
    """Dataset and model version downloads share one body (``api.download_version``): a named file comes back
    alone through its signed link, the whole version as its archive, and a file the version lacks is a 404 that
    names it, before any link is made."""
    _private_dataset(api, tmp_path / "d", USER, "two-files", {"a.csv": "a\n", "b.csv": "b\n"})
    _model(api, tmp_path / "m", USER, "two-file-model", {"a.txt": "weights a", "b.txt": "weights b"})
    dataset = ("datasets.DatasetApiService/DownloadDataset", {"ownerSlug": USER, "datasetSlug": "two-files"},
               "fileName", "b.csv", "b\n", ["a.csv", "b.csv"])
    model = ("models.ModelApiService/DownloadModelInstanceVersion",
             {"ownerSlug": USER, "modelSlug": "two-file-model", "framework": "MODEL_FRAMEWORK_TRANSFORMERS",
              "instanceSlug": "lora", "versionNumber": 1}, "path", "b.txt", "weights b", ["a.txt", "b.txt"])
    for route, body, key, name, text, members in (dataset, model):
        def refused(file_name, route=route, body=body, key=key):
            return requests.post(f"{server.url}/api/v1/{route}", json={**body, key: file_name},
                                 auth=(USER, f"{USER}-key"), allow_redirects=False, timeout=10)

        assert requests.get(_redirect(server, route, {**body, key: name}), timeout=10).text == text
        archive = requests.get(_redirect(server, route, body), timeout=10)
        assert archive.status_code == 200 and _archive_names(archive.content) == members
        resp = refused("missing.csv")
        assert resp.status_code == 404 and "'missing.csv' not found" in resp.json()["message"], resp.text
        resp = refused("../b.csv")
        assert resp.status_code == 400, resp.text


def _archive_names(content: bytes) -> list:
    """The member names of a downloaded archive, a dataset's zip or a model's tar.gz."""
    if zipfile.is_zipfile(io.BytesIO(content)):
        return sorted(zipfile.ZipFile(io.BytesIO(content)).namelist())
    with tarfile.open(fileobj=io.BytesIO(content)) as tf:
        return sorted(tf.getnames())
