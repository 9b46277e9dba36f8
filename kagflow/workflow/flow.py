"""`make submit`: a loop over the registry of steps (``kagflow.workflow.steps.STEPS``), resumable.

Each finished step is recorded in the target's state file (``.kagflow/state-<target>.json``); a
re-run starts at the first unfinished step, and each step is itself safe to repeat.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Optional

from kagflow.classifier.metrics import LOSS_CURVE
from kagflow.errors import KagflowError
from kagflow.project.config import ADAPTER_MODEL, BASE_MODEL, INFER_KERNEL, TRAIN_KERNEL
from kagflow.project.state import ProjectState, StepRecord
from kagflow.rules import metrics as metric_rules
from kagflow.workflow.folds import oof_score
from kagflow.workflow.online import preflight
from kagflow.workflow.steps import STEP_NAMES, STEPS, StepContext


def _figure(output: Optional[str], name: str) -> str:
    """The file ``name`` in a pulled kernel output (its first, in path order), "" when there is none."""
    found = sorted(Path(output).rglob(name)) if output and Path(output).is_dir() else []
    return str(found[0]) if found else ""


def _of(kernel: str, version: Optional[int]) -> str:
    """``train v1``, or ``train on this machine`` for a local run."""
    return f"{kernel} v{version}" if version else f"{kernel} on this machine"


@dataclass
class FlowReport:
    """What this flow made, each figure with the version it comes from: read from the flow's own step records
    (``Made``), never from the target's latest records, so a version pushed or a submission made outside the
    flow never mixes in (it is named in ``notes``)."""

    target: str
    steps_run: list[str] = field(default_factory=list)
    summaries: dict = field(default_factory=dict)  # step name -> its one-line result
    published: dict = field(default_factory=dict)
    kernels: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)
    confusion_matrix: str = ""
    loss_curve: str = ""
    figures_of: str = ""  # the training version metrics, confusion matrix and loss curve come from ("train v1")
    submission: str = ""
    submission_of: str = ""  # the inference version submission.csv comes from ("infer v1")
    submission_ref: str = ""
    score: Optional[float] = None
    notes: list = field(default_factory=list)  # later versions and submissions made outside this flow
    local_server: str = ""  # the background local Kaggle's URL, when the flow used one
    metric: str = ""  # [data] metric in words ("log loss")
    direction: str = ""  # "lower is better" | "higher is better"
    metric_name: str = ""  # [data] metric, the key of the training's metrics.json shown first
    data_note: str = ""  # Target.data_note: says when the data were synthetic
    folds: list = field(default_factory=list)  # per fold: fold, version, score, metric, adapter, figures
    oof_score: Optional[float] = None  # the ensemble's out-of-fold estimate by [data] metric
    oof_rows: int = 0

    def read_state(self, state: ProjectState) -> None:
        """What the steps made, now or on an earlier run, as the flow's step records name it."""
        base, adapter = state.made("base"), state.made("adapter")
        trained, inferred, submitted = state.made("train"), state.made("infer"), state.made("submit")
        self.published = {which: ", ".join(made.sources)
                          for which, made in ((BASE_MODEL, base), (ADAPTER_MODEL, adapter)) if made.sources}
        self.kernels = {name: made.version for name, made in ((TRAIN_KERNEL, trained), (INFER_KERNEL, inferred))
                        if made.version}
        if trained.output:
            self.figures_of = _of(TRAIN_KERNEL, trained.version)
            metrics = _figure(trained.output, "metrics.json")
            self.metrics = json.loads(Path(metrics).read_text()) if metrics else {}
            self.confusion_matrix = _figure(trained.output, "confusion_matrix.png")
            self.loss_curve = _figure(trained.output, LOSS_CURVE)
        if inferred.output and (Path(inferred.output) / "submission.csv").is_file():
            self.submission = str(Path(inferred.output) / "submission.csv")
            self.submission_of = _of(INFER_KERNEL, inferred.version)
        self.submission_ref, self.score = submitted.ref, submitted.score
        for name, made in ((TRAIN_KERNEL, trained), (INFER_KERNEL, inferred)):
            latest = state.kernel(name).version
            if made.version and latest and latest != made.version:
                self.notes.append(f"kernel {name} has version {latest} since (made outside this flow; this report "
                                  f"is of version {made.version}; `kagflow flow --from {name}` redoes the flow "
                                  f"from that step)")
        if submitted.ref and state.submission and state.submission.ref != submitted.ref:
            self.notes.append(f"submission {state.submission.ref} ({state.submission.kernel} "
                              f"v{state.submission.version}) was made since, outside this flow")

    def read_folds(self, state: ProjectState, folds, task) -> None:
        """The folds' records and their out-of-fold estimate by ``task``'s metric (the classifier's Task)."""
        records = [state.folds[f] for f in folds if f in state.folds]
        self.folds = [{**asdict(r), "confusion_matrix": _figure(r.output, "confusion_matrix.png"),
                       "loss_curve": _figure(r.output, LOSS_CURVE)} for r in records]
        self.oof_score, self.oof_rows = oof_score((Path(r.output) for r in records if r.output), task)

    def to_dict(self) -> dict:
        return asdict(self)

    def lines(self) -> list[str]:
        out = [f"kagflow flow report ({self.target})",
               f"  steps run now: {', '.join(self.steps_run) or 'none (everything was already done)'}"]
        for which, source in self.published.items():
            made_from = f" (from {self.figures_of})" if which == ADAPTER_MODEL and self.figures_of else ""
            out.append(f"  published {which}: {source}{made_from}")
        for name, version in self.kernels.items():
            out.append(f"  kernel {name}: version {version}")
        if self.data_note:
            out.append(f"  data: {self.data_note}")
        m = self.metrics
        of = f" ({self.figures_of})"
        if m:
            shown = dict.fromkeys((self.metric_name, "log_loss", "accuracy", "macro_f1", "roc_auc", "map_at_3"))
            out.append("  validation: " + ", ".join(f"{k} {m[k]:.4f}" for k in shown
                                                   if isinstance(m.get(k), (int, float))) + of)
        for f in self.folds:
            score = f"{f['score']:.4f}" if f["score"] is not None else "-"
            named = metric_rules.METRICS[f["metric"]].display if f["metric"] in metric_rules.METRICS else self.metric
            out.append(f"  fold {f['fold']}: train version {f['version'] or 'local'}, validation {named} {score}, "
                       f"adapter {f['adapter'] or '-'}")
            figures = [path for path in (f["confusion_matrix"], f["loss_curve"]) if path]
            if figures:
                out.append("    figures: " + ", ".join(figures))
        if self.folds:
            oof = f"{self.oof_score:.4f}" if self.oof_score is not None else "-"
            out.append(f"  ensemble of {len(self.folds)} fold(s): out-of-fold {self.metric} {oof} ({self.oof_rows} "
                       "rows)")
        if self.confusion_matrix:
            out.append(f"  confusion matrix: {self.confusion_matrix}{of}")
        if self.loss_curve:
            out.append(f"  loss curve: {self.loss_curve}{of}")
        if self.submission:
            out.append(f"  submission.csv: {self.submission} ({self.submission_of})")
        scored = f"submission {self.submission_ref} of {self.submission_of or INFER_KERNEL}"
        said = [self.direction, "on SYNTHETIC data" if self.data_note else "", scored if self.submission_ref else ""]
        out.append(f"  score ({self.metric}): {self.score if self.score is not None else '-'} "
                   f"({'; '.join(word for word in said if word)})")
        out.extend(f"  note: {note}" for note in self.notes)
        return out


