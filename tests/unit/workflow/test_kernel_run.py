"""`kagflow kernel run --local` pieces that need no notebook run (the runs themselves:
tests/flows/test_local_flow.py)."""

from __future__ import annotations

from kagflow.local.run.executor import KaggleLog
from kagflow.local.run.runner import _append_log
from kagflow.workflow.kernel_run import write_run_log


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
