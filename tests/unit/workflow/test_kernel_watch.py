"""Waiting for a kernel: its state and the training step, loss and ETA read from its log, as a heartbeat line
at least every minute without a terminal (a fake clock), and as a rich live line on one."""

from __future__ import annotations

import io

from kagflow.classifier.progress_line import LogReader, Progress, format_line
from kagflow.progress import Heartbeat, Watch
from kagflow.workflow.kernel_watch import feed


class Clock:
    """A fake clock its fake sleep moves on."""

    def __init__(self):
        self.t = 0.0

    def __call__(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        assert seconds >= 0
        self.t += seconds


class Stamped(io.StringIO):
    """A stream off a terminal that notes the fake time of each line."""

    def __init__(self, clock: Clock):
        super().__init__()
        self.clock, self.times = clock, []

    def write(self, text: str) -> int:
        self.times.extend(self.clock.t for _ in range(text.count("\n")))
        return super().write(text)


def test_without_a_terminal_a_heartbeat_at_least_every_minute_with_the_logs_figures():
    clock = Clock()
    out = Stamped(clock)
    watch = Watch("train v3", stream=out, clock=clock, sleep=clock.sleep)
    write = feed(watch, LogReader())
    watch.state("QUEUED")
    watch.sleep(30)                       # the wait's backoff, capped at 60 s, between polls
    watch.state("RUNNING")
    write("loading the base model\n" + format_line(Progress("train", 120, 1000, loss=0.69314, lr=2e-4, eta_s=4325))
          + "\n")
    for _ in range(4):
        watch.sleep(60)                   # one poll a minute, the same state
        clock.t += 7                      # the status request itself takes time
        watch.state("RUNNING")
    write(format_line(Progress("train", 200, 1000, val_loss=0.7012, eta_s=3600)) + "\n")
    watch.sleep(45)
    watch.state("COMPLETE")
    watch.close()

    lines = out.getvalue().splitlines()
    assert lines[0] == "train v3: QUEUED 0m00s"
    assert lines[1] == "train v3: RUNNING 0m30s"
    assert lines[2] == "train v3: RUNNING 1m30s, train step 120/1000, loss 0.6931, lr 2.00e-04, ETA 1h12m05s"
    # a validation line keeps the training loss it follows
    assert "train v3: RUNNING 5m30s, train step 200/1000, loss 0.6931, lr 2.00e-04, val loss 0.7012, ETA 1h00m00s" \
        in lines
    assert lines[-1] == ("train v3: COMPLETE 5m43s, train step 200/1000, loss 0.6931, lr 2.00e-04, val loss 0.7012, "
                         "ETA 1h00m00s")
    gaps = [b - a for a, b in zip(out.times, out.times[1:])]
    assert max(gaps) <= Heartbeat.EVERY, (gaps, lines)
    assert len(lines) == 8, lines  # heartbeats, not a line per poll


def test_the_last_figures_are_printed_when_no_line_showed_them():
    clock = Clock()
    out = io.StringIO()
    watch = Watch("infer v2", stream=out, clock=clock, sleep=clock.sleep)
    watch.state("RUNNING")
    watch.state("COMPLETE")
    feed(watch, LogReader())(format_line(Progress("infer", 500, 500, eta_s=0)) + "\n")  # read after the last poll
    watch.close()
    assert out.getvalue().splitlines() == ["infer v2: RUNNING 0m00s", "infer v2: COMPLETE 0m00s",
                                           "infer v2: COMPLETE 0m00s, infer rows 500/500, ETA 0s"]


def test_a_lost_log_stream_is_said_and_the_wait_goes_on():
    out = io.StringIO()
    watch = Watch("train v1", stream=out)
    watch.state("RUNNING")
    watch.note("no more progress figures: the log stream dropped 5 times")
    watch.close()
    assert out.getvalue().splitlines() == ["train v1: RUNNING 0m00s",
                                           "train v1: no more progress figures: the log stream dropped 5 times"]


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_on_a_terminal_a_live_line_with_the_figures():
    out = Terminal()
    watch = Watch("train v3", stream=out)
    watch.state("RUNNING")
    feed(watch, LogReader())(format_line(Progress("train", 120, 1000, loss=0.5, eta_s=65)) + "\n")
    watch.close()
    text = out.getvalue()
    assert "train v3" in text and "RUNNING" in text and "train step 120/1000, loss 0.5000, ETA 1m05s" in text
    assert "\x1b[" in text  # drawn by rich, in place


def test_a_later_phase_keeps_the_last_figures_of_the_earlier_one_in_sight():
    out = io.StringIO()
    watch = Watch("train v1", stream=out, clock=lambda: 0.0)
    write = feed(watch, LogReader())
    write(format_line(Progress("train", 500, 500, loss=0.0343, val_loss=0.0906, eta_s=0)) + "\n")
    write(format_line(Progress("predict", 400, 400, eta_s=0)) + "\n")  # the final evaluation's rows
    watch.state("COMPLETE")
    watch.close()
    assert (watch.done, watch.total) == (400, 400)
    assert out.getvalue().splitlines() == [
        "train v1: COMPLETE 0m00s, train step 500/500, loss 0.0343, val loss 0.0906, ETA 0s; predict rows 400/400, "
        "ETA 0s"]
