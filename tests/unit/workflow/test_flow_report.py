"""The flow's report names each figure's version and never mixes versions: after a flow made train v1, its adapter
and a submission of infer v1, a training version pushed and pulled by hand (v4) stays out of the report (a note
names it), and the flow's later steps keep to the versions the flow made."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

from kagflow.project.config import ADAPTER_MODEL
from kagflow.project.state import KernelRecord, Made, ModelRecord, ProjectState, StepRecord, SubmissionRecord
from kagflow.workflow.flow import FlowReport
from kagflow.workflow.steps import StepContext, adapter, submit

PNG = b"\x89PNG\r\n\x1a\n"
ADAPTER_V1 = "alice/gemma2-arena-adapter/transformers/peft-lora-classifier/1"


def _train_output(root: Path, version: int, log_loss: float) -> Path:
    out = root / "kernels" / "gemma2-qlora-arena-train" / "output" / f"v{version}"
    (out / "gemma2-adapter").mkdir(parents=True)
    (out / "gemma2-adapter" / "adapter_config.json").write_text("{}")
    (out / "metrics.json").write_text(json.dumps({"log_loss": log_loss, "accuracy": 0.5, "macro_f1": 0.4}))
    for name in ("confusion_matrix.png", "loss_curve.png"):
        (out / name).write_bytes(PNG + bytes(version))
    return out


def _flow_then_manual_push(tmp_path: Path) -> tuple[ProjectState, Path, Path]:
    """The state a flow leaves (train v1 -> adapter v1 -> infer v1 -> submission 7), then `kagflow kernel push
    train` three times and `kagflow kernel pull train` (v4)."""
    state = ProjectState.load(tmp_path / ".kagflow" / "state-local.json")
    v1 = _train_output(tmp_path, 1, 0.7004)
    infer = tmp_path / "kernels" / "gemma2-qlora-arena-infer" / "output" / "v1"
    infer.mkdir(parents=True)
    (infer / "submission.csv").write_text("id,winner_model_a,winner_model_b,winner_tie\n")
    state.record_kernel("train", KernelRecord("alice/gemma2-qlora-arena-train", 1, "d1", str(v1)))
    state.record_model(ADAPTER_MODEL, ModelRecord(ADAPTER_V1, 1))
    state.record_kernel("infer", KernelRecord("alice/gemma2-qlora-arena-infer", 1, "i1", str(infer)))
    state.record_submission(SubmissionRecord("7", "alice/gemma2-qlora-arena-infer", 1, "COMPLETE", 0.6123))
    for step, made in (("train", Made(1, str(v1))), ("adapter", Made(1, str(v1), [ADAPTER_V1])),
                       ("infer", Made(1, str(infer))), ("submit", Made(1, ref="7", score=0.6123))):
        state.record_step(step, StepRecord(True, f"{step} done", 1.0, made))
    v4 = _train_output(tmp_path, 4, 0.6500)
    state.record_kernel("train", KernelRecord("alice/gemma2-qlora-arena-train", 4, "d4"))  # kernel push
    state.record_output("train", v4, version=4)                                              # kernel pull
    return ProjectState.load(state.path), v1, v4


def test_after_manual_pushes_the_report_keeps_to_the_flows_versions_and_names_them(tmp_path):
    state, v1, v4 = _flow_then_manual_push(tmp_path)
    report = FlowReport("the local Kaggle", metric="log loss", direction="lower is better")
    report.read_state(state)
    lines = report.lines()
    text = "\n".join(lines)
    assert f"  confusion matrix: {v1 / 'confusion_matrix.png'} (train v1)" in lines, text
    assert f"  loss curve: {v1 / 'loss_curve.png'} (train v1)" in lines, text
    assert "  validation: log_loss 0.7004, accuracy 0.5000, macro_f1 0.4000 (train v1)" in lines, text
    assert f"  published adapter_model: {ADAPTER_V1} (from train v1)" in lines, text
    assert "  kernel train: version 1" in lines and "  kernel infer: version 1" in lines, text
    assert any(line.startswith("  submission.csv: ") and line.endswith("/v1/submission.csv (infer v1)")
               for line in lines), text
    assert "  score (log loss): 0.6123 (lower is better; submission 7 of infer v1)" in lines, text
    assert str(v4) not in text and "0.6500" not in text  # v4's figures never beside v1's adapter and submission
    assert [line for line in lines if "version 4" in line] == [
        "  note: kernel train has version 4 since (made outside this flow; this report is of version 1; "
        "`kagflow flow --from train` redoes the flow from that step)"]
    assert report.to_dict()["figures_of"] == "train v1" and report.to_dict()["kernels"] == {"train": 1, "infer": 1}


class Recorder:
    """A session of the flow's steps: the real state; publish and submit noted, not sent."""

    def __init__(self, state: ProjectState):
        self.state, self.calls = state, []

    def adapter_dir(self, output):
        return Path(output) / "gemma2-adapter"

    def publish(self, which, *, source=None, notes=""):
        self.calls.append(("publish", which, source, notes))
        return SimpleNamespace(source=ADAPTER_V1.replace("/1", "/2"), uploaded=True)

    def kernel_version(self, name):
        return self.state.kernel(name).version

    def submit(self, name, *, version=None, on_poll=None):
        self.calls.append(("submit", name, version))
        return SimpleNamespace(ref="8", status="COMPLETE", public_score=0.6)


def test_the_steps_after_training_use_what_the_flow_made_not_a_version_pushed_since(tmp_path):
    state, v1, v4 = _flow_then_manual_push(tmp_path)
    session = Recorder(state)
    made = adapter(session, StepContext(forced=frozenset({"adapter"}))).made
    assert session.calls == [("publish", ADAPTER_MODEL, v1 / "gemma2-adapter", "training version 1")]
    assert (made.version, made.output) == (1, str(v1))
    state.record_kernel("infer", KernelRecord("alice/gemma2-qlora-arena-infer", 2, "i2"))  # pushed by hand
    assert submit(session, StepContext()).made == Made(1, ref="8", score=0.6)
    assert session.calls[-1] == ("submit", "infer", 1)
