"""`kagflow kernel run NAME --local`: execute a rendered notebook here, in Kaggle's folder layout.

Inputs are linked into ``input/`` under both of Kaggle's layouts (classic ``<slug>/`` and the
newer ``datasets/``, ``models/``, ``competitions/`` trees); ``working/`` is the notebook's cwd
and becomes ``kernels/<slug>/output/local-<N>/``.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from kagflow import slugs
from kagflow.config import Config
from kagflow.errors import MissingFileError
from kagflow.kernels import kernel_dir, render_kernel
from kagflow.state import ProjectState


@dataclass(frozen=True)
class LocalRun:
    status: str  # COMPLETE | ERROR
    output: Path
    log: Path
    failure: str = ""


def _link(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    if dst.exists() or dst.is_symlink():
        return
    os.symlink(Path(src).resolve(), dst, target_is_directory=Path(src).is_dir())


def mount_model(input_root: Path, source: str, files: Path) -> None:
    """Mount a model version at both Kaggle layouts."""
    h = slugs.ModelInstanceVersionHandle.parse(source)
    _link(files, input_root / h.model / h.framework / h.instance / str(h.version))
    _link(files, input_root / "models" / h.owner / h.model / h.framework / h.instance / str(h.version))


def mount_dataset(input_root: Path, handle: str, files: Path) -> None:
    h = slugs.DatasetHandle.parse(handle)
    _link(files, input_root / h.slug)
    _link(files, input_root / "datasets" / h.owner / h.slug)


def mount_competition(input_root: Path, slug: str, files: Path) -> None:
    """Only the public files: the hidden solution never enters a sandbox."""
    for layout in (input_root / slug, input_root / "competitions" / slug):
        layout.mkdir(parents=True, exist_ok=True)
        for name in ("train.csv", "test.csv", "sample_submission.csv"):
            if (files / name).is_file():
                _link(files / name, layout / name)


def next_output_dir(folder: Path) -> Path:
    base = folder / "output"
    base.mkdir(parents=True, exist_ok=True)
    n = 1 + max([int(p.name.split("-")[1]) for p in base.glob("local-*") if p.name.split("-")[1].isdigit()] or [0])
    return base / f"local-{n}"


def run_local(config: Config, name: str, *, timeout: Optional[int] = None,
              overrides: Optional[dict] = None) -> LocalRun:
    from kagflow import notebooks
    from kagflow.wheelset import wheels_dir
    from kagflow.standin import competition_files_dir, ensure_stand_in, ensure_synthetic_competition

    import dataclasses

    kernel = config.kernel(name)
    tiny = not config.base_model.local_dir
    state = ProjectState.for_target(config.root, "local")
    # a local run needs no published model: unpublished ones are mounted as version 1
    config = dataclasses.replace(config, **{
        which: dataclasses.replace(getattr(config, which), version=max(getattr(config, which).version, 1))
        for which in ("base_model", "adapter_model")})
    rendered = render_kernel(config, name, tiny=tiny, overrides=overrides)
    folder = kernel_dir(config, name)
    output = next_output_dir(folder)
    sandbox = Path(tempfile.mkdtemp(prefix="kagflow-run-"))
    input_root, working = sandbox / "input", sandbox / "working"
    input_root.mkdir()
    working.mkdir()
    try:
        from kagflow.sources import instance_handle

        base_files = ensure_stand_in(config) if tiny else (config.root / config.base_model.local_dir)
        base_ref = f"{instance_handle(config, config.base_model)}/{config.base_model.version}"
        mount_model(input_root, base_ref, base_files)
        if kernel.kind == "infer":
            trained = state.kernel("train").output
            if not trained:
                raise MissingFileError("no trained adapter to run inference with",
                                       hint="run `kagflow kernel run train --local` first")
            adapter_ref = f"{instance_handle(config, config.adapter_model)}/{config.adapter_model.version}"
            adapters = sorted(Path(trained).rglob("adapter_config.json"))
            if not adapters:
                raise MissingFileError(f"no adapter (adapter_config.json) in {trained}",
                                       hint="run `kagflow kernel run train --local` again")
            mount_model(input_root, adapter_ref, adapters[0].parent)
        comp = competition_files_dir(config)
        if not (comp / "test.csv").is_file():
            comp = ensure_synthetic_competition(config)
        mount_competition(input_root, config.project.competition, comp)
        wheels = wheels_dir(config)
        if wheels.is_dir() and rendered.metadata["dataset_sources"]:
            mount_dataset(input_root, rendered.metadata["dataset_sources"][0], wheels)
        status, failure = "COMPLETE", ""
        try:
            from kagflow.local.runner import KERNEL_THREADS

            notebooks.execute_notebook(rendered.notebook, input_root=input_root, working_root=working,
                                       timeout=timeout or kernel.timeout,
                                       env={k: v for k, v in KERNEL_THREADS.items() if k not in os.environ})
        except Exception as exc:  # noqa: BLE001 - the run's failure is reported, not raised
            status, failure = "ERROR", "".join(traceback.format_exception_only(type(exc), exc)).strip()
        shutil.copytree(working, output, symlinks=False)
        log = output / f"{rendered.handle.slug}.log"
        executed = folder / (rendered.notebook.stem + ".executed.ipynb")
        if executed.is_file():
            shutil.copy2(executed, output / executed.name)
        log.write_text(_notebook_log(output / executed.name if executed.is_file() else None, failure),
                       encoding="utf-8")
    finally:
        shutil.rmtree(sandbox, ignore_errors=True)
    return LocalRun(status, output, log, failure)


def _notebook_log(executed: Optional[Path], failure: str) -> str:
    """The executed notebook's stream outputs and errors as plain text."""
    import json

    lines = []
    if executed and executed.is_file():
        nb = json.loads(executed.read_text(encoding="utf-8"))
        for cell in nb.get("cells", []):
            for out in cell.get("outputs", []):
                if out.get("output_type") == "stream":
                    lines.append("".join(out.get("text", "")))
                elif out.get("output_type") == "error":
                    lines.append("\n".join(out.get("traceback", [])))
    if failure:
        lines.append(failure)
    return "".join(line if line.endswith("\n") else line + "\n" for line in lines)
