"""Other competitions end to end on the local Kaggle (tiny model, CPU): each a project of its own with its own
``[data]`` table, its files hosted as a user hosts them (``kagflow local competition --files DIR --metric NAME
--accept-rules``), then the real ``kagflow flow``: training kernel, adapter, inference kernel, and the code
submission re-run on the hidden test set, scored by the competition's metric. Each learns its signal (a score
clearly better than chance, in the metric's direction) and submits the competition's columns.

The three share what a user's projects share on one machine: one local Kaggle (each project points at it with
``KAGFLOW_KAGGLE_ENDPOINT``), the home's wheel cache and the base model (the same tiny weights, published once); and,
to publish it once too, one wheels dataset title (its content is the same for every competition). LLM Classification
Finetuning is tests/flows/test_flow.py's.
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1200)]

SHARED_WHEELS = "kagflow offline wheels"  # one dataset for the three projects: the same wheels for any competition
# The cheapest recipe that still learns each signal clearly: fold 0's 320 training rows, 3 epochs, 64 tokens, about
# 20 s of training (validation: WSDM accuracy 0.86, AUC 0.95, 5-class macro-F1 0.68); each whole flow about 100 s,
# most of it the three kernel runs' installs and imports (hidden re-run: accuracy 0.905, AUC 0.951, macro-F1 0.642)
N_TRAIN, N_TEST, N_PUBLIC = 400, 200, 3
RECIPE = {"n_epochs": 3.0, "max_length": 64}


@dataclass(frozen=True)
class Competition:
    slug: str
    data: dict  # its [data] table
    text_format: str  # the synthetic cells: "plain" text or JSON "turns"
    chance: float  # the metric of a guess: what the score must clearly beat
    margin: float  # how far beyond chance, in the metric's direction

    @property
    def higher_is_better(self) -> bool:
        from kagflow.rules.metrics import metric

        return metric(self.data["metric"]).higher_is_better


COMPETITIONS = {
    # WSDM Cup – Multilingual Chatbot Arena: two labels in one column, plain text, accuracy, id,winner
    "wsdm": Competition("wsdm-cup-multilingual-chatbot-arena", {
        "text_columns": ["prompt", "response_a", "response_b"], "swap_columns": ["response_a", "response_b"],
        "label_columns": [], "label_column": "winner", "labels": ["model_a", "model_b"], "submission": "label",
        "metric": "accuracy"}, "plain", chance=0.5, margin=0.2),
    # LLM – Detect AI Generated Text: one text, binary, P(generated) scored by ROC AUC
    "detect": Competition("llm-detect-ai-generated-text", {
        "text_columns": ["text"], "swap_columns": [], "label_columns": [], "label_column": "generated",
        "labels": ["0", "1"], "submission": "positive_probability", "metric": "roc_auc"}, "plain", chance=0.5,
        margin=0.25),
    # five classes in one column, its own id column, JSON turns, macro-F1
    "five": Competition("five-class-essay-grades", {
        "id_column": "essay_id", "text_columns": ["full_text"], "swap_columns": [], "label_columns": [],
        "label_column": "score", "labels": ["1", "2", "3", "4", "5"], "submission": "label", "metric": "macro_f1"},
        "turns", chance=0.2, margin=0.2),
}


@pytest.fixture(scope="module")
def machine(tmp_path_factory):
    """One user's machine: a home (its wheel cache and offline pip), and one local Kaggle every project talks to."""
    from test_flow import _env

    from kagflow.hub.endpoint import ENDPOINT_ENV
    from kagflow.local.control import ensure_background_server, stop_background_server
    from kagflow.local.env import CONSISTENCY_ENV

    home = tmp_path_factory.mktemp("user")
    env = _env(home)
    env.pop(CONSISTENCY_ENV)  # the server is this fixture's (instant); test_flow.py meets Kaggle's delays
    data = home / "local-kaggle"
    env[ENDPOINT_ENV] = ensure_background_server(data)
    yield env, data
    stop_background_server(data)