class FlowStepError(KagflowError):
    pass


def run_flow(session, *, from_step: Optional[str] = None, local_train: bool = False,
             log: Callable[[str], None] = print, on_poll: Optional[Callable] = None,
             folds: tuple[int, ...] = ()) -> FlowReport:
    """Run every unfinished step of ``STEPS`` in order (``from_step``: redo from that one on).

    ``folds`` (checked by kagflow.workflow.folds): train each fold as its own kernel version, publish each
    adapter as its own version, and infer with their ensemble."""
    if from_step is not None and from_step not in STEP_NAMES:
        raise KagflowError(f"unknown step {from_step!r}", hint="one of " + ", ".join(STEP_NAMES))
    forced = STEP_NAMES[STEP_NAMES.index(from_step):] if from_step else ()
    state = session.state
    if forced:
        state.forget_steps(forced)
        if "train" in forced:
            state.forget_folds()
    if folds and state.step_done("train") and set(folds) - set(state.folds):
        state.forget_steps(STEP_NAMES[STEP_NAMES.index("train"):])  # new folds asked for: train them, re-ensemble
    endpoint = session.endpoint
    facts = session.config.data.facts
    report = FlowReport(endpoint.describe(), local_server=session.target.kept_running(endpoint),
                        metric=facts.display, direction=facts.direction, metric_name=facts.name)
    ctx = StepContext(frozenset(forced), local_train, on_poll, folds)
    asked = False  # the target asked (kagflow.workflow.online.preflight) before the first upload
    for step in STEPS:
        if state.step_done(step.name):
            summary = state.flow[step.name].summary
            log(f"[{step.name}] done earlier: {summary}")
            report.summaries[step.name] = summary
            continue
        if step.uploads and not asked:
            asked = True
            preflight(session, log)
        log(f"[{step.name}] ...")
        start = time.monotonic()
        try:
            result = step.run(session, ctx)
        except KeyboardInterrupt:
            log(f"[{step.name}] interrupted; resume with: make submit  (or kagflow flow)")
            raise
        except KagflowError as e:
            raise FlowStepError(f"step {step.name!r} failed: {e.message}", context=e.context,
                                hint=(e.hint + "; then " if e.hint else "") +
                                f"resume with `make submit` (or `kagflow flow --from {step.name}`)") from None
        seconds = round(time.monotonic() - start, 1)
        state.record_step(step.name, StepRecord(True, result.summary, seconds, result.made))
        report.steps_run.append(step.name)
        report.summaries[step.name] = result.summary
        log(f"[{step.name}] {result.summary} ({seconds:.1f}s)")
    report.read_state(state)
    report.read_folds(state, folds, session.config.data.task())
    report.data_note = session.target.data_note()
    return report
