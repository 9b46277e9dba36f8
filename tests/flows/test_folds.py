"""Folds and ensembles on the local Kaggle (tiny model, CPU): `kagflow flow --folds 0-1` trains two
kernel versions, publishes two adapter versions, submits their ensemble, and the ensemble scores at
least as well as the worse fold; status and submissions show what the flow did."""

from __future__ import annotations

import csv
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from kagflow.classifier.task import Task
from kagflow.errors import ConfigError, DataError
from kagflow.workflow.folds import check_folds, oof_score, parse_folds

from repo_root import REPO

COLUMNS = ("winner_model_a", "winner_model_b", "winner_tie")


def test_parse_folds():
    assert parse_folds("0-4", 5) == (0, 1, 2, 3, 4)
    assert parse_folds("3, 1,1", 5) == (3, 1)
    assert check_folds((), 5) == ()
    for bad in ("5", "a-b", "", "2-7"):
        with pytest.raises(ConfigError):
            parse_folds(bad, 5)


def _predictions(folder, rows, columns) -> None:
    folder.mkdir()
    with open(folder / "val_predictions.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "label", *columns])
        w.writerows([i, y, *p] for i, y, p in rows)


def test_oof_log_loss_pools_every_fold(tmp_path):
    for fold, rows in ((0, [("1", 0, (0.5, 0.25, 0.25))]), (1, [("2", 2, (0.2, 0.2, 0.6)), ("3", 1, (0.1, 0.8, 0.1))])):
        _predictions(tmp_path / f"f{fold}", rows, COLUMNS)
    loss, n = oof_score([tmp_path / "f0", tmp_path / "f1"], Task.lmsys())
    assert n == 3 and loss == pytest.approx(-(math.log(0.5) + math.log(0.6) + math.log(0.8)) / 3)


def test_the_out_of_fold_estimate_is_the_data_tables_metric_over_its_labels(tmp_path):
    """The bug: the estimate read LMSYS's three columns and log loss whatever [data] said (a KeyError on WSDM's
    model_a,model_b predictions)."""
    wsdm = Task.from_params({"label_columns": [], "label_column": "winner", "labels": ["model_a", "model_b"],
                             "submission": "label", "metric": "accuracy"})
    _predictions(tmp_path / "f0", [("1", 0, (0.9, 0.1)), ("2", 1, (0.6, 0.4))], wsdm.probability_columns)
    _predictions(tmp_path / "f1", [("3", 1, (0.2, 0.8)), ("4", 0, (0.7, 0.3))], wsdm.probability_columns)
    assert oof_score([tmp_path / "f0", tmp_path / "f1"], wsdm) == (0.75, 4)
    assert oof_score([tmp_path / "none"], wsdm) == (None, 0)
    with pytest.raises(DataError) as err:  # predictions of another [data] table: refused, not misread
        oof_score([tmp_path / "f0"], Task.lmsys())
    assert "has no column(s) ['winner_model_a', 'winner_model_b', 'winner_tie']" in err.value.message
    assert "kagflow flow --from train" in err.value.hint


def test_the_report_names_each_folds_metric(tmp_path):
    from kagflow.workflow.flow import FlowReport

    report = FlowReport("local", metric="accuracy", direction="higher is better", metric_name="accuracy",
                        folds=[{"fold": 0, "version": 1, "output": "", "score": 0.81, "metric": "accuracy",
                                "adapter": "a/b/transformers/c/1", "confusion_matrix": "", "loss_curve": ""}],
                        oof_score=0.8, oof_rows=40)
    text = "\n".join(report.lines())
    assert "fold 0: train version 1, validation accuracy 0.8100, adapter a/b/transformers/c/1" in text
    assert "ensemble of 1 fold(s): out-of-fold accuracy 0.8000 (40 rows)" in text


def _log_loss(submission: Path, solution: Path) -> float:
    truth = {r["id"]: [float(r[c]) for c in COLUMNS] for r in csv.DictReader(open(solution))}
    total = 0.0
    rows = list(csv.DictReader(open(submission)))
    for r in rows:
        p = [float(r[c]) for c in COLUMNS]
        total -= sum(t * math.log(max(q / sum(p), 1e-15)) for t, q in zip(truth[r["id"]], p))
    return total / len(rows)


def _run(root: Path, env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "kagflow", *args], cwd=root, env=env, capture_output=True,
                          text=True, timeout=1800)