def _kagflow(root: Path, env: dict, *args: str, timeout: int = 900) -> subprocess.CompletedProcess:
    done = subprocess.run([sys.executable, "-m", "kagflow", *args], cwd=root, env=env, capture_output=True,
                          text=True, timeout=timeout)
    assert done.returncode == 0, f"kagflow {' '.join(args)}:\n" + done.stdout[-3000:] + done.stderr[-5000:]
    return done


def _project(root: Path, env: dict, competition: Competition) -> Path:
    """`kagflow init --competition SLUG`, then the edits a user makes: the [data] table, the tiny model's recipe,
    the shared wheels title."""
    import tomlkit

    _kagflow(root.parent, env, "init", str(root), "--competition", competition.slug)
    path = root / "kagflow.toml"
    doc = tomlkit.parse(path.read_text())
    assert doc["kernels"]["train"]["title"] != "Gemma2 QLoRA arena train"  # init titled it after the competition
    doc["data"].update(competition.data)
    doc["tiny"]["train"].update(RECIPE)
    doc["tiny"]["infer"]["max_length"] = RECIPE["max_length"]
    doc["wheels"]["title"] = SHARED_WHEELS
    path.write_text(tomlkit.dumps(doc))
    return root


def _rows(path: Path) -> tuple[list, list]:
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        header = next(reader)
        return header, list(reader)


@pytest.mark.parametrize("name", list(COMPETITIONS))
def test_a_competition_by_its_data_table_learns_and_submits_through_the_hidden_rerun(name, machine, tmp_path):
    from kagflow.classifier.synth import write_synthetic_competition
    from kagflow.classifier.task import Task
    from kagflow.rules.metrics import metric

    env, server_data = machine
    competition = COMPETITIONS[name]
    root = _project(tmp_path / name, env, competition)
    task = Task.from_params(competition.data)
    files = write_synthetic_competition(tmp_path / "files", task=task, text_format=competition.text_format,
                                        n_train=N_TRAIN, n_test=N_TEST, n_public=N_PUBLIC, seed=1)
    hosted = _kagflow(root, env, "local", "competition", "--files", str(tmp_path / "files"), "--metric",
                      task.metric, "--accept-rules")
    assert f"Competition {competition.slug} hosted locally; rules accepted" in hosted.stdout
    check = _kagflow(root, env, "check")  # the hosted files against [data], before anything is pushed
    assert "no problems found" in check.stdout, check.stdout

    flow = _kagflow(root, env, "flow")
    facts = metric(task.metric)
    report = flow.stdout
    assert f"score ({facts.display}):" in report and facts.direction in report and "SYNTHETIC" not in report
    assert f"validation: {task.metric}" in report
    state = json.loads((root / ".kagflow" / "state-local.json").read_text())
    score = state["submission"]["score"]
    beyond = score - competition.chance if competition.higher_is_better else competition.chance - score
    assert beyond > competition.margin, (name, score, report)

    # the kernel's submission.csv, and the one of the re-run on the hidden test set that was scored
    infer = state["kernels"]["infer"]
    rerun = server_data / "runs" / infer["handle"] / f"submission-{state['submission']['ref']}" / "working"
    hidden_ids = [r[0] for r in _rows(files["hidden_test"])[1]]
    for path, ids in ((Path(infer["output"]) / "submission.csv", hidden_ids[:N_PUBLIC]),
                      (rerun / "submission.csv", hidden_ids)):
        header, rows = _rows(path)
        assert tuple(header) == task.submission_columns, (path, header)
        assert [r[0] for r in rows] == ids
        if task.submission == "label":
            assert {r[1] for r in rows} <= set(task.labels)
        else:
            assert all(0 <= float(r[1]) <= 1 for r in rows)
    steps = [ln for ln in (flow.stdout + flow.stderr).splitlines() if ln.startswith("[") and ln.endswith("s)")]
    print(f"{name}: {facts.display} {score} (chance {competition.chance}); " + "; ".join(steps))
