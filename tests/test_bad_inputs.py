"""Broken inputs a user can hand kagflow: a corrupted state file, a broken kagflow.toml, competition CSVs with
wrong columns, NaN cells or a huge row. Each ends in one clear error naming the file and the field, with the fix,
through the command line as a user meets it; never a traceback, never a silently wrong result."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from local_fixtures import run_kagflow


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
              "flow": {"setup": {"done": True, "summary": "ok", "seconds": 1.5}},
              "versions": {"train": {"2": {"params": {"lr": 0.001}, "timeout": 600}}},
              "folds": {"0": {"fold": 0, "version": 2, "log_loss": 0.69}}}


@pytest.mark.parametrize("text, pieces", [
    ('{"models": {"base_model": {"source": "alice/m/transformers/i/1", "vers',
     ["is not valid JSON", "line 1 column"]),  # cut short
    ("", ["is not valid JSON", "empty"]),
    ("[1, 2]", ["must hold a JSON object", "a list"]),
    ('{"models": []}', ["models", "a JSON object", "a list"]),
    ('{"kernels": {"train": {"handle": "alice/k", "version": "three"}}}',
     ["kernels.train.version", '"three"', "a whole number"]),
    ('{"flow": {"train": {"done": "yes"}}}', ["flow.train.done", '"yes"', "true or false"]),
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
    from kagflow.state import ProjectState

    loaded = ProjectState.load(state)
    assert loaded.model_version("base_model") == 1 and loaded.kernel("train").version == 2
    assert loaded.step_done("setup") and loaded.version("train", 2).params == {"lr": 0.001}
    assert loaded.folds[0].log_loss == 0.69
    code, out, err = run_kagflow(capsys, "--config", str(project), "check")
    assert code == 0, err


# ---------------------------------------------------------------------------- kagflow.toml

def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, old
    path.write_text(text.replace(old, new, 1))


@pytest.mark.parametrize("old, new, pieces", [
    ("lr = 2e-4", "lr = = 2e-4", ["is not valid TOML", "line 78", "column"]),   # a syntax error
    ("lr = 2e-4", 'lr = "fast"', ["[train] lr", '"fast"', "is not a number", "lr = 0.0002"]),  # a wrong type
    ("lr = 2e-4", "lr = nan", ["[train] lr", "nan is not a number", "lr = 0.0002"]),  # TOML's nan: no usable number
    ("timeout = 32400", "timeout = inf", ["[kernels.train] timeout", "inf", "whole number"]),
    ('instance = "gemma2-9b-4bit-base"\n', "", ["[base_model]", "missing the required key 'instance'"]),
])
def test_a_broken_config_is_one_error_naming_file_and_key(project, capsys, old, new, pieces):
    _edit(project, old, new)
    code, _, err = run_kagflow(capsys, "--config", str(project), "check")
    _one_error(code, err, "kagflow.toml", *pieces)


def test_a_config_that_is_not_text_is_one_error(project, capsys):
    project.write_bytes(b"\xff\xfe[project]\n" + project.read_bytes())
    code, _, err = run_kagflow(capsys, "--config", str(project), "check")
    _one_error(code, err, str(project), "not UTF-8 text", "byte 0")
