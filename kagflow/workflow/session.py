"""One command's session: the config, its target, a gateway connected on first use, the typed
project state, and the project's operations, each one call the CLI (or a flow step) makes.

Data flows one way: CLI -> Session -> hub (or local) -> rules. The session is the one place that
knows which target a command talks to, which versions are pinned there, and when to hold the
project lock; the hub modules below it know nothing of the project's state.
"""

from __future__ import annotations

import sys
from functools import cached_property
from pathlib import Path
from typing import Callable, Optional

from kagflow.project.config import Config, set_value
from kagflow.errors import KagflowError, KernelFailedError, MissingFileError
from kagflow.project.init import project_lock
from kagflow.project.sources import kernel_handle
from kagflow.project.state import (DatasetRecord, KernelRecord, ModelRecord, ProjectState, SubmissionRecord,
                           VersionRecord)


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


class Session:
    """Built once per command. Nothing is connected, started or announced until a call needs it."""

    def __init__(self, config: Config, *, log: Callable[[str], None] = _stderr, announce: bool = True):
        self.project_config = config
        self.log = log
        self.announce = announce

    # ------------------------------------------------------------------ where, and what is there

    @cached_property
    def is_local(self) -> bool:
        """Whether this project's target is a local Kaggle (decided without starting anything)."""
        from kagflow.hub.target import targets_local

        return targets_local(self.project_config)

    @cached_property
    def target(self):
        """The target, resolved once (starting the local Kaggle if needed) and named on stderr."""
        from kagflow.hub.target import resolve_target

        return resolve_target(self.project_config, announce=self.announce)

    @cached_property
    def gateway(self):
        from kagflow.hub.gateway import Gateway
        from kagflow.hub.target import build_target_api

        return Gateway(build_target_api(self.target), self.target, self.log)

    @cached_property
    def state(self) -> ProjectState:
        return ProjectState.for_target(self.project_config.root, "local" if self.is_local else "kaggle")

    @property
    def config(self) -> Config:
        """The config with the model versions the target really has: on the local target they are
        recorded in the state file, on Kaggle pinned in kagflow.toml."""
        return self.state.pinned(self.project_config) if self.is_local else self.project_config

    @property
    def uses_stand_in(self) -> bool:
        """The offline stand-in is the base model: local target and no [base_model] local_dir."""
        return self.is_local and not self.project_config.base_model.local_dir

    def lock(self, what: str):
        return project_lock(self.project_config.root, what, self.log)

    def link(self, handle) -> str:
        """``handle``'s page on the target (the local server's pages on the local target)."""
        return self.target.link(handle)

    # ------------------------------------------------------------------ local stand-ins

    def install_local_competition(self) -> Path:
        """Host the synthetic competition on the local server the project uses and accept its rules as the
        project's user (idempotent): like Kaggle, it refuses downloads and submissions until then."""
        from kagflow.hub.target import server_data_dir
        from kagflow.local.server.competition import accept_rules, install_competition
        from kagflow.workflow.standins import ensure_synthetic_competition

        config = self.project_config
        files = ensure_synthetic_competition(config)
        data_dir = server_data_dir(config)
        install_competition(data_dir, config.project.competition, files)
        accept_rules(data_dir, config.project.competition, config.username)
        return files

    # ------------------------------------------------------------------ models

    def base_model_dir(self) -> Path:
        config = self.project_config
        if config.base_model.local_dir:
            path = (config.root / config.base_model.local_dir).resolve()
            if not (path / "config.json").is_file():
                raise MissingFileError(
                    f"[base_model] local_dir {path} holds no Hugging Face checkpoint (config.json)",
                    context=f"file {config.path}, key local_dir",
                    hint=f"download it: huggingface-cli download {config.base_model.hf_id} "
                         f"--local-dir {config.base_model.local_dir}")
            return path
        if self.is_local:
            from kagflow.workflow.standins import ensure_stand_in

            return ensure_stand_in(config)
        raise MissingFileError("no base model files to publish to Kaggle",
                               context=f"file {config.path}, [base_model] local_dir is empty",
                               hint=f"download {config.base_model.hf_id} (huggingface-cli download "
                                    f"{config.base_model.hf_id} --local-dir models/hf-base) and set "
                                    'local_dir = "models/hf-base"')

    def adapter_dir(self, output: Optional[str] = None) -> Path:
        """The adapter folder (holding adapter_config.json) of ``output``, by default the last pulled
        training output."""
        from kagflow.notebooks.kernel_folder import adapter_dir

        return adapter_dir(output or self.state.kernel("train").output, state_file=self.state.path,
                           hint="run `kagflow kernel push train --wait` and `kagflow kernel pull train`, "
                                "or publish a folder: kagflow model publish adapter --from DIR")

    def publish(self, which: str, *, source: Optional[Path] = None, notes: str = ""):
        """Publish the base model or the adapter as a new instance version, unless unchanged."""
        from kagflow.hub.models import publish_model

        if source is None:
            source = self.base_model_dir() if which == "base_model" else self.adapter_dir()
        elif which == "adapter":  # a whole training output given: its final adapter, not kept checkpoints too
            from kagflow.notebooks.kernel_folder import adapter_dir

            source = adapter_dir(str(source), state_file=self.state.path, context=f"--from {source}",
                                 hint="pass the training output or the folder holding adapter_config.json")
        with self.lock(f"publish {which}"):
            result = publish_model(self.gateway, self.project_config, which, source, notes=notes)
            # kagflow.toml pins the versions on Kaggle; the local Kaggle's live in the state file
            if not self.target.is_local and getattr(self.project_config, which).version != result.handle.version:
                set_value(self.project_config.path, which, "version", result.handle.version)
            self.state.record_model(which, ModelRecord(result.source, result.handle.version, result.digest,
                                                       result.uploaded))
        return result

    # ------------------------------------------------------------------ wheels

    def push_wheels(self, *, notes: str = ""):
        from kagflow.hub.datasets import push_dataset
        from kagflow.workflow.wheels import wheels_dir

        with self.lock("push wheels"):
            result = push_dataset(self.gateway, wheels_dir(self.project_config), notes=notes)
            self.state.record_wheels(DatasetRecord(str(result.handle), result.digest))
        return result

    # ------------------------------------------------------------------ kernels

    def render(self, name: str, *, tiny: Optional[bool] = None, overrides: Optional[dict] = None,
               adapters: tuple[str, ...] = ()):
        """Render kernel ``name`` with the versions the target has (never dropping a published source),
        the ``-p`` ``overrides`` in its parameters cell and, for an ensemble, its ``adapters``."""
        from kagflow.notebooks.kernel_folder import render_kernel

        return render_kernel(self.config, name, tiny=self.uses_stand_in if tiny is None else tiny,
                             overrides=overrides, adapters=adapters)

    def push(self, name: str, *, accelerator: Optional[str] = None, timeout: Optional[int] = None,
             force: bool = False, overrides: Optional[dict] = None, force_quota: bool = False,
             adapters: tuple[str, ...] = ()):
        """Render (with the ``-p`` ``overrides``), check this kernel, guard the GPU quota, then push it
        (a new version only when its content changed); the version is recorded with its parameters."""
        import time

        from kagflow.workflow.check import check_kernel
        from kagflow.hub.kernels import push_kernel
        from kagflow.workflow.gpu_quota import guard_gpu_push

        with self.lock(f"push kernel {name}"):
            rendered = self.render(name, overrides=overrides, adapters=adapters)
            problems = check_kernel(self.config, name, adapters)
            if problems:
                raise KagflowError(f"kernel {name!r} has {len(problems)} problem(s); not pushed",
                                   context="\n".join(p.render() for p in problems),
                                   hint="fix them (kagflow check lists them all), then push again")
            kernel = self.config.kernel(name)
            accelerator_used = accelerator or kernel.accelerator
            timeout = timeout if timeout is not None else kernel.timeout
            result = push_kernel(self.gateway, rendered.folder, accelerator=accelerator, timeout=timeout, force=force,
                                 before_push=lambda: guard_gpu_push(self.gateway, name, rendered.handle,
                                                                    accelerator_used, timeout, force=force_quota))
            if self.state.kernel(name).version != result.version:
                self.state.record_kernel(name, KernelRecord(str(result.handle), result.version, result.digest))
            if result.pushed:
                self.state.record_version(name, result.version, VersionRecord(dict(overrides or {}), accelerator_used,
                                                                              timeout, round(time.time())))
        return result

    def follow(self, name: str, write: Callable[[str], None], *, version: Optional[int] = None) -> int:
        """Print the log of a running version as it is written, until the run ends."""
        from kagflow.hub.kernels import follow_log

        handle = kernel_handle(self.project_config, name)
        return follow_log(self.gateway, handle, version or self.kernel_version(name), write)

    def kernel_version(self, name: str) -> int:
        """The last pushed version: recorded in the state file, else asked of the target."""
        version = self.state.kernel(name).version
        if version:
            return int(version)
        from kagflow.hub.kernels import remote_digest

        _, version = remote_digest(self.gateway, kernel_handle(self.project_config, name))
        if not version:
            raise MissingFileError(f"kernel {name!r} has not been pushed", hint=f"run `kagflow kernel push {name}`")
        return int(version)

    def status(self, name: str, version: Optional[int] = None):
        from kagflow.hub.kernels import kernel_status

        version = version or self.kernel_version(name)
        return version, kernel_status(self.gateway, kernel_handle(self.project_config, name), version)

    def wait(self, name: str, *, version: Optional[int] = None, timeout: Optional[float] = None,
             on_poll: Optional[Callable] = None):
        """Wait for the kernel; on ERROR/CANCEL pull its log and raise with the last lines."""
        from kagflow.hub.kernels import log_text, tail, wait_kernel

        handle = kernel_handle(self.project_config, name)
        version = version or self.kernel_version(name)
        status = wait_kernel(self.gateway, handle, version, timeout=timeout or self.config.kernel(name).timeout + 600,
                             on_poll=on_poll)
        if status.status != "COMPLETE":
            log = ""
            try:
                out = self.pull(name, version=version)
                path = out / f"{handle.slug}.log"
                log = tail(log_text(path)) if path.is_file() else ""
            except KagflowError:
                pass  # the failure itself is what matters here
            raise KernelFailedError(
                f"kernel {handle} version {version} ended {status.status}: {status.failure_message or 'no message'}",
                context=log or None,
                hint=f"fix the notebook, then `kagflow kernel push {name} --wait`; "
                     f"full log: kagflow kernel logs {name}")
        return status

    def pull(self, name: str, *, version: Optional[int] = None) -> Path:
        """Download a version's output and log into kernels/<slug>/output/v<N>/ (never overwritten)."""
        from kagflow.hub.kernels import pull_output
        from kagflow.notebooks.kernel_folder import kernel_dir

        version = version or self.kernel_version(name)
        config = self.project_config
        dest, _ = pull_output(self.gateway, kernel_handle(config, name), version, kernel_dir(config, name))
        self.state.record_output(name, dest, version=version)
        return dest

    def logs(self, name: str, *, version: Optional[int] = None) -> str:
        from kagflow.hub.kernels import log_text

        log = self.pull(name, version=version) / f"{kernel_handle(self.project_config, name).slug}.log"
        return log_text(log) if log.is_file() else "(no log)"

    def run_here(self, name: str, *, timeout: Optional[int] = None, overrides: Optional[dict] = None):
        """Execute kernel ``name`` on this machine; a complete run's output becomes its recorded output."""
        from kagflow.workflow.kernel_run import run_local

        result = run_local(self.project_config, name, timeout=timeout, overrides=overrides,
                           gateway=lambda: self.gateway)
        if result.status == "COMPLETE":
            ProjectState.for_target(self.project_config.root, "local").record_output(name, result.output)
        return result

    def import_notebook(self, ref: str, *, name: Optional[str] = None):
        """Adopt public notebook ``ref`` as a kernel of this project (kagflow kernel import)."""
        from kagflow.workflow.kernel_import import import_kernel

        return import_kernel(self.gateway, self.project_config, ref, name=name)

    # ------------------------------------------------------------------ submissions

    def submit(self, name: str = "infer", *, version: Optional[int] = None, wait: bool = True,
               on_poll: Optional[Callable] = None, message: str = ""):
        """Submit a kernel version once (a re-run finds the earlier submission) and wait for its score."""
        from kagflow.hub.competitions import submit_kernel, wait_score

        competition = self.project_config.project.competition
        handle = kernel_handle(self.project_config, name)
        version = version or self.kernel_version(name)
        with self.lock(f"submit {name}"):
            sub = submit_kernel(self.gateway, competition, handle, version,
                                message=message or f"kagflow {self.project_config.kernel(name).title} v{version}")
        if wait:
            sub = wait_score(self.gateway, competition, sub.ref, on_poll=on_poll)
        self.state.record_submission(SubmissionRecord(sub.ref, str(handle), version, sub.status, sub.public_score))
        return sub

    def submit_csv(self, path: Path, *, message: str = "", wait: bool = True, on_poll: Optional[Callable] = None):
        """File competitions: submit ``path`` and wait for its score."""
        from kagflow.hub.competitions import submit_file, wait_score

        competition = self.project_config.project.competition
        with self.lock("submit file"):
            sub = submit_file(self.gateway, competition, path, message=message)
        return wait_score(self.gateway, competition, sub.ref, on_poll=on_poll) if wait else sub

    # ------------------------------------------------------------------ image

    def probe_image(self, *, accelerator: str, out: str, on_poll: Optional[Callable] = None):
        """Run the image probe kernel, save what it found as ``out`` and make it [wheels] image."""
        from kagflow.workflow.image import run_probe

        with self.lock("image probe"):
            img, path = run_probe(self.gateway, self.project_config, accelerator=accelerator,
                                  out=self.project_config.root / out, on_poll=on_poll)
        set_value(self.project_config.path, "wheels", "image", out)
        return img, path
