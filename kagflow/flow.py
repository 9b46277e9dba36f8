"""`make submit`: the whole competition flow as one linear function, resumable step by step.

setup → base → wheels → train → adapter → infer → submit. Each finished step is recorded in
the target's state file (``.kagflow/state-<target>.json``); a re-run starts at the first
unfinished step, and each step is itself safe to repeat (content digests, look-before-create).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

from kagflow.config import Config
from kagflow.errors import KagflowError
from kagflow.state import State

STEPS = ("setup", "base", "wheels", "train", "adapter", "infer", "submit")


@dataclass
class FlowReport:
    target: str
    steps_run: list[str] = field(default_factory=list)
    published: dict = field(default_factory=dict)
    kernels: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)
    confusion_matrix: str = ""
    submission: str = ""
    score: Optional[float] = None
    local_server: str = ""  # the background local Kaggle's URL, when the flow started or used one

    def lines(self) -> list[str]:
        out = [f"kagflow flow report ({self.target})",
               f"  steps run now: {', '.join(self.steps_run) or 'none (everything was already done)'}"]
        for which, source in self.published.items():
            out.append(f"  published {which}: {source}")
        for name, version in self.kernels.items():
            out.append(f"  kernel {name}: version {version}")
        m = self.metrics
        if m:
            out.append("  validation: " + ", ".join(f"{k} {m[k]:.4f}" for k in ("log_loss", "accuracy", "macro_f1")
                                                   if isinstance(m.get(k), (int, float))))
        if self.confusion_matrix:
            out.append(f"  confusion matrix: {self.confusion_matrix}")
        if self.submission:
            out.append(f"  submission.csv: {self.submission}")
        out.append(f"  score (log loss): {self.score if self.score is not None else '-'}")
        return out


class FlowStepError(KagflowError):
    pass


def run_flow(config: Config, *, from_step: Optional[str] = None, local_train: bool = False,
             log: Callable[[str], None] = print, on_poll: Optional[Callable] = None) -> FlowReport:
    from kagflow import steps
    from kagflow.hub.common import connect
    from kagflow.wheelset import build_for_project

    if from_step is not None and from_step not in STEPS:
        raise KagflowError(f"unknown step {from_step!r}", hint="one of " + ", ".join(STEPS))
    gw = connect(config)
    state = State.for_project(config.root, gw.target.kind)
    if from_step:
        for step in STEPS[STEPS.index(from_step):]:
            state.delete("flow", step)
    report = FlowReport(gw.target.describe(), local_server=gw.target.endpoint if gw.target.is_local else "")
    forced = set(STEPS[STEPS.index(from_step):]) if from_step else set()

    def run(step: str, fn: Callable[[], str]) -> None:
        if state.get("flow", step, "done"):
            log(f"[{step}] done earlier: {state.get('flow', step, 'summary', default='')}")
            return
        log(f"[{step}] ...")
        start = time.monotonic()
        try:
            summary = fn()
        except KeyboardInterrupt:
            log(f"[{step}] interrupted; resume with: make submit  (or kagflow flow)")
            raise
        except KagflowError as e:
            raise FlowStepError(f"step {step!r} failed: {e.message}", context=e.context,
                                hint=(e.hint + "; then " if e.hint else "") +
                                f"resume with `make submit` (or `kagflow flow --from {step}`)") from None
        state.set("flow", step, value={"done": True, "summary": summary, "seconds": round(time.monotonic() - start, 1)})
        report.steps_run.append(step)
        log(f"[{step}] {summary} ({time.monotonic() - start:.1f}s)")

    def setup() -> str:
        if gw.target.is_local:
            steps.install_local_competition(config, gw)
            if steps.uses_tiny(config, gw):
                path = steps.ensure_stand_in(config)
                return (f"local competition {config.project.competition} hosted; "
                        f"stand-in {config.base_model.stand_in} ready in {path}")
            return f"local competition {config.project.competition} hosted"
        return f"target {gw.target.describe()} as {gw.username}"

    def base() -> str:
        result = steps.publish_model(gw, config, state, "base_model")
        return f"{result.source} ({'uploaded' if result.uploaded else 'unchanged'})"

    def wheels() -> str:
        built = build_for_project(config, local=gw.target.is_local)
        pushed = steps.push_wheels(gw, config, state)
        return (f"{built.dataset_id}: {len(built.wheels)} wheel(s), {built.total_size / 1e6:.1f} MB, "
                f"{'uploaded' if pushed.uploaded else 'unchanged'}")

    def train() -> str:
        if local_train:
            from kagflow.localrun import run_local

            result = run_local(config, "train")
            if result.status != "COMPLETE":
                raise KagflowError(f"local training failed: {result.failure}", context=str(result.log))
            state.set("kernels", "train", "output", value=str(result.output))
            return f"trained on this machine into {result.output}"
        pushed = steps.push_kernel(gw, config, state, "train", force="train" in forced)
        steps.wait_kernel(gw, config, state, "train", version=pushed.version, on_poll=on_poll)
        out = steps.pull_kernel(gw, config, state, "train", version=pushed.version)
        return f"version {pushed.version} complete, output in {out}"

    def adapter() -> str:
        result = steps.publish_model(gw, config, state, "adapter_model")
        return f"{result.source} ({'uploaded' if result.uploaded else 'unchanged'})"

    def infer() -> str:
        pushed = steps.push_kernel(gw, config, state, "infer", force="infer" in forced)
        steps.wait_kernel(gw, config, state, "infer", version=pushed.version, on_poll=on_poll)
        out = steps.pull_kernel(gw, config, state, "infer", version=pushed.version)
        if not (out / "submission.csv").is_file():
            raise KagflowError(f"the inference kernel wrote no submission.csv into {out}",
                               hint="check the log: kagflow kernel logs infer")
        return f"version {pushed.version} complete, submission.csv in {out}"

    def submit() -> str:
        sub = steps.submit(gw, config, state, "infer", on_poll=on_poll)
        return f"submission {sub.ref} {sub.status}, score {sub.public_score}"

    for name, fn in (("setup", setup), ("base", base), ("wheels", wheels), ("train", train),
                     ("adapter", adapter), ("infer", infer), ("submit", submit)):
        run(name, fn)

    for which in ("base_model", "adapter_model"):
        source = state.get("models", which, "source")
        if source:
            report.published[which] = source
    for name in ("train", "infer"):
        version = state.get("kernels", name, "version")
        if version:
            report.kernels[name] = version
    train_out = state.get("kernels", "train", "output")
    if train_out:
        found = sorted(Path(train_out).rglob("metrics.json"))
        if found:
            report.metrics = json.loads(found[0].read_text())
        png = sorted(Path(train_out).rglob("confusion_matrix.png"))
        report.confusion_matrix = str(png[0]) if png else ""
    infer_out = state.get("kernels", "infer", "output")
    if infer_out and (Path(infer_out) / "submission.csv").is_file():
        report.submission = str(Path(infer_out) / "submission.csv")
    report.score = state.get("submission", "score")
    return report
