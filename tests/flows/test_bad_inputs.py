"""Broken inputs a user can hand kagflow: a corrupted state file, a broken kagflow.toml, competition CSVs with
wrong columns, NaN cells or a huge row. Each ends in one clear error naming the file and the field, with the fix,
through the command line as a user meets it; never a traceback, never a silently wrong result."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from local_fixtures import *  # noqa: F401,F403  (the local Kaggle: server, api)
from local_fixtures import USER, run_kagflow, wait_kernel, write_competition, write_dataset, write_kernel
from repo_root import REPO


def _one_error(code: int, err: str, *pieces: str) -> None:
    """Exit 1, one ``error:`` line with its ``hint:``, every piece named, no traceback."""
    assert code == 1, err
    assert err.count("error:") == 1 and "hint:" in err, err
    assert "Traceback" not in err, err
    for piece in pieces:
        assert piece in err, (piece, err)


# ---------------------------------------------------------------------------- .kagflow/state-<target>.json

GOOD_STATE = {"models": {"base_model": {"source": "alice/gemma-2-9b-4bit-base/transformers/gemma2-9b-4bit-base/1",
                                        "version": 1, "digest": "ab", "uploaded": True}},
              "kernels": {"train": {"handle": "alice/gemma2-qlora-arena-train", "version": 2}},
              "flow": {"setup": {"done": True, "summary": "ok", "seconds": 1.5},
                       "train": {"done": True, "made": {"version": 2, "output": "kernels/t/output/v2"}}},
              "versions": {"train": {"2": {"params": {"lr": 0.001}, "timeout": 600}}},
              "folds": {"0": {"fold": 0, "version": 2, "score": 0.69, "metric": "log_loss"}}}


@pytest.mark.parametrize("text, pieces", [
    ('{"models": {"base_model": {"source": "alice/m/transformers/i/1", "vers',
     ["is not valid JSON", "line 1 column"]),  # cut short
    ("", ["is not valid JSON", "empty"]),
    ("[1, 2]", ["must hold a JSON object", "a list"]),
    ('{"models": []}', ["models", "a JSON object", "a list"]),
    ('{"kernels": {"train": {"handle": "alice/k", "version": "three"}}}',
     ["kernels.train.version", '"three"', "a whole number"]),
    ('{"flow": {"train": {"done": "yes"}}}', ["flow.train.done", '"yes"', "true or false"]),
    ('{"flow": {"train": {"done": true, "made": {"version": "v1"}}}}', ["flow.train.made.version", '"v1"',
                                                                      "a whole number"]),
    ('{"flow": {"train": {"done": true, "made": [1]}}}', ["flow.train.made", "a JSON object", "a list"]),
    ('{"models": {"base_model": {"version": 1}}}', ["models.base_model", "missing", "'source'"]),
    ('{"versions": {"train": {"2": {"params": "lr=1"}}}}', ["versions.train.2.params", "a JSON object"]),
    ('{"versions": {"train": {"two": {}}}}', ["versions.train", "'two'", "a version number"]),
    ('{"folds": {"0": {"fold": "zero"}}}', ["folds.0.fold", "a whole number"]),
    ('{"submission": {"ref": "1", "kernel": "a/b", "version": 1, "status": "COMPLETE", "score": "good"}}',
     ["submission.score", "a number"]),
])
def test_a_broken_state_file_is_one_error_naming_file_and_key(project, capsys, text, pieces):
    state = project.parent / ".kagflow" / "state-local.json"
    state.parent.mkdir()
    state.write_text(text)
    code, _, err = run_kagflow(capsys, "--config", str(project), "check")
    _one_error(code, err, str(state), *pieces)
    assert state.read_text() == text  # left as it was, for the user to fix or move aside


def test_a_good_state_file_still_loads(project, capsys):
    state = project.parent / ".kagflow" / "state-local.json"
    state.parent.mkdir()
    state.write_text(json.dumps({**GOOD_STATE, "unknown": {"from": "a newer kagflow"}}))
    from kagflow.project.state import ProjectState

    loaded = ProjectState.load(state)
    assert loaded.model_version("base_model") == 1 and loaded.kernel("train").version == 2
    assert loaded.step_done("setup") and loaded.version("train", 2).params == {"lr": 0.001}
    assert loaded.folds[0].score == 0.69 and loaded.folds[0].metric == "log_loss"
    assert loaded.made("train").version == 2 and loaded.made("setup").output is None  # a step that made no version
    code, out, err = run_kagflow(capsys, "--config", str(project), "check")
    assert code == 0, err


# ---------------------------------------------------------------------------- kagflow.toml

def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, old
    path.write_text(text.replace(old, new, 1))


@pytest.mark.parametrize("old, new, pieces", [
    ("lr = 2e-4", "lr = = 2e-4", ["is not valid TOML", "line {line}", "column"]),   # a syntax error
    ("lr = 2e-4", 'lr = "fast"', ["[train] lr", '"fast"', "is not a number", "lr = 0.0002"]),  # a wrong type
    ("lr = 2e-4", "lr = nan", ["[train] lr", "nan is not a number", "lr = 0.0002"]),  # TOML's nan: no usable number
    ("timeout = 43200", "timeout = inf", ["[kernels.train] timeout", "inf", "whole number"]),
    ('instance = "gemma2-9b-4bit-base"\n', "", ["[base_model]", "missing the required key 'instance'"]),
])
def test_a_broken_config_is_one_error_naming_file_and_key(project, capsys, old, new, pieces):
    text = project.read_text()
    line = text[:text.index(old)].count("\n") + 1  # where the edit lands, wherever the defaults put it
    _edit(project, old, new)
    code, _, err = run_kagflow(capsys, "--config", str(project), "check")
    _one_error(code, err, "kagflow.toml", *(piece.format(line=line) for piece in pieces))


def test_a_config_that_is_not_text_is_one_error(project, capsys):
    project.write_bytes(b"\xff\xfe[project]\n" + project.read_bytes())
    code, _, err = run_kagflow(capsys, "--config", str(project), "check")
    _one_error(code, err, str(project), "not UTF-8 text", "byte 0")


# ---------------------------------------------------------------------------- competition CSVs

def _replace(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text, (old, path)
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


BAD_FILES = {
    "no solution": (lambda f: (f / "solution.csv").unlink(), ["solution.csv", "is missing"]),
    "train column": (lambda f: _replace(f / "train.csv", "winner_tie", "winner_t"),
                     ["train.csv", "no column 'winner_tie'", "did you mean 'winner_t'", "label_columns"]),
    "test column": (lambda f: _replace(f / "test.csv", ",response_b\n", ",answer_b\n"), ["test.csv", "response_b"]),
    "solution empty cell": (lambda f: _replace(f / "solution.csv", "2,0,1,0", "2,0,,0"),
                            ["solution.csv", "row '2'", "winner_model_b", "not a number"]),
    "solution nan": (lambda f: _replace(f / "solution.csv", "2,0,1,0", "2,nan,1,0"),
                     ["solution.csv", "row '2'", "winner_model_a", "NaN"]),
    "solution ids": (lambda f: _replace(f / "solution.csv", "3,0,0,1", "4,0,0,1"),
                     ["solution.csv", "test.csv", "'3'", "'4'"]),
    "sample columns": (lambda f: _replace(f / "sample_submission.csv", "winner_tie", "tie"),
                       ["sample_submission.csv", "tie", "winner_tie"]),
    "solution huge field": (lambda f: _replace(f / "solution.csv", "2,0,1,0", "2,0,1," + "0" * 200_000),
                            ["solution.csv", "line 3", "field"]),
    "test not utf-8": (lambda f: (f / "test.csv").write_bytes((f / "test.csv").read_bytes() + b'4,"\xff",,\n'),
                       ["test.csv", "UTF-8"]),
}


@pytest.mark.parametrize("case", list(BAD_FILES))
def test_bad_competition_files_are_one_error_and_nothing_is_hosted(project, capsys, tmp_path, case):
    files = write_competition(tmp_path / "files")
    edit, pieces = BAD_FILES[case]
    edit(files)
    data = tmp_path / "data"
    code, _, err = run_kagflow(capsys, "--config", str(project), "local", "competition", "--files", str(files),
                               "--data-dir", str(data))
    _one_error(code, err, *pieces)
    assert not (data / "kaggle.sqlite3").exists()  # refused before anything was hosted


def test_a_solution_with_nan_is_a_scoring_error_not_a_nan_score(tmp_path):
    """A data folder hosted before the checks above: the scorer itself refuses a NaN in the solution."""
    from kagflow.local.server.competition import ScoreError, score_submission

    solution, submission = tmp_path / "solution.csv", tmp_path / "submission.csv"
    solution.write_text("id,winner_model_a,winner_model_b,winner_tie\n1,1,0,0\n2,nan,1,0\n")
    submission.write_text("id,winner_model_a,winner_model_b,winner_tie\n1,0.5,0.25,0.25\n2,0.2,0.6,0.2\n")
    with pytest.raises(ScoreError, match=r"[Ss]olution row '2' has NaN"):
        score_submission(solution, submission)
    solution.write_text("id,winner_model_a,winner_model_b,winner_tie\n1,1,0,0\n2,,1,0\n")
    with pytest.raises(ScoreError, match=r"[Ss]olution row '2' has a value that is not a number"):
        score_submission(solution, submission)


# ---------------------------------------------------------------------------- the classifier's loading, in a kernel

TRAIN_HEADER = "id,model_a,model_b,prompt,response_a,response_b,winner_model_a,winner_model_b,winner_tie\n"


def test_the_classifier_in_a_kernel_reports_bad_rows_by_id_and_stops_naming_file_and_column(api, tmp_path):
    """What the training notebook does first (classifier.train.run_training: load_arena_csv, print its report),
    in a kernel on the local Kaggle: bad rows reported by id, a huge turn kept to its head, and a file without a
    label column stopping the run with a message naming the file and the column."""
    huge = "x" * (3 << 20)
    rows = (TRAIN_HEADER + '1,m1,m2,"[""p""]","[""a""]","[""b""]",1,0,0\n'
            '5,m1,m2,,"[""a""]","[""b""]",0,1,0\n'
            f'6,m1,m2,"[""p""]","[""{huge}""]","[""b""]",0,0,1\n'
            '7,m1,m2,"[""p""]","[""a""]","[""b""]",1,1,0\n'
            '8,m1,m2,"[""p""]","[""a""]","[""b""]",,0,0\n')
    columns = TRAIN_HEADER.replace(",winner_tie", "") + '1,m1,m2,"[""p""]","[""a""]","[""b""]",1,0\n'
    write_dataset(tmp_path / "ds", "bad-arena-rows", {"rows.csv": rows, "columns.csv": columns})
    api.dataset_create_new(str(tmp_path / "ds"), quiet=True)
    load = ("import os, sys\n"
            f"sys.path.insert(0, {str(REPO)!r})\n"
            "from kagflow.classifier.data import load_arena_csv\n"
            "root = os.environ['KAGFLOW_INPUT_ROOT'] + '/bad-arena-rows'\n")
    kernel = write_kernel(tmp_path / "k", "bad-rows", load + "data = load_arena_csv(f'{root}/rows.csv')\n"
                          "print(data.report())\nprint('kept', sorted(data.frame['id']))",
                          "load_arena_csv(f'{root}/columns.csv')\nprint('not reached')",
                          dataset_sources=[f"{USER}/bad-arena-rows"])
    api.kernels_push(str(kernel))
    status = wait_kernel(api, f"{USER}/bad-rows", timeout=300)
    assert status.status.name == "ERROR"
    assert "columns.csv: missing columns ['winner_tie']" in status.failure_message, status.failure_message
    api.kernels_output(f"{USER}/bad-rows", str(tmp_path / "out"))
    log = "".join(entry["data"] for entry in json.loads((tmp_path / "out" / "bad-rows.log").read_text())
                  if entry["stream_name"] == "stdout")
    assert "3 rows parsed, 2 skipped, 4 issues" in log, log[-3000:]
    assert "id=5 prompt: missing cell" in log
    assert f"id=6 response_a: a turn of {3 << 20} characters kept to its first {1 << 20}" in log
    assert "id=7: labels ('1', '1', '0'): not exactly one 1; row skipped" in log
    assert "id=8: labels ('', '0', '0')" in log
    assert "kept ['1', '5', '6']" in log and "not reached" not in log
