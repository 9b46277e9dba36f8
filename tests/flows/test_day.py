"""A competitor's day on the local Kaggle: status and submissions show what was pushed, run and
scored (versions, states, run times, scores, GPU quota used); the quota guard refuses a GPU push
beyond the quota left unless --force; -p overrides reach the rendered parameters cell and the
recorded parameters; logs --follow prints a running kernel's log."""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from kagflow.local.server.api import Settings

from local_fixtures import *  # noqa: F401,F403 - the fixtures
from local_fixtures import COMPETITION, KERNELSPEC, USER, run_kagflow

QUICK = """
[kernels.quick]
title = "Quick submission"
kind = "import"
code_file = "quick.ipynb"
accelerator = "NvidiaTeslaT4"
timeout = 600
sources = ["competition"]
"""

SUBMIT_CELLS = (
    "import glob, shutil, time\n"
    "for i in range(3):\n    print('step', i, flush=True); time.sleep(0.4)\n"
    "shutil.copy(glob.glob('/kaggle/input/**/sample_submission.csv', recursive=True)[0]\n"
    "            if glob.glob('/kaggle/input/**/sample_submission.csv', recursive=True)\n"
    "            else glob.glob('../input/**/sample_submission.csv', recursive=True)[0], 'submission.csv')",
)


kagflow = run_kagflow  # (exit code, stdout, stderr)


@pytest.fixture
def server_settings() -> Settings:
    """Kaggle's 5 submissions a day, so "submissions left today" has something to count."""
    return Settings(daily_submissions=5)


def write_quick_notebook(root: Path, *extra: str) -> None:
    nb = new_notebook(cells=[new_code_cell(c) for c in (*SUBMIT_CELLS, *extra)])
    nb.metadata["kernelspec"] = KERNELSPEC
    folder = root / "kernels" / "quick-submission"
    folder.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, str(folder / "quick.ipynb"))


@pytest.fixture
def proj(tmp_path, server, monkeypatch):
    from kagflow.project.init import init_project

    path = init_project(tmp_path / "proj", username=USER, competition=COMPETITION)
    text = path.read_text().replace('sources = ["wheels", "base_model", "competition"]', 'sources = ["competition"]')
    path.write_text(text + QUICK)
    write_quick_notebook(path.parent)
    monkeypatch.setenv("KAGFLOW_KAGGLE_ENDPOINT", server.url)
    monkeypatch.chdir(path.parent)
    return path.parent


def test_status_and_submissions_show_the_day(proj, server, capsys):
    code, out, err = kagflow(capsys, "status", "--json")
    assert code == 0, err
    fresh = json.loads(out)
    assert fresh["submissions"] == [] and fresh["best"] is None
    assert fresh["gpu_quota"]["used_s"] == 0 and fresh["gpu_quota"]["allowed_s"] == 30 * 3600
    assert {k["name"]: k["status"] for k in fresh["kernels"]}["quick"] == "not pushed"

    code, out, err = kagflow(capsys, "kernel", "push", "quick", "--wait")
    assert code == 0, out + err
    assert "GPU quota: alice/quick-submission needs about 0.17 h (its timeout of 600 s" in err
    code, out, err = kagflow(capsys, "submit", "--kernel", "quick")
    assert code == 0, out + err

    code, out, err = kagflow(capsys, "status", "--json")
    assert code == 0, err
    day = json.loads(out)
    quick = next(k for k in day["kernels"] if k["name"] == "quick")
    assert quick["version"] == 1 and quick["status"] == "COMPLETE" and quick["accelerator"] == "NvidiaTeslaT4"
    assert quick["run_seconds"] >= 1.2  # three 0.4 s steps, as the log measured them
    [sub] = day["submissions"]
    assert sub["status"] == "COMPLETE" and sub["score"] > 0
    assert sub["kernel"] == f"{USER}/quick-submission" and sub["kernel_version"] == 1
    assert day["best"]["ref"] == sub["ref"]
    assert day["submissions_left_today"] == 4
    assert day["gpu_quota"]["used_s"] >= 1 and day["gpu_quota"]["left_s"] < 30 * 3600
    assert day["target"].startswith("the local Kaggle") or server.url in day["target"]

    code, text, err = kagflow(capsys, "status")
    assert code == 0, err
    assert "quick    v1   COMPLETE" in text and "NvidiaTeslaT4" in text
    assert "submissions left today: 4" in text and "GPU quota: 0.00 h used" in text
    assert f"best: {sub['score']:.4f}" in text

    # a second, better-or-worse submission: the history lists both, newest first, and marks the best
    write_quick_notebook(proj, "import pandas as pd\ndf = pd.read_csv('submission.csv')\n"
                               "df.iloc[0, 1:] = [0.9, 0.05, 0.05]\ndf.to_csv('submission.csv', index=False)")
    code, out, err = kagflow(capsys, "kernel", "push", "quick", "--wait")
    assert code == 0, out + err
    assert "quick-submission needs about 0.00 h (version 1's measured run time)" in err
    code, out, err = kagflow(capsys, "submit", "--kernel", "quick")
    assert code == 0, out + err
    code, out, err = kagflow(capsys, "submissions", "--json")
    history = json.loads(out)
    assert [s["kernel_version"] for s in history["submissions"]] == [2, 1]
    scores = [s["score"] for s in history["submissions"]]
    assert history["best"]["score"] == min(scores)
    code, text, err = kagflow(capsys, "submissions")
    assert code == 0 and text.count("<- best") == 1 and "alice/quick-submission v2" in text


