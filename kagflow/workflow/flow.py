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

from kagflow.errors import KagflowError
from kagflow.project.config import INFER_KERNEL, TRAIN_KERNEL
from kagflow.project.state import ProjectState, StepRecord
from kagflow.workflow.folds import oof_log_loss
from kagflow.workflow.online import preflight
from kagflow.workflow.steps import STEP_NAMES, STEPS, StepContext


@dataclass
class FlowReport:
    target: str
    steps_run: list[str] = field(default_factory=list)
    summaries: dict = field(default_factory=dict)  # step name -> its one-line result
    published: dict = field(default_factory=dict)
    kernels: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)
    confusion_matrix: str = ""
    submission: str = ""
    score: Optional[float] = None
    local_server: str = ""  # the background local Kaggle's URL, when the flow used one
    metric: str = ""  # [data] metric in words ("log loss")
    direction: str = ""  # "lower is better" | "higher is better"
    metric_name: str = ""  # [data] metric, the key of the training's metrics.json shown first
    data_note: str = ""  # Target.data_note: says when the data were synthetic
    folds: list = field(default_factory=list)  # per fold: fold, version, log_loss, adapter
    oof_log_loss: Optional[float] = None  # the ensemble's out-of-fold estimate
    oof_rows: int = 0

    def read_state(self, state: ProjectState) -> None:
        """What the steps produced, now or on an earlier run, as the state file records it."""
        self.published = {which: record.source for which, record in state.models.items()}
        self.kernels = {name: record.version for name, record in state.kernels.items()
                        if name in (TRAIN_KERNEL, INFER_KERNEL) and record.version}
        train_out = state.kernel(TRAIN_KERNEL).output
        if train_out:
            found = sorted(Path(train_out).rglob("metrics.json"))
            if found:
                self.metrics = json.loads(found[0].read_text())
            png = sorted(Path(train_out).rglob("confusion_matrix.png"))
            self.confusion_matrix = str(png[0]) if png else ""
        infer_out = state.kernel(INFER_KERNEL).output
        if infer_out and (Path(infer_out) / "submission.csv").is_file():
            self.submission = str(Path(infer_out) / "submission.csv")
        self.score = state.submission.score if state.submission else None

    def read_folds(self, state: ProjectState, folds) -> None:
        records = [state.folds[f] for f in folds if f in state.folds]
        self.folds = [asdict(r) for r in records]
        self.oof_log_loss, self.oof_rows = oof_log_loss(Path(r.output) for r in records if r.output)

    def to_dict(self) -> dict:
        return asdict(self)

    def lines(self) -> list[str]:
        out = [f"kagflow flow report ({self.target})",
               f"  steps run now: {', '.join(self.steps_run) or 'none (everything was already done)'}"]
        for which, source in self.published.items():
            out.append(f"  published {which}: {source}")
        for name, version in self.kernels.items():
            out.append(f"  kernel {name}: version {version}")
        if self.data_note:
            out.append(f"  data: {self.data_note}")
        m = self.metrics
        if m:
            shown = dict.fromkeys((self.metric_name, "log_loss", "accuracy", "macro_f1", "roc_auc", "map_at_3"))
            out.append("  validation: " + ", ".join(f"{k} {m[k]:.4f}" for k in shown
                                                   if isinstance(m.get(k), (int, float))))
        for f in self.folds:
            loss = f"{f['log_loss']:.4f}" if f["log_loss"] is not None else "-"
            out.append(f"  fold {f['fold']}: train version {f['version'] or 'local'}, validation log loss {loss}, "
                       f"adapter {f['adapter'] or '-'}")
        if self.folds:
            oof = f"{self.oof_log_loss:.4f}" if self.oof_log_loss is not None else "-"
            out.append(f"  ensemble of {len(self.folds)} fold(s): out-of-fold log loss {oof} ({self.oof_rows} rows)")
        if self.confusion_matrix:
            out.append(f"  confusion matrix: {self.confusion_matrix}")
        if self.submission:
            out.append(f"  submission.csv: {self.submission}")
        out.append(f"  score ({self.metric}): {self.score if self.score is not None else '-'} ({self.direction}"
                   + ("; on SYNTHETIC data)" if self.data_note else ")"))
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
        state.record_step(step.name, StepRecord(True, result.summary, seconds))
        report.steps_run.append(step.name)
        report.summaries[step.name] = result.summary
        log(f"[{step.name}] {result.summary} ({seconds:.1f}s)")
    report.read_state(state)
    report.read_folds(state, folds)
    report.data_note = session.target.data_note()
    return report
