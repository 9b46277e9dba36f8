"""`kagflow kernel run NAME --local`: execute a rendered notebook here, in the local Kaggle's sandbox.

The local Kaggle's modules are imported inside the functions that run a kernel (the CLI's start stays fast).
The run goes through the local server's runner (:func:`kagflow.local.run.runner.run_notebook_in_sandbox`):
its inputs are placed under ``input/`` in both of Kaggle's layouts (:mod:`kagflow.local.run.mounts`),
the notebook sees them at ``/kaggle/input`` and writes ``/kaggle/working``, which becomes
``kernels/<slug>/output/local-<N>/``. The project's ``.kagflow`` folder is hidden from the run.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

from kagflow.errors import KagflowError
from kagflow.notebooks.kernel_folder import adapter_dir, render_kernel
from kagflow.project.config import ADAPTER_MODEL, BASE_MODEL, INFER, MODELS, TRAIN_KERNEL, WHEELS
from kagflow.rules import slugs
from kagflow.workflow.competition_data import host_competition
from kagflow.workflow.target import LocalTarget, local_target
from kagflow.workflow.wheels import build_dataset


@dataclass(frozen=True)
class LocalRun:
    status: str  # COMPLETE | ERROR
    output: Path
    log: Path
    failure: str = ""


def mount_model(input_root: Path, source: str, files: Path) -> None:
    """Mount a model version at both Kaggle layouts."""
    from kagflow.local.run import mounts

    h = slugs.ModelInstanceVersionHandle.parse(source)
    mounts.mount(input_root, ("models", h.owner, h.model, h.framework, h.instance, str(h.version)),
                 (h.model, h.framework, h.instance, str(h.version)), mounts.output_files(files))


def mount_dataset(input_root: Path, handle: str, files: Path) -> None:
    from kagflow.local.run import mounts

    h = slugs.DatasetHandle.parse(handle)
    mounts.mount(input_root, ("datasets", h.owner, h.slug), (h.slug,), mounts.output_files(files))


def mount_competition(input_root: Path, slug: str, files: dict) -> None:
    """The public files (name -> path), as the local Kaggle hosts them: the hidden solution never enters a
    sandbox."""
    from kagflow.local.run import mounts

    mounts.mount(input_root, ("competitions", slug), (slug,), sorted(files.items()))


def next_output_dir(folder: Path) -> Path:
    base = folder / "output"
    base.mkdir(parents=True, exist_ok=True)
    n = 1 + max([int(p.name.split("-")[1]) for p in base.glob("local-*") if p.name.split("-")[1].isdigit()] or [0])
    return base / f"local-{n}"


def write_run_log(dest: Path, log_json: Path, failure: str) -> None:
    """The run's Kaggle-format log as plain text (read by the one parser, hub.kernels.log_text), then
    the failure, if any."""
    from kagflow.hub.kernels import log_text

    dest.write_text(log_text(log_json) + (failure + "\n" if failure else ""), encoding="utf-8")


def run_here(session, name: str, *, timeout: Optional[int] = None, overrides: Optional[dict] = None) -> LocalRun:
    """Execute kernel ``name`` on this machine, on the local Kaggle's machinery whatever the command's target; a
    complete run's output becomes the local target's recorded output of that kernel."""
    target = local_target(session.target.config)
    run = run_local(target, name, timeout=timeout, overrides=overrides, gateway=lambda: session.gateway)
    if run.status == "COMPLETE":
        target.state().record_output(name, run.output)
    return run


def run_local(target: LocalTarget, name: str, *, timeout: Optional[int] = None,
              overrides: Optional[dict] = None, gateway: Optional[Callable[[], object]] = None) -> LocalRun:
    """Run kernel ``name`` here. Its explicit ``dataset:`` sources (an imported kernel's) are downloaded from the
    command's target through ``gateway()`` (called only when there is one to fetch) into ``.kagflow/sources/`` and
    mounted like the wheels, the competition and the models."""
    from kagflow.local.run import mounts
    from kagflow.local.run.image import kernel_python
    from kagflow.local.run.runner import kernel_file, run_notebook_in_sandbox

    config = target.config
    kernel = config.kernel(name)
    state = target.state()
    # a local run needs no published model or wheels: unpublished ones are mounted as version 1
    config = config.with_versions({**{which: max(config.model(which).version, 1) for which in MODELS},
                                   WHEELS: max(config.wheels.version, 1)})
    rendered = render_kernel(config, name, tiny=target.uses_stand_in, overrides=overrides)
    output = next_output_dir(config.kernel_dir(name))
    private = config.layout.private
    config.layout.runs.mkdir(parents=True, exist_ok=True)
    sandbox = Path(tempfile.mkdtemp(prefix=f"{rendered.handle.slug}-", dir=config.layout.runs))
    input_root = sandbox / "input"
    try:
        mount_model(input_root, f"{config.instance_handle(BASE_MODEL)}/{config.base_model.version}",
                    target.base_model_dir())
        if kernel.kind == INFER:
            adapter = adapter_dir(state.kernel(TRAIN_KERNEL).output, state_file=state.path,
                                  hint=f"run `kagflow kernel run {TRAIN_KERNEL} --local` first")
            adapter_ref = f"{config.instance_handle(ADAPTER_MODEL)}/{config.adapter_model.version}"
            mount_model(input_root, adapter_ref, adapter)
        # the competition's files as the local Kaggle hosts them (synthetic ones only where they may be used)
        comp = host_competition(config, target.server_data_dir())
        mount_competition(input_root, config.project.competition, comp.files)
        wheels = config.wheels_dir()
        if not wheels.is_dir() and "wheels" in kernel.sources:  # what a fresh project's first local run needs
            build_dataset(config, target.wheels_image)
        if wheels.is_dir() and "wheels" in kernel.sources:
            mount_dataset(input_root, str(config.wheels_handle()), wheels)
        for source in kernel.sources:  # an imported kernel's datasets: from the target, as Kaggle mounts them
            kind, _, ref = source.partition(":")
            if kind == "dataset":
                from kagflow.hub.datasets import download_dataset

                if gateway is None:
                    raise KagflowError(f"kernel {name} mounts {source}: nothing to download it through",
                                       hint="run it with `kagflow kernel run NAME --local`")
                handle = slugs.DatasetHandle.parse(ref)
                mount_dataset(input_root, str(handle), download_dataset(gateway(), handle, config.layout.sources))
        status, failure, log_json = run_notebook_in_sandbox(
            rendered.notebook, sandbox, timeout=timeout or kernel.timeout, enable_internet=kernel.internet,
            python=kernel_python(), hide=[private])
        for relative, path in mounts.output_files(sandbox / "working"):  # regular files only, as the server
            (output / relative).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, output / relative)
        output.mkdir(parents=True, exist_ok=True)
        try:  # written by the kernel: read without following a link it may have put there
            executed = kernel_file(sandbox / ".kagflow" / "executed.ipynb")
            (output / (rendered.notebook.stem + ".executed.ipynb")).write_bytes(executed)
        except OSError:
            pass
        log = output / f"{rendered.handle.slug}.log"
        write_run_log(log, log_json, failure)
    finally:
        shutil.rmtree(sandbox, ignore_errors=True)
    return LocalRun(status, output, log, failure)
