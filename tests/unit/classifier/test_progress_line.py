"""The kernels' progress line: written by the training loops and inference, parsed back by one parser."""

from __future__ import annotations

import pytest

from kagflow.classifier import progress_line as pl
from kagflow.classifier.progress_line import LogReader, Progress, RowCounter, TrainProgress, format_line, parse_line


class Clock:
    def __init__(self):
        self.t = 1000.0

    def __call__(self):
        return self.t


@pytest.mark.parametrize("progress, line", [
    (Progress("train", 120, 1000, loss=0.69314, lr=2e-4, eta_s=4325),
     "kagflow-progress train step=120/1000 loss=0.6931 lr=2.00e-04 eta=1h12m05s"),
    (Progress("train", 200, 1000, val_loss=0.7012, eta_s=95),
     "kagflow-progress train step=200/1000 val_loss=0.7012 eta=1m35s"),
    (Progress("infer", 1200, 25000, eta_s=7), "kagflow-progress infer rows=1200/25000 eta=7s"),
    (Progress("infer", 0, 10), "kagflow-progress infer rows=0/10"),
])
def test_the_line_reads_back_as_what_was_written(progress, line):
    assert format_line(progress) == line
    back = parse_line(line)
    assert (back.phase, back.done, back.total, back.eta_s) == (progress.phase, progress.done, progress.total,
                                                               None if progress.eta_s is None else
                                                               float(round(progress.eta_s)))
    for key in ("loss", "lr", "val_loss"):
        assert getattr(back, key) == (None if getattr(progress, key) is None else pytest.approx(getattr(progress, key),
                                                                                              rel=1e-3))
    assert parse_line("  " + line + "\n") == back  # as a log entry holds it


@pytest.mark.parametrize("line", [
    "step 5/40  loss 0.69",                                   # any other line
    "kagflow-progress train loss=0.5",                         # no count
    "kagflow-progress train rows=5/40",                        # the wrong count for the phase
    "kagflow-progress train step=5 loss=0.5",                  # not done/total
    "kagflow-progress train step=5/40 loss=fast",              # a figure that is no number
    "kagflow-progress infer rows=5/40 eta=soon",               # a duration that is none
    "prefix kagflow-progress infer rows=5/40",                 # not at the start
])
def test_other_lines_are_not_progress(line):
    assert parse_line(line) is None


def test_keys_a_newer_kernel_adds_are_skipped():
    assert parse_line("kagflow-progress train step=5/40 loss=0.5 grad_norm=1.2") == Progress("train", 5, 40, loss=0.5)


def test_the_reader_keeps_the_newest_line_joined_across_pieces_and_merged_with_the_earlier_figures():
    reader = LogReader()
    assert reader.feed("precision: fp32\nkagflow-progress train step=10/40 loss=0.9") is None  # line not ended yet
    assert reader.feed("000 lr=1.00e-04 eta=30s\n") == Progress("train", 10, 40, loss=0.9, lr=1e-4, eta_s=30)
    # a validation line keeps the last training loss; the next training line keeps the validation loss
    assert reader.feed("{'eval_log_loss': 0.8}\nkagflow-progress train step=20/40 val_loss=0.8000 eta=20s\n") == \
        Progress("train", 20, 40, loss=0.9, lr=1e-4, val_loss=0.8, eta_s=20)
    assert reader.feed("kagflow-progress train step=30/40 loss=0.7000 lr=5.00e-05 eta=10s\r\n").val_loss == 0.8
    assert reader.feed("kagflow-progress predict rows=8/20 eta=3s\n") == Progress("predict", 8, 20, eta_s=3)


def test_training_prints_a_line_per_logged_step_with_the_eta_of_this_run(monkeypatch):
    clock, lines = Clock(), []
    progress = TrainProgress(100, out=lines.append, clock=clock)
    clock.t += 50
    progress({"step": 10, "loss": 0.9, "lr": 2e-4})
    progress.validation(10, 0.85)
    progress({"resumed_from": "ckpt/fit-step-000040", "step": 40})  # a resumed run: its own time per step
    clock.t += 30
    progress({"step": 50, "loss": 0.6, "lr": 1e-4})
    assert [parse_line(x) for x in lines] == [Progress("train", 10, 100, loss=0.9, lr=2e-4, eta_s=450),
                                              Progress("train", 10, 100, val_loss=0.85, eta_s=450),
                                              Progress("train", 50, 100, loss=0.6, lr=1e-4, eta_s=150)]
    monkeypatch.setenv("RANK", "1")  # another DDP process: rank 0 alone prints
    progress({"step": 60, "loss": 0.6, "lr": 1e-4})
    assert len(lines) == 3


def test_inference_counts_every_pass_into_one_job_and_prints_the_last_row():
    clock, lines = Clock(), []
    with pl.counting("infer", 40, out=lines.append, clock=clock, every=30):
        for _ in range(2):  # TTA: two passes of 20 rows, each through rows()
            counter = pl.rows(20)
            for _ in range(4):
                clock.t += 10
                counter.advance(5)
        counter.advance(5)  # past the total: no second last line
    assert [parse_line(x) for x in lines] == [Progress("infer", 15, 40, eta_s=50), Progress("infer", 30, 40, eta_s=20),
                                              Progress("infer", 40, 40, eta_s=0)]
    quiet = pl.rows(10, every=None)  # outside a job, no interval: silent, as predict_logits was
    assert isinstance(quiet, RowCounter) and quiet.out is pl._silent
