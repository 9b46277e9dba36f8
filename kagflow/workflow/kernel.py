"""`kagflow kernel render|push|status|pull|logs`: a configured kernel rendered with the versions the target has,
checked, pushed past the GPU quota guard, waited for, its output and log pulled.

Each verb takes the command's Session first (bound on it: ``session.push(name)``).

The hub (the official client) is imported inside the verbs that talk to it: the CLI's start stays fast.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Callable, Optional

from kagflow.errors import KagflowError, KernelFailedError, MissingFileError
from kagflow.project.config import INFER
from kagflow.project.lock import locked
from kagflow.project.state import KernelRecord, VersionRecord


def render(session, name: str, *, tiny: Optional[bool] = None, overrides: Optional[dict] = None,
           adapters: tuple[str, ...] = ()):
    """Render kernel ``name`` with the versions the target has (never dropping a published source), the ``-p``
    ``overrides`` in its parameters cell and, for an ensemble, its ``adapters``; ``tiny``: with the stand-in's
    overrides (default: when the target's base model is the stand-in)."""
    from kagflow.notebooks.kernel_folder import render_kernel

    return render_kernel(session.config, name, tiny=session.target.uses_stand_in if tiny is None else tiny,
                         overrides=overrides, adapters=adapters)


def guard_competition_source(session, name: str, rendered) -> None:
    """Refuse a push that would add a version to a kernel made for another competition (its latest version's
    competition source differs): on Kaggle that silently swaps one competition's notebook for another's."""
    from kagflow.hub.kernels import remote_competitions

    theirs = remote_competitions(session.gateway, rendered.handle)
    ours = sorted(rendered.metadata.get("competition_sources") or [])
    if theirs and ours and theirs != ours:
        config = session.config
        raise KagflowError(f"kernel {rendered.handle} belongs to competition {', '.join(theirs)}, not this "
                           f"project's {', '.join(ours)}: not pushed (it would become a version of the other "
                           "project's kernel)",
                           context=f"file {config.path}, [kernels.{name}] title = {config.kernel(name).title!r}",
                           hint=f"give this project its own title, e.g. title = \"{ours[0]} {name}\" (kagflow init "
                                "--competition writes such titles), then push again")


def check_project_data(session) -> None:
    """Refuse a push while the competition's files do not have [data]'s columns (kagflow check lists them)."""
    from kagflow.workflow.check import check_data

    problems = check_data(session)
    if problems:
        raise KagflowError(f"the competition's files do not match [data] ({len(problems)} problem(s)); not pushed",
                           context="\n".join(p.render() for p in problems),
                           hint="fix [data] in kagflow.toml (or the hosted files), then push again")


@locked("push kernel {name}")
def push(session, name: str, *, accelerator: Optional[str] = None, timeout: Optional[int] = None,
         force: bool = False, overrides: Optional[dict] = None, force_quota: bool = False,
         adapters: tuple[str, ...] = ()):
    """Render (with the ``-p`` ``overrides``), check this kernel, guard the GPU quota, then push it (a new version
    only when its content changed); the version is recorded with its parameters."""
    from kagflow.hub.kernels import push_kernel
    from kagflow.workflow.check import check_kernel
    from kagflow.workflow.gpu_quota import guard_gpu_push

    rendered = render(session, name, overrides=overrides, adapters=adapters)
    config = session.config
    kernel = config.kernel(name)
    accelerator_used = accelerator or kernel.accelerator
    timeout = timeout if timeout is not None else kernel.timeout
    # --accelerator and --timeout get the checks [kernels.NAME] gets
    pushed = dataclasses.replace(kernel, accelerator=accelerator_used, timeout=timeout)
    problems = check_kernel(dataclasses.replace(config, kernels={**config.kernels, name: pushed}), name, adapters,
                            overridden=_overridden(accelerator, timeout))
    if problems:
        raise KagflowError(f"kernel {name!r} has {len(problems)} problem(s); not pushed",
                           context="\n".join(p.render() for p in problems),
                           hint="fix them (kagflow check lists them all), then push again")
    check_project_data(session)
    guard_competition_source(session, name, rendered)
    if kernel.kind == INFER and not session.target.uses_stand_in:  # the rates are Gemma-2-9B's
        guard_run_time(config, name, accelerator_used, timeout, members=max(1, len(adapters)), force=force_quota,
                       log=session.gateway.log)
    result = push_kernel(session.gateway, rendered.folder, accelerator=accelerator, timeout=timeout, force=force,
                         before_push=lambda: guard_gpu_push(session.gateway, name, rendered.handle,
                                                            accelerator_used, timeout, force=force_quota))
    state = session.state
    if state.kernel(name).version != result.version:
        state.record_kernel(name, KernelRecord(str(result.handle), result.version, result.digest))
    if result.pushed:
        state.record_version(name, result.version, VersionRecord(dict(overrides or {}), accelerator_used, timeout,
                                                                 round(time.time())))
    return result


def guard_run_time(config, name: str, accelerator: str, timeout: int, *, members: int, force: bool = False,
                   log: Callable[[str], None] = print) -> None:
    """Before an inference push: the estimated run time on Kaggle (``rules.runtime``) against the kernel's
    timeout; refused past it unless ``force``. Says the estimate in one line."""
    from kagflow.rules.runtime import kaggle_inference_run_time, refuse_past_timeout

    infer = config.infer

    def estimate_for(n: int):
        return kaggle_inference_run_time(config.project.competition, accelerator, members=n, tta=infer.tta,
                                         max_length=infer.max_length, quantization=infer.quantization,
                                         int8_kernel=infer.int8_kernel, ensemble=infer.ensemble)

    estimate = estimate_for(members)
    if estimate is None:
        return
    if force and estimate.seconds > timeout:
        log(f"warning: inference run time past the {timeout} s timeout, pushing anyway (--force): "
            f"{estimate.arithmetic}")
        return
    refuse_past_timeout(estimate, timeout, name=name, estimate_for=estimate_for)
    log(f"inference run time: {estimate.arithmetic} (timeout {timeout} s)")


def _overridden(accelerator: Optional[str], timeout: Optional[int]) -> dict:
    """The [kernels.NAME] keys a push's options replace, with the option that does (for the problems' wording)."""
    given = {"accelerator": ("--accelerator", accelerator), "timeout": ("--timeout", timeout)}
    return {key: option for key, (option, value) in given.items() if value is not None}


def kernel_version(session, name: str) -> int:
    """The last pushed version: recorded in the state file, else asked of the target."""
    version = session.state.kernel(name).version
    if version:
        return int(version)
    from kagflow.hub.kernels import remote_digest

    _, version = remote_digest(session.gateway, session.config.kernel_handle(name))
    if not version:
        raise MissingFileError(f"kernel {name!r} has not been pushed", hint=f"run `kagflow kernel push {name}`")
    return int(version)


def status(session, name: str, version: Optional[int] = None):
    """(version, its status) of kernel ``name`` (default: the last pushed version)."""
    from kagflow.hub.kernels import kernel_status

    version = version or kernel_version(session, name)
    return version, kernel_status(session.gateway, session.config.kernel_handle(name), version)


def wait(session, name: str, *, version: Optional[int] = None, timeout: Optional[float] = None, watch=None):
    """Wait for the kernel, its state and its log's training step, loss and ETA shown on ``watch`` (default: a
    ``kagflow.progress.Watch`` on stderr; see ``kernel_watch``); on ERROR/CANCEL pull its log and raise with the
    last lines."""
    from kagflow.hub.kernels import log_text, tail
    from kagflow.workflow.kernel_watch import watch_kernel

    handle = session.config.kernel_handle(name)
    version = version or kernel_version(session, name)
    status = watch_kernel(session.gateway, handle, version, label=f"{name} v{version}", watch=watch,
                          timeout=timeout or session.config.kernel(name).timeout + 600)
    if status.status != "COMPLETE":
        log = ""
        try:
            path = pull(session, name, version=version) / f"{handle.slug}.log"
            log = tail(log_text(path)) if path.is_file() else ""
        except KagflowError:
            pass  # the failure itself is what matters here
        raise KernelFailedError(
            f"kernel {handle} version {version} ended {status.status}: {status.failure_message or 'no message'}",
            context=log or None,
            hint=f"fix the notebook, then `kagflow kernel push {name} --wait`; full log: kagflow kernel logs {name}")
    return status


def pull(session, name: str, *, version: Optional[int] = None) -> Path:
    """Download a version's output and log into kernels/<slug>/output/v<N>/ (never overwritten)."""
    from kagflow.hub.kernels import pull_output

    version = version or kernel_version(session, name)
    config = session.config
    dest, _ = pull_output(session.gateway, config.kernel_handle(name), version, config.kernel_dir(name))
    session.state.record_output(name, dest, version=version)
    return dest


def logs(session, name: str, *, version: Optional[int] = None, lines: int = 0) -> str:
    """The run log of a version (pulled first if needed); ``lines``: only the last ones."""
    from kagflow.hub.kernels import log_text, tail

    log = pull(session, name, version=version) / f"{session.config.kernel_handle(name).slug}.log"
    text = log_text(log) if log.is_file() else "(no log)"
    return tail(text, lines) if lines else text


def follow(session, name: str, write: Callable[[str], None], *, version: Optional[int] = None) -> int:
    """Print the log of a running version as it is written, until the run ends."""
    from kagflow.hub.kernels import follow_log

    handle = session.config.kernel_handle(name)
    return follow_log(session.gateway, handle, version or kernel_version(session, name), write)


def output_summary(output: Path):
    """The files and metrics.json of a pulled output (what `kagflow kernel pull` prints)."""
    from kagflow.notebooks.kernel_folder import summarize_output

    return summarize_output(output)
