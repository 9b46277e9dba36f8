"""Create the datasets, models and kernels of ``seed_data`` on the local server, through the official client only.

Run by ``run.py`` in the official clients' environment (``KAGGLE_API_ENVIRONMENT=LOCALHOST`` and the
endpoint shim already set): ``python seed.py WORK_DIR RESULT_JSON``. Each resource is created by its
owner (the server runs without ``--users``, so any key is accepted) with ``KaggleApi``'s own calls, as a
Kaggle user would: ``dataset_create_new``/``dataset_create_version``, ``model_create_new``,
``model_instance_create``/``model_instance_version_create``, ``kernels_push`` (then waiting for the run,
whose output is what the suites download). A refusal is recorded and seeding goes on; the result lists
each resource with ``ok`` and the error.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from pathlib import Path

import seed_data as data

KERNEL_WAIT_S = 600
FINISHED = ("COMPLETE", "ERROR", "CANCEL_ACKNOWLEDGED")


class SeedError(Exception):
    pass


def api_for(owner: str):
    """An authenticated official client for ``owner``."""
    os.environ.update(KAGGLE_USERNAME=owner, KAGGLE_KEY=data.KEY)
    from kaggle.api.kaggle_api_extended import KaggleApi

    api = KaggleApi()
    api.authenticate()
    return api


def write_files(folder: Path, files: dict) -> Path:
    shutil.rmtree(folder, ignore_errors=True)
    for name, text in files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return folder


def _title(slug: str) -> str:
    return slug.replace("-", " ").replace("_", " ").title()


def _check(response, what: str):
    error = getattr(response, "error", "") or getattr(response, "error_message", "")
    if error:
        raise SeedError(f"{what}: {error}")
    return response


def seed_dataset(work: Path, ds: data.Dataset) -> None:
    owner, slug = ds.ref.split("/")
    api = api_for(owner)
    for number, files in enumerate(ds.versions, start=1):
        folder = write_files(work / "datasets" / owner / slug, files)
        meta = {"title": _title(slug)[:50].ljust(6, "s"), "id": ds.ref, "licenses": [{"name": ds.license}]}
        (folder / "dataset-metadata.json").write_text(json.dumps(meta))
        if number == 1:
            _check(api.dataset_create_new(str(folder), public=not ds.private, quiet=True, dir_mode="zip"),
                   "dataset_create_new")
        else:
            _check(api.dataset_create_version(str(folder), f"version {number}", quiet=True, dir_mode="zip"),
                   f"dataset_create_version {number}")
        _wait(lambda: api.dataset_status(ds.ref) == "ready", f"{ds.ref} version {number} to be ready")


def seed_model(work: Path, model: data.Model) -> None:
    owner, slug = model.ref.split("/")
    api = api_for(owner)
    folder = work / "models" / owner / slug
    write_files(folder, {"model-metadata.json": json.dumps({
        "ownerSlug": owner, "slug": slug, "title": model.title, "subtitle": "", "isPrivate": model.private,
        "description": f"{model.title} (a stand-in seeded for Kaggle's public test suites)", "publishTime": "",
        "provenanceSources": ""})})
    _check(api.model_create_new(str(folder)), "model_create_new")
    for inst in model.instances:
        handle = f"{model.ref}/{inst.framework}/{inst.slug}"
        for number, files in enumerate(inst.versions, start=1):
            folder = write_files(work / "models" / owner / slug / inst.framework / inst.slug, files)
            if number == 1:
                (folder / "model-instance-metadata.json").write_text(json.dumps({
                    "ownerSlug": owner, "modelSlug": slug, "instanceSlug": inst.slug, "framework": inst.framework,
                    "overview": "", "usage": "", "licenseName": "Apache 2.0", "fineTunable": False,
                    "trainingData": [], "modelInstanceType": "Unspecified"}))
                _check(api.model_instance_create(str(folder), quiet=True, dir_mode="zip"),
                       f"model_instance_create {handle}")
            else:
                _check(api.model_instance_version_create(handle, str(folder), f"version {number}", quiet=True,
                                                         dir_mode="zip"),
                       f"model_instance_version_create {handle}")


def kernel_source(outputs: dict, kernel_type: str) -> tuple[str, str]:
    """(file name, text) of a kernel whose run writes ``outputs`` into /kaggle/working."""
    code = ("import json\nimport pathlib\n\n"
            f"FILES = json.loads({json.dumps(json.dumps(outputs))})\n"
            "for name, text in FILES.items():\n"
            "    path = pathlib.Path('/kaggle/working') / name\n"
            "    path.parent.mkdir(parents=True, exist_ok=True)\n"
            "    path.write_text(text)\n")
    if kernel_type == "script":
        return "main.py", code
    notebook = {"cells": [{"cell_type": "code", "execution_count": None, "metadata": {}, "outputs": [],
                           "source": code.splitlines(keepends=True)}],
                "metadata": {"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
                             "language_info": {"name": "python"}},
                "nbformat": 4, "nbformat_minor": 4}
    return "main.ipynb", json.dumps(notebook)


def seed_kernel(work: Path, kernel: data.Kernel) -> None:
    owner, slug = kernel.ref.split("/")
    api = api_for(owner)
    for number, outputs in enumerate(kernel.versions, start=1):
        name, text = kernel_source(outputs, kernel.kernel_type)
        folder = write_files(work / "kernels" / owner / slug, {name: text})
        (folder / "kernel-metadata.json").write_text(json.dumps({
            "id": kernel.ref, "title": _title(slug), "code_file": name, "language": "python",
            "kernel_type": kernel.kernel_type, "is_private": kernel.private, "enable_gpu": False,
            "enable_tpu": False, "enable_internet": False, "keywords": list(kernel.keywords),
            "dataset_sources": list(kernel.dataset_sources), "competition_sources": list(kernel.competition_sources),
            "kernel_sources": [], "model_sources": []}))
        pushed = _check(api.kernels_push(str(folder)), "kernels_push")
        if pushed.version_number != number:
            raise SeedError(f"kernels_push made version {pushed.version_number}, expected {number}")
        status = _wait(lambda: _finished(api, kernel.ref), f"{kernel.ref} version {number} to run", KERNEL_WAIT_S)
        if status != "COMPLETE":
            raise SeedError(f"{kernel.ref} version {number} ended {status}")


def _finished(api, ref: str):
    status = api.kernels_status(ref).status
    name = getattr(status, "name", str(status))
    return name if name in FINISHED else None


def _wait(ready, what: str, timeout_s: float = 60.0):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        result = ready()
        if result:
            return result
        time.sleep(1.0)
    raise SeedError(f"timed out after {timeout_s:.0f} s waiting for {what}")


def main(work_dir: str, result_path: str) -> int:
    work = Path(work_dir)
    steps = [("dataset", ds.ref, seed_dataset, ds) for ds in data.DATASETS]
    steps += [("model", m.ref, seed_model, m) for m in data.MODELS]
    steps += [("kernel", k.ref, seed_kernel, k) for k in data.KERNELS]
    results = []
    for kind, ref, seed, item in steps:
        os.environ["KAGFLOW_PEER_TEST"] = f"seed:{kind}:{ref}"
        started = time.monotonic()
        try:
            seed(work, item)
            results.append({"kind": kind, "ref": ref, "ok": True, "error": ""})
        except Exception as exc:  # a refusal of the server, or the client's own check: recorded, seeding goes on
            results.append({"kind": kind, "ref": ref, "ok": False, "error": f"{type(exc).__name__}: {exc}"[:2000]})
        results[-1]["seconds"] = round(time.monotonic() - started, 1)
        print(f"seed {kind} {ref}: {'ok' if results[-1]['ok'] else results[-1]['error']}", flush=True)
    Path(result_path).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
