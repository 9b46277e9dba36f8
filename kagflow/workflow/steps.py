"""The flow's steps, in order: each a name and ``run(session, ctx) -> StepResult``.

Adding a step is adding one function and one line to ``STEPS``; ``kagflow.workflow.flow`` loops over
the registry, records each result in the state file, and builds its report from the results.
Every step is one or two calls on the session, each safe to repeat (content digests,
look-before-create).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

from kagflow.errors import KagflowError
from kagflow.project.config import ADAPTER_MODEL, BASE_MODEL, INFER_KERNEL, TRAIN_KERNEL
from kagflow.project.state import FoldRecord, Made


@dataclass(frozen=True)
class StepResult:
    summary: str
    made: Made = field(default_factory=Made)  # what the next steps and the report read (versions, outputs)


@dataclass(frozen=True)
class StepContext:
    """What one flow run asks of its steps."""

    forced: frozenset = frozenset()  # steps redone on purpose (--from): kernels are pushed again
    local_train: bool = False
    on_poll: Optional[Callable] = None  # the submission's wait (kernels show their own progress: kernel_watch)
    folds: tuple[int, ...] = ()  # train each as its own version, ensemble their adapters (--folds, [train] folds)


@dataclass(frozen=True)
class Step:
    name: str
    run: Callable[..., StepResult]
    help: str
    uploads: bool = True  # publishes, pushes or submits (the flow asks the target first: workflow.online)


def setup(session, ctx: StepContext) -> StepResult:
    return StepResult(session.target.setup(session))


def _publish(which: str):
    def run(session, ctx: StepContext) -> StepResult:
        result = session.publish(which)
        return StepResult(f"{result.source} ({'uploaded' if result.uploaded else 'unchanged'})",
                          Made(sources=[result.source]))
    return run


def wheels(session, ctx: StepContext) -> StepResult:
    image, how = session.target.flow_wheels_image(session)  # probed now, or said why not
    session.log(f"[wheels] image: {how}")
    built = session.build_wheels(image=image)
    pushed = session.push_wheels()
    return StepResult(f"{built.dataset_id}/{pushed.version}: {len(built.wheels)} wheel(s), "
                      f"{built.total_size / 1e6:.1f} MB, {'uploaded' if pushed.uploaded else 'unchanged'}; "
                      f"image {how}", {"image": image})


def _push_wait_pull(session, name: str, ctx: StepContext, **push) -> tuple[int, Path]:
    pushed = session.push(name, force=name in ctx.forced, **push)
    session.wait(name, version=pushed.version)
    return pushed.version, session.pull(name, version=pushed.version)


def _val_score(output: Path, metric: str) -> Optional[float]:
    """The training output's validation score by ``metric`` (its metrics.json), None if it has none."""
    from kagflow.workflow.kernel import output_summary

    value = output_summary(output).metrics.get(metric)
    return float(value) if isinstance(value, (int, float)) else None


def train_folds(session, ctx: StepContext) -> StepResult:
    """Each fold as its own training kernel version (``-p fold_idx=K``); a fold done earlier is kept."""
    done = []
    facts = session.config.data.facts
    for fold in ctx.folds:
        record = session.state.folds.get(fold)
        if record is None or not record.output:
            if ctx.local_train:
                run = session.run_here(TRAIN_KERNEL, overrides={"fold_idx": fold})
                if run.status != "COMPLETE":
                    raise KagflowError(f"local training of fold {fold} failed: {run.failure}", context=str(run.log))
                version, out = None, run.output
            else:
                version, out = _push_wait_pull(session, TRAIN_KERNEL, ctx, overrides={"fold_idx": fold})
            record = FoldRecord(fold, version, str(out), _val_score(out, facts.name), facts.name)
            session.state.record_fold(record)
            session.log(f"[train] fold {fold}: version {version or 'local'}, validation {facts.display} "
                        f"{record.score}")
        done.append(f"fold {fold} v{record.version or 'local'} ({record.score:.4f})" if record.score is not None
                     else f"fold {fold} v{record.version or 'local'}")
    return StepResult("trained " + ", ".join(done))  # each fold's version and output: its FoldRecord


