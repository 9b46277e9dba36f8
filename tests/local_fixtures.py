"""Shared fixtures and builders for the local Kaggle tests (import with ``from local_fixtures import *``)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from kagflow.cli import main as kagflow_main
from kagflow.hub.client import build_api
from kagflow.local.server.api import Settings
from kagflow.local.server.competition import accept_rules, install_competition
from kagflow.local.server.httpd import start_server

USER, KEY = "alice", "alice-local-key"
COMPETITION = "llm-classification-local"
KERNELSPEC = {"name": "python3", "display_name": "Python 3", "language": "python"}


@pytest.fixture
def kaggle_env(tmp_path, monkeypatch):
    """Credentials for the official client, and no real ~/.kaggle."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("KAGGLE_USERNAME", USER)
    monkeypatch.setenv("KAGGLE_KEY", KEY)
    for var in ("KAGGLE_API_TOKEN", "KAGGLE_API_ENVIRONMENT", "KAGFLOW_KAGGLE_ENDPOINT"):
        monkeypatch.delenv(var, raising=False)
    return home


@pytest.fixture
def data_dir(tmp_path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def server_settings() -> Settings:
    """The local Kaggle's settings for `server` (a module may override this fixture)."""
    return Settings(daily_submissions=50)


@pytest.fixture
def server(data_dir, kaggle_env, server_settings):
    """A local Kaggle on 127.0.0.1:<free port> with a tiny competition installed; stopped afterwards."""
    install_competition(data_dir, COMPETITION, write_competition(data_dir.parent / "competition-files"))
    accept_rules(data_dir, COMPETITION, USER)
    srv = start_server(data_dir, settings=server_settings)
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture
def api(server):
    return build_api(server.url)


def gateway(api, server):
    """kagflow's Gateway (its one retry layer) around ``api`` for the local server."""
    from kagflow.hub.gateway import Gateway
    from kagflow.hub.target import Target

    return Gateway(api, Target("local", server.url, USER), log=lambda m: None)


def write_competition(folder: Path) -> Path:
    """train/test/sample_submission/solution CSVs in the real schema, three test rows."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "train.csv").write_text(
        "id,model_a,model_b,prompt,response_a,response_b,winner_model_a,winner_model_b,winner_tie\n"
        '10,m1,m2,"[""hi""]","[""a""]","[""b""]",1,0,0\n'
        '11,m1,m2,"[""yo""]","[""c""]","[""d""]",0,0,1\n')
    (folder / "test.csv").write_text(
        "id,prompt,response_a,response_b\n"
        '1,"[""p1""]","[""a1""]","[""b1""]"\n2,"[""p2""]","[""a2""]","[""b2""]"\n3,"[""p3""]","[""a3""]","[""b3""]"\n')
    (folder / "sample_submission.csv").write_text(
        "id,winner_model_a,winner_model_b,winner_tie\n" + "".join(f"{i},0.333,0.333,0.334\n" for i in (1, 2, 3)))
    (folder / "solution.csv").write_text(
        "id,winner_model_a,winner_model_b,winner_tie\n1,1,0,0\n2,0,1,0\n3,0,0,1\n")
    return folder


def write_hidden_test(folder: Path, rows: int) -> Path:
    """Give the competition in ``folder`` a hidden test set of ``rows`` rows (its 3 public rows first) and the
    solution for all of them: what a code submission's re-run sees in place of the public test.csv."""
    (folder / "hidden").mkdir(exist_ok=True)
    (folder / "hidden" / "test.csv").write_text("id,prompt,response_a,response_b\n" + "".join(
        f'{i},"[""p{i}""]","[""a{i}""]","[""b{i}""]"\n' for i in range(1, rows + 1)))
    (folder / "hidden" / "sample_submission.csv").write_text(
        "id,winner_model_a,winner_model_b,winner_tie\n" + "".join(f"{i},0.333,0.333,0.334\n" for i in range(1, rows + 1)))
    onehot = ("1,0,0", "0,1,0", "0,0,1")
    (folder / "solution.csv").write_text("id,winner_model_a,winner_model_b,winner_tie\n" + "".join(
        f"{i},{onehot[(i - 1) % 3]}\n" for i in range(1, rows + 1)))
    return folder


def write_notebook(path: Path, *cells: str) -> Path:
    nb = new_notebook(cells=[new_code_cell(c) for c in cells])
    nb.metadata["kernelspec"] = KERNELSPEC
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, str(path))
    return path