@pytest.mark.slow
def test_two_fold_flow_publishes_two_adapters_and_the_ensemble_beats_the_worse_fold(tmp_path, isolation):
    from test_flow import _env

    root = tmp_path / "clone"
    root.mkdir()
    text = (REPO / "kagflow.toml").read_text()
    text = text.replace("n_train = 2000", "n_train = 600").replace("n_test = 300", "n_test = 120")
    text = text.replace("n_epochs = 5.0", "n_epochs = 3.0")
    (root / "kagflow.toml").write_text(text)
    env = _env(Path(isolation))  # the flow tests' fresh user: offline pip, the machine's local image cache
    try:
        done = _run(root, env, "flow", "--folds", "0-1")
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-5000:]
        report = done.stdout
        assert "fold 0: train version 1, validation log loss" in report
        assert "fold 1: train version 2, validation log loss" in report
        assert "ensemble of 2 fold(s): out-of-fold log loss" in report
        state = json.loads((root / ".kagflow" / "state-local.json").read_text())
        adapters = [state["folds"][k]["adapter"] for k in ("0", "1")]
        assert [a.rsplit("/", 1)[1] for a in adapters] == ["1", "2"]  # two versions of the adapter instance
        assert state["versions"]["train"]["1"]["params"] == {"fold_idx": 0}
        assert state["versions"]["train"]["2"]["params"] == {"fold_idx": 1}

        infer_out = Path(state["kernels"]["infer"]["output"])
        meta = json.loads((infer_out.parent.parent / "kernel-metadata.json").read_text())
        assert set(adapters) <= set(meta["model_sources"])
        assert (infer_out / "submission.adapter0.csv").is_file() and (infer_out / "submission.adapter1.csv").is_file()
        # the submission re-ran the notebook on the hidden test set: score each member of that run
        rerun = (root / ".kagflow" / "local" / "runs" / state["kernels"]["infer"]["handle"] /
                 f"submission-{state['submission']['ref']}" / "working")
        solution = root / ".kagflow" / "competition" / "llm-classification-finetuning" / "solution.csv"
        members = [_log_loss(rerun / f"submission.adapter{i}.csv", solution) for i in (0, 1)]
        score = state["submission"]["score"]
        assert score == pytest.approx(_log_loss(rerun / "submission.csv", solution), abs=1e-4)
        assert members[0] != pytest.approx(members[1], abs=1e-6)  # two different adapters
        assert score <= max(members) + 1e-4, (score, members)  # the server rounds the score

        status = _run(root, env, "status", "--json")
        assert status.returncode == 0, status.stderr
        day = json.loads(status.stdout)
        kernels = {k["name"]: k for k in day["kernels"]}
        assert kernels["train"]["version"] == 2 and kernels["train"]["status"] == "COMPLETE"
        assert kernels["train"]["params"] == {"fold_idx": 1} and kernels["train"]["run_seconds"] > 0
        assert kernels["infer"]["version"] == 1 and kernels["infer"]["status"] == "COMPLETE"
        assert day["models"]["adapter_model"].endswith("/2")
        assert day["best"]["score"] == pytest.approx(score) and day["gpu_quota"]["used_s"] > 0
        subs = _run(root, env, "submissions", "--json")
        [sub] = json.loads(subs.stdout)["submissions"]
        assert sub["kernel_version"] == 1 and sorted(sub["adapters"]) == sorted(adapters)
    finally:
        from kagflow.local.control import stop_background_server

        stop_background_server(root / ".kagflow" / "local")