def publish_folds(session, ctx: StepContext) -> StepResult:
    """Each fold's adapter as its own version of the adapter model instance."""
    sources = []
    for fold in ctx.folds:
        record = session.state.folds[fold]
        if not record.adapter:
            result = session.publish(ADAPTER_MODEL, source=session.adapter_dir(record.output),
                                     notes=f"fold {fold} (training version {record.version or 'local'})")
            record = dataclasses.replace(record, adapter=result.source)
            session.state.record_fold(record)
        sources.append(record.adapter)
    return StepResult(f"{len(sources)} adapter(s): " + ", ".join(sources), Made(sources=sources))


def train(session, ctx: StepContext) -> StepResult:
    if ctx.folds:
        return train_folds(session, ctx)
    if ctx.local_train:
        result = session.run_here(TRAIN_KERNEL)
        if result.status != "COMPLETE":
            raise KagflowError(f"local training failed: {result.failure}", context=str(result.log))
        session.state.record_output(TRAIN_KERNEL, result.output)
        return StepResult(f"trained on this machine into {result.output}", Made(output=str(result.output)))
    version, out = _push_wait_pull(session, TRAIN_KERNEL, ctx)
    return StepResult(f"version {version} complete, output in {out}", Made(version, str(out)))


def adapter(session, ctx: StepContext) -> StepResult:
    """The adapter of the training this flow ran (not of a version pushed since), as the next adapter version."""
    if ctx.folds:
        return publish_folds(session, ctx)
    trained = session.state.made("train")
    result = session.publish(ADAPTER_MODEL, source=session.adapter_dir(trained.output),
                             notes=f"training version {trained.version or 'local'}")
    return StepResult(f"{result.source} ({'uploaded' if result.uploaded else 'unchanged'})",
                      Made(trained.version, trained.output, [result.source]))


def infer(session, ctx: StepContext) -> StepResult:
    """Push the inference kernel with this flow's adapters (each fold's, with folds); ``[infer] temperature =
    "oof"``: with the T fitted on the training outputs' out-of-fold predictions (``folds.oof_temperature``)."""
    adapters = tuple(session.state.folds[fold].adapter for fold in ctx.folds)
    push = {}
    if session.config.infer.temperature == "oof":
        from kagflow.workflow.folds import oof_temperature

        outputs = [session.state.folds[f].output for f in ctx.folds] if ctx.folds else \
            [session.state.made("train").output]
        fitted = oof_temperature([Path(o) for o in outputs if o], session.config.data.task())
        session.log(f"[infer] {fitted.line}")
        push["overrides"] = {"temperature": fitted.value}
    version, out = _push_wait_pull(session, INFER_KERNEL, ctx, adapters=adapters, **push)
    if not (out / "submission.csv").is_file():
        raise KagflowError(f"the inference kernel wrote no submission.csv into {out}",
                           hint=f"check the log: kagflow kernel logs {INFER_KERNEL}")
    return StepResult(f"version {version} complete, submission.csv in {out}", Made(version, str(out), list(adapters)))


def submit(session, ctx: StepContext) -> StepResult:
    """The inference version this flow ran (not one pushed since) submitted, its score awaited."""
    version = session.state.made("infer").version or session.kernel_version(INFER_KERNEL)
    sub = session.submit(INFER_KERNEL, version=version, on_poll=ctx.on_poll)
    return StepResult(f"submission {sub.ref} {sub.status}, score {sub.public_score}",
                      Made(version, ref=str(sub.ref), score=sub.public_score))


STEPS: tuple[Step, ...] = (
    Step("setup", setup, "host the local competition and make the offline stand-in (local target)", uploads=False),
    Step("base", _publish(BASE_MODEL), "publish the base model"),
    Step("wheels", wheels, "build and push the offline wheels dataset"),
    Step("train", train, "push the training kernel, wait, pull its output"),
    Step("adapter", adapter, "publish the trained adapter (each fold's, with --folds)"),
    Step("infer", infer, "push the inference kernel, wait, pull submission.csv"),
    Step("submit", submit, "submit the inference kernel version and wait for the score"),
)
STEP_NAMES = tuple(step.name for step in STEPS)