def write_kernel(folder: Path, slug: str, *cells: str, owner: str = USER, **meta) -> Path:
    """A push folder: kernel-metadata.json + notebook.ipynb (internet off unless ``enable_internet``)."""
    folder.mkdir(parents=True, exist_ok=True)
    write_notebook(folder / "notebook.ipynb", *cells)
    data = {"id": f"{owner}/{slug}", "title": slug.replace("-", " ").title(), "code_file": "notebook.ipynb",
            "language": "python", "kernel_type": "notebook", "is_private": True, "enable_gpu": False,
            "enable_tpu": False, "enable_internet": False, "dataset_sources": [], "competition_sources": [],
            "kernel_sources": [], "model_sources": []}
    data.update(meta)
    (folder / "kernel-metadata.json").write_text(json.dumps(data))
    return folder


def write_dataset(folder: Path, slug: str, files: dict, owner: str = USER) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        (folder / name).write_bytes(content if isinstance(content, bytes) else content.encode())
    (folder / "dataset-metadata.json").write_text(json.dumps(
        {"id": f"{owner}/{slug}", "title": slug.replace("-", " ").title(), "licenses": [{"name": "CC0-1.0"}]}))
    return folder


def write_model_folders(root: Path, slug: str = "tiny-gemma") -> Path:
    """``model/`` (model-metadata.json), ``instance/`` (instance lora, adapter_config.json r16) and ``v2/``
    (adapter_config.json r8) under ``root``: a model, its instance and a second version, for the official client."""
    (root / "model").mkdir(parents=True)
    (root / "model" / "model-metadata.json").write_text(json.dumps(
        {"ownerSlug": USER, "slug": slug, "title": slug.replace("-", " ").capitalize(), "isPrivate": True,
         "description": "a test model"}))
    (root / "instance").mkdir()
    (root / "instance" / "model-instance-metadata.json").write_text(json.dumps(
        {"ownerSlug": USER, "modelSlug": slug, "instanceSlug": "lora", "framework": "transformers",
         "licenseName": "Apache 2.0"}))
    (root / "instance" / "adapter_config.json").write_text('{"r": 16}')
    (root / "v2").mkdir()
    (root / "v2" / "adapter_config.json").write_text('{"r": 8}')
    return root


def wait_kernel(api, ref: str, timeout: float = 60.0):
    """Poll ``kernels_status`` until the run leaves QUEUED/RUNNING; return the final response."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = api.kernels_status(ref)
        if status.status.name not in ("QUEUED", "RUNNING", "CANCEL_REQUESTED"):
            return status
        time.sleep(0.2)
    raise AssertionError(f"{ref} still running after {timeout}s")


def wait_submission(api, competition: str, ref: int, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for sub in api.competition_submissions(competition) or []:
            if sub.ref == ref and sub.status.name != "PENDING":
                return sub
        time.sleep(0.2)
    raise AssertionError(f"submission {ref} still pending after {timeout}s")


def snapshot(folder: Path) -> dict:
    """``{relative path: size}`` of every file under ``folder`` (sqlite journals excluded)."""
    out = {}
    for dirpath, _, files in os.walk(folder):
        for name in files:
            if "sqlite3" in name:
                continue
            p = Path(dirpath) / name
            out[str(p.relative_to(folder))] = p.stat().st_size if not p.is_symlink() else -1
    return out


__all__ = ["USER", "KEY", "COMPETITION", "kaggle_env", "data_dir", "server_settings", "server", "api", "gateway", "write_competition",
           "write_hidden_test", "write_notebook", "write_kernel", "write_dataset", "write_model_folders", "wait_kernel", "wait_submission", "snapshot"]


def run_kagflow(capsys, *args) -> tuple[int, str, str]:
    """``kagflow ARGS`` in this process: (exit code, stdout, stderr)."""
    try:
        kagflow_main(list(args))
        code = 0
    except SystemExit as e:
        code = e.code or 0
    out = capsys.readouterr()
    return code, out.out, out.err
