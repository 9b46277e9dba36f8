"""[infer] temperature's arithmetic (``classifier.calibration``) and its fit on out-of-fold predictions
(``workflow.folds.oof_temperature``), on deliberately over-confident predictions."""

import numpy as np
import pytest

from kagflow.classifier.calibration import apply_temperature, fit_temperature, log_loss
from kagflow.classifier.metrics import write_predictions
from kagflow.classifier.task import Task
from kagflow.errors import DataError
from kagflow.workflow.folds import PREDICTIONS, oof_temperature


def _overconfident(n=600, seed=0, sharpen=4.0):
    """Labels drawn from calibrated probabilities, then the probabilities sharpened (logits x ``sharpen``)."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(n, 3))
    p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    labels = np.array([rng.choice(3, p=row) for row in p])
    sharp = np.exp(sharpen * logits)
    return labels, sharp / sharp.sum(axis=1, keepdims=True)


def test_the_fitted_temperature_undoes_over_confidence():
    labels, probs = _overconfident()
    t = fit_temperature(labels, probs)
    assert 3.0 < t < 5.5  # the sharpening was x4 on the logits
    assert log_loss(labels, apply_temperature(probs, t)) < log_loss(labels, probs) - 0.2
    assert (apply_temperature(probs, t).argmax(axis=1) == probs.argmax(axis=1)).all()  # never the argmax
    np.testing.assert_array_equal(apply_temperature(probs, 1.0), probs)  # T = 1 changes nothing
    calibrated = apply_temperature(probs, t)
    assert fit_temperature(labels, calibrated) == pytest.approx(1.0, abs=0.05)


def test_oof_temperature_pools_the_folds_and_skips_argmax_metrics(tmp_path):
    labels, probs = _overconfident()
    task = Task()
    for fold, rows in enumerate(np.array_split(np.arange(len(labels)), 2)):
        out = tmp_path / f"fold{fold}"
        out.mkdir()
        write_predictions(out / PREDICTIONS, [str(i) for i in rows], labels[rows].tolist(), probs[rows],
                          task.probability_columns)
    fitted = oof_temperature([tmp_path / "fold0", tmp_path / "fold1"], task)
    assert fitted.value == pytest.approx(fit_temperature(labels, probs), rel=1e-3)
    assert "600 out-of-fold rows" in fitted.line and "->" in fitted.line
    one = oof_temperature([tmp_path / "fold0"], task)
    assert "300 out-of-fold rows" in one.line
    accuracy = oof_temperature([tmp_path / "fold0"], Task(metric="accuracy"))
    assert accuracy.value == 1.0 and "not fitted" in accuracy.line
    with pytest.raises(DataError, match="no val_predictions.csv"):
        oof_temperature([tmp_path / "nothing"], task)


def test_the_flow_infer_step_pushes_the_fitted_temperature(tmp_path):
    """[infer] temperature = "oof": `kagflow flow`'s infer step pushes the T fitted on the folds' predictions as the
    kernel's temperature parameter (with "none": no override)."""
    from types import SimpleNamespace

    from kagflow.classifier.config import InferConfig
    from kagflow.project.state import FoldRecord
    from kagflow.workflow import steps

    labels, probs = _overconfident()
    folds = {}
    for fold, rows in enumerate(np.array_split(np.arange(len(labels)), 2)):
        out = tmp_path / f"fold{fold}"
        out.mkdir()
        write_predictions(out / PREDICTIONS, [str(i) for i in rows], labels[rows].tolist(), probs[rows],
                          Task().probability_columns)
        folds[fold] = FoldRecord(fold, 1, str(out), adapter=f"me/m/transformers/default/{fold + 1}")
    (tmp_path / "submission.csv").write_text("id\n")
    pushes, lines = [], []
    session = SimpleNamespace(
        config=SimpleNamespace(infer=InferConfig(temperature="oof"), data=SimpleNamespace(task=Task)),
        state=SimpleNamespace(folds=folds), log=lines.append,
        push=lambda name, **kw: pushes.append(kw) or SimpleNamespace(version=3),
        wait=lambda name, version: None, pull=lambda name, version: tmp_path)
    steps.infer(session, steps.StepContext(folds=(0, 1)))
    assert pushes[0]["overrides"]["temperature"] == pytest.approx(fit_temperature(labels, probs), rel=1e-3)
    assert pushes[0]["adapters"] == ("me/m/transformers/default/1", "me/m/transformers/default/2")
    assert "600 out-of-fold rows" in lines[0]
    session.config = SimpleNamespace(infer=InferConfig(), data=SimpleNamespace(task=Task))
    steps.infer(session, steps.StepContext(folds=(0, 1)))
    assert "overrides" not in pushes[1]