def test_quota_guard_refuses_beyond_the_quota_unless_forced(proj, server, capsys):
    code, out, err = kagflow(capsys, "kernel", "push", "quick", "--wait")
    assert code == 0, out + err
    server.settings.gpu_quota_s = 1.0  # less than version 1's measured run time is left
    write_quick_notebook(proj, "print('changed')")
    code, out, err = kagflow(capsys, "kernel", "push", "quick")
    assert code == 1
    assert "error: pushing alice/quick-submission would go past the weekly GPU quota" in err
    assert "version 1's measured run time" in err and "kagflow kernel push quick --force" in err
    code, out, err = kagflow(capsys, "kernel", "status", "quick")
    assert "quick v1" in out  # nothing was pushed

    server.settings.gpu_quota_s = 30 * 3600
    write_quick_notebook(proj, "print('changed')")
    code, out, err = kagflow(capsys, "kernel", "push", "quick", "--force")
    assert code == 0 and "version 2" in out, out + err


def test_param_overrides_reach_the_notebook_and_the_state(proj, capsys):
    code, out, err = kagflow(capsys, "kernel", "push", "train", "-p", "fold_idx=2", "--accelerator", "None")
    assert code == 1 and "kagflow kernel push train --accelerator: accelerator: a competition kernel runs " \
                         "without a GPU" in err  # the option gets the checks [kernels.train] accelerator gets
    code, out, err = kagflow(capsys, "kernel", "push", "train", "-p", "fold_idx=2", "-p", "lr=1e-4",
                             "--accelerator", "NvidiaTeslaT4")
    assert code == 0, out + err
    nb = nbformat.read(str(next((proj / "kernels").rglob("*train*.ipynb"))), as_version=4)
    cell = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    assert "fold_idx = 2\n" in cell.source and "lr = 0.0001\n" in cell.source
    state = json.loads((proj / ".kagflow" / "state-local.json").read_text())
    version = state["kernels"]["train"]["version"]
    assert state["versions"]["train"][str(version)]["params"] == {"fold_idx": 2, "lr": 0.0001}

    code, out, err = kagflow(capsys, "kernel", "push", "train", "-p", "fold_id=2")
    assert code == 1 and "'fold_id' is not a key of [train]" in err and "did you mean -p fold_idx=...?" in err
    code, out, err = kagflow(capsys, "kernel", "push", "train", "-p", "lr=fast")
    assert code == 1 and '-p lr=\'fast\': [train] lr = "fast" is not a number' in err, err


def test_logs_follow_prints_the_running_log(proj, capsys):
    code, out, err = kagflow(capsys, "kernel", "push", "quick")
    assert code == 0, out + err
    code, out, err = kagflow(capsys, "kernel", "logs", "quick", "--follow")
    assert code == 0, err
    assert [line for line in out.splitlines() if line.startswith("step")] == ["step 0", "step 1", "step 2"]


def test_waiting_shows_the_step_loss_and_eta_the_kernel_prints(proj, capsys):
    from kagflow.classifier.progress_line import Progress, format_line

    lines = [format_line(Progress("train", step, 3, loss=1.0 / step, eta_s=3 - step)) for step in (1, 2, 3)]
    write_quick_notebook(proj, "import time\n" + "".join(f"print({line!r}, flush=True); time.sleep(0.3)\n"
                                                         for line in lines))
    code, out, err = kagflow(capsys, "kernel", "push", "quick", "--wait")
    assert code == 0, out + err
    # no terminal: plain lines; the last one has the kernel's last figures, read from its log stream
    waits = [line for line in err.splitlines() if line.startswith("quick v1: ")]
    assert waits[-1].startswith("quick v1: COMPLETE ") and waits[-1].endswith(
        ", train step 3/3, loss 0.3333, ETA 0s"), err
