"""`kagflow kernel run --local`: the pieces that need no notebook run, and the sources of an imported kernel (the
runs themselves: tests/flows/test_local_flow.py)."""

from __future__ import annotations

from kagflow.local.run.executor import KaggleLog
from kagflow.local.run.runner import _append_log
from kagflow.workflow.kernel_run import write_run_log

from local_fixtures import *  # noqa: F401,F403  (the local Kaggle: server)


def test_the_run_log_is_its_entries_text_then_the_failure(tmp_path):
    """The runner's log.json (written by the executor, a timeout appended by the runner) becomes plain text
    through hub.kernels' one log parser: every entry's data in order, then the failure."""
    log_json = tmp_path / "log.json"
    log = KaggleLog(log_json)
    log.add("stdout", "epoch 1\n")
    log.add("stderr", "warning: ünïcode\n")
    log.add_output({"output_type": "execute_result", "data": {"text/plain": "42"}})
    log.close()
    _append_log(log_json, "stderr", "Timeout: the run exceeded its time limit of 5 seconds\n")
    write_run_log(tmp_path / "k.log", log_json, "Timeout: the run exceeded its time limit of 5 seconds")
    assert (tmp_path / "k.log").read_text(encoding="utf-8") == (
        "epoch 1\nwarning: ünïcode\n42\n"
        "Timeout: the run exceeded its time limit of 5 seconds\n"
        "Timeout: the run exceeded its time limit of 5 seconds\n")


def test_a_complete_run_with_no_output_has_an_empty_log(tmp_path):
    (tmp_path / "log.json").write_text("[]")
    write_run_log(tmp_path / "k.log", tmp_path / "log.json", "")
    assert (tmp_path / "k.log").read_text(encoding="utf-8") == ""


def test_an_imported_kernels_dataset_sources_are_mounted_in_a_local_run(tmp_path, server, monkeypatch, capsys):
    """`kagflow kernel run NAME --local` mounts an imported kernel's `dataset:` sources (downloaded from the target
    once, into .kagflow/sources/), where Kaggle mounts them, and never the wheels in their place."""
    import json

    from kagflow.hub.client import build_api
    from kagflow.project.init import init_project
    from kagflow.rules import slugs

    from local_fixtures import COMPETITION, USER, run_kagflow, write_dataset, write_notebook

    monkeypatch.setenv("KAGGLE_USERNAME", "bob")
    bob = build_api(server.url)
    folder = write_dataset(tmp_path / "bob-open-data", "bob-open-data", {"rows.csv": "x\n41\n"}, owner="bob")
    bob.dataset_create_new(str(folder), quiet=True, public=True)
    monkeypatch.setenv("KAGGLE_USERNAME", USER)
    proj = init_project(tmp_path / "proj", username=USER, competition=COMPETITION)
    monkeypatch.setenv("KAGFLOW_KAGGLE_ENDPOINT", server.url)
    monkeypatch.chdir(proj.parent)
    code = ("import os, pandas as pd\n"
            "rows = pd.read_csv('/kaggle/input/bob-open-data/rows.csv')\n"
            "also = pd.read_csv('/kaggle/input/datasets/bob/bob-open-data/rows.csv')\n"
            "open('answer.txt', 'w').write(str(rows.x[0] + 1) + ' ' + str(also.x[0] + 1))\n")
    write_notebook(proj.parent / "kernels" / slugs.kernel_slug("Peek experiment") / "nb.ipynb", code)
    with open(proj, "a") as f:
        f.write('\n[kernels.peek]\ntitle = "Peek experiment"\nkind = "import"\ncode_file = "nb.ipynb"\n'
                'accelerator = "None"\nsources = ["dataset:bob/bob-open-data"]\n')
    status, out, err = run_kagflow(capsys, "kernel", "run", "peek", "--local")
    assert status == 0, out + err
    answers = list((proj.parent / "kernels").rglob("answer.txt"))
    assert [a.read_text() for a in answers] == ["42 42"], out + err
    assert (proj.parent / ".kagflow" / "sources" / "bob" / "bob-open-data" / "1" / "rows.csv").is_file()
    assert json.loads(next((proj.parent / ".kagflow" / "sources" / "bob" / "bob-open-data").glob("*.complete"))
                      .read_text())["dataset"] == "bob/bob-open-data/1"
