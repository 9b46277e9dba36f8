"""The workflow's steps, each one call that is safe to repeat; the CLI and the flow call these.

A step reads the config, talks to the target through the gateway, and records what it produced
in the state file, so the next step (and a re-run) knows the versions without guessing.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

from kagflow import slugs
from kagflow.config import Config, set_value
from kagflow.errors import KernelFailedError, MissingFileError
from kagflow.hub.common import Gateway
from kagflow.standin import ensure_stand_in
from kagflow.state import State


# --------------------------------------------------------------------------- offline stand-ins

def uses_tiny(config: Config, gw: Gateway) -> bool:
    """The offline stand-in ([base_model] stand_in) is the base model: local target, no snapshot."""
    return gw.target.is_local and not config.base_model.local_dir


def competition_files_dir(config: Config) -> Path:
    return config.root / ".kagflow" / "competition" / config.project.competition


def ensure_synthetic_competition(config: Config) -> Path:
    """Write the synthetic arena competition (train/test/sample_submission + hidden solution) once."""
    out = competition_files_dir(config)
    if (out / "solution.csv").is_file():
        return out
    from kagflow.classifier.synth import write_synthetic_competition

    t = config.tiny
    write_synthetic_competition(out, n_train=t.n_train, n_test=t.n_test, seed=t.seed)
    return out


def install_local_competition(config: Config, gw: Gateway) -> None:
    """Host the synthetic competition on the local server (idempotent)."""
    from kagflow.hub.target import local_data_dir
    from kagflow.local.competition import install_competition

    files = ensure_synthetic_competition(config)
    install_competition(local_data_dir(config), config.project.competition, files)


# --------------------------------------------------------------------------- models

def base_model_dir(config: Config, gw: Gateway) -> Path:
    if config.base_model.local_dir:
        path = (config.root / config.base_model.local_dir).resolve()
        if not (path / "config.json").is_file():
            raise MissingFileError(f"[base_model] local_dir {path} holds no Hugging Face checkpoint (config.json)",
                                   context=f"file {config.path}, key local_dir",
                                   hint=f"download it: huggingface-cli download {config.base_model.hf_id} "
                                        f"--local-dir {config.base_model.local_dir}")
        return path
    if gw.target.is_local:
        return ensure_stand_in(config)
    raise MissingFileError("no base model files to publish to Kaggle",
                           context=f"file {config.path}, [base_model] local_dir is empty",
                           hint=f"download {config.base_model.hf_id} (huggingface-cli download "
                                f"{config.base_model.hf_id} --local-dir models/hf-base) and set "
                                'local_dir = "models/hf-base"')


def adapter_dir_from_output(output: Path) -> Path:
    """The adapter folder inside a training run's output (holds adapter_config.json)."""
    found = sorted(Path(output).rglob("adapter_config.json"))
    if not found:
        raise MissingFileError(f"no adapter (adapter_config.json) in {output}",
                               hint="pull a finished training run: kagflow kernel pull train")
    return found[0].parent


def publish_model(gw: Gateway, config: Config, state: State, which: str, *, source: Optional[Path] = None,
                  notes: str = ""):
    from kagflow.hub import models

    if source is None:
        if which == "base_model":
            source = base_model_dir(config, gw)
        else:
            pulled = state.get("kernels", "train", "output")
            if not pulled:
                raise MissingFileError("no training output to publish the adapter from",
                                       hint="run `kagflow kernel push train --wait` and `kagflow kernel pull "
                                            "train`, or pass --from DIR")
            source = adapter_dir_from_output(Path(pulled))
    result = models.publish_model(gw, config, which, source, notes=notes)
    # kagflow.toml pins the versions on Kaggle; the local server's live in the local state file
    if not gw.target.is_local and getattr(config, which).version != result.handle.version:
        set_value(config.path, which, "version", result.handle.version)
    state.set("models", which, value={"source": result.source, "digest": result.digest,
                                      "version": result.handle.version, "uploaded": result.uploaded})
    return result


def effective_config(config: Config, state: State, gw: Gateway) -> Config:
    """The config with the model versions the target really has (the state file's, on the local target)."""
    import dataclasses

    if not gw.target.is_local:
        return config
    changes = {}
    for which in ("base_model", "adapter_model"):
        version = state.get("models", which, "version")
        if version:
            changes[which] = dataclasses.replace(getattr(config, which), version=int(version))
    return dataclasses.replace(config, **changes) if changes else config


# --------------------------------------------------------------------------- wheels

def wheels_dir(config: Config) -> Path:
    from kagflow.sources import wheels_handle

    return config.root / "wheels" / wheels_handle(config).slug


def push_wheels(gw: Gateway, config: Config, state: State, *, notes: str = ""):
    from kagflow.hub.datasets import push_dataset

    folder = wheels_dir(config)
    result = push_dataset(gw, folder, notes=notes)
    state.set("wheels", value={"handle": str(result.handle), "digest": result.digest})
    return result


# --------------------------------------------------------------------------- kernels

def render(config: Config, name: str, *, tiny: bool):
    from kagflow.kernels import render_kernel

    return render_kernel(config, name, tiny=tiny)


def push_kernel(gw: Gateway, config: Config, state: State, name: str, *, accelerator: Optional[str] = None,
                timeout: Optional[int] = None, check: bool = True, force: bool = False):
    """Render, check, then push; records the version in the state file."""
    from kagflow.check import check_project
    from kagflow.errors import KagflowError
    from kagflow.hub.kernels import push_kernel as hub_push

    config = effective_config(config, state, gw)
    rendered = render(config, name, tiny=uses_tiny(config, gw))
    if check:
        problems = [p for p in check_project(config)
                    if str(rendered.folder) in p.file or (p.file.endswith("kagflow.toml") and (
                        f"[kernels.{name}]" in p.field or "[kernels." not in p.field))]
        if problems:
            raise KagflowError(f"kagflow check found {len(problems)} problem(s) in kernel {name!r}",
                               context="\n".join(p.render() for p in problems),
                               hint="fix them (kagflow check lists them all), then push again")
    kernel = config.kernel(name)
    result = hub_push(gw, rendered.folder, accelerator=accelerator,
                      timeout=timeout if timeout is not None else kernel.timeout, force=force)
    previous = state.get("kernels", name, "version")
    if previous != result.version:
        state.set("kernels", name, value={"version": result.version, "digest": result.digest,
                                          "handle": str(result.handle)})
    return result


def kernel_version(gw: Gateway, config: Config, state: State, name: str) -> int:
    version = state.get("kernels", name, "version")
    if version:
        return int(version)
    from kagflow.hub.kernels import remote_digest
    from kagflow.sources import kernel_handle

    _, version = remote_digest(gw, kernel_handle(config, name))
    if not version:
        raise MissingFileError(f"kernel {name!r} has not been pushed", hint=f"run `kagflow kernel push {name}`")
    return int(version)


def wait_kernel(gw: Gateway, config: Config, state: State, name: str, *, version: Optional[int] = None,
                timeout: Optional[float] = None, on_poll: Optional[Callable] = None):
    """Wait for the kernel; on ERROR/CANCEL pull the log and raise with its last lines."""
    from kagflow.hub.kernels import wait_kernel as hub_wait
    from kagflow.sources import kernel_handle

    handle = kernel_handle(config, name)
    version = version or kernel_version(gw, config, state, name)
    status = hub_wait(gw, handle, version, timeout=timeout or config.kernel(name).timeout + 600,
                      on_poll=on_poll)
    if status.status != "COMPLETE":
        log = ""
        try:
            out = pull_kernel(gw, config, state, name, version=version)
            log = kernel_log_tail(out, handle.slug)
        except Exception:  # noqa: BLE001 - the failure itself is what matters here
            pass
        raise KernelFailedError(
            f"kernel {handle} version {version} ended {status.status}: {status.failure_message or 'no message'}",
            context=log or None,
            hint=f"fix the notebook, then `kagflow kernel push {name} --wait`; full log: kagflow kernel logs {name}")
    return status


def pull_kernel(gw: Gateway, config: Config, state: State, name: str, *, version: Optional[int] = None) -> Path:
    from kagflow.hub.kernels import pull_output
    from kagflow.kernels import kernel_dir
    from kagflow.sources import kernel_handle

    version = version or kernel_version(gw, config, state, name)
    dest, _ = pull_output(gw, kernel_handle(config, name), version, kernel_dir(config, name))
    if state.get("kernels", name, "version") == version:
        state.set("kernels", name, "output", value=str(dest))
    return dest


def kernel_log_tail(output: Path, slug: str, lines: int = 20) -> str:
    from kagflow.hub.kernels import log_text, tail

    log = Path(output) / f"{slug}.log"
    return tail(log_text(log), lines) if log.is_file() else ""


@dataclass(frozen=True)
class OutputSummary:
    files: list[tuple[str, int]]
    metrics: dict


def summarize_output(output: Path) -> OutputSummary:
    output = Path(output)
    files = sorted((str(p.relative_to(output)), p.stat().st_size) for p in output.rglob("*")
                   if p.is_file() and p.name != ".complete")
    metrics = {}
    found = sorted(output.rglob("metrics.json"))
    if found:
        try:
            metrics = json.loads(found[0].read_text())
        except ValueError:
            metrics = {}
    return OutputSummary(files, metrics)


# --------------------------------------------------------------------------- submit

def submit(gw: Gateway, config: Config, state: State, name: str = "infer", *, version: Optional[int] = None,
           wait: bool = True, on_poll: Optional[Callable] = None, message: str = ""):
    from kagflow.hub.competitions import submit_kernel, wait_score
    from kagflow.sources import kernel_handle

    handle: slugs.KernelHandle = kernel_handle(config, name)
    version = version or kernel_version(gw, config, state, name)
    sub = submit_kernel(gw, config.project.competition, handle, version,
                        message=message or f"kagflow {config.kernel(name).title} v{version}")
    if wait:
        sub = wait_score(gw, config.project.competition, sub.ref, on_poll=on_poll)
    state.set("submission", value={"ref": sub.ref, "kernel": str(handle), "version": version,
                                   "status": sub.status, "score": sub.public_score})
    return sub
