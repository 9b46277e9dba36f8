"""`kagflow status` and `kagflow submissions`: the day at a glance, and the submission history."""

from __future__ import annotations

from dataclasses import asdict

import click

from kagflow.cli._app import App
from kagflow.workflow.status import best_of, metric_words, status_lines, submission_text


@click.command("status")
@click.option("--last", type=int, default=5, show_default=True, help="How many recent submissions to show.")
@click.pass_obj
def status(app: App, last: int) -> None:
    """Target, published versions, each kernel's latest run, recent submissions and the best,
    submissions left today, and the week's GPU quota.

    \b
    Examples:
      kagflow status
      kagflow status --json
    """
    day = app.session.day_status(last=last)
    app.out.data(**day.to_json())
    for line in status_lines(day):
        app.out.info(line)


@click.command("submissions")
@click.pass_obj
def submissions(app: App) -> None:
    """Every submission to the competition, newest first: its score, the kernel version and the
    adapter version(s) behind it; the best is marked.

    \b
    Examples:
      kagflow submissions
      kagflow submissions --json
    """
    subs = app.session.submission_lines()
    facts = app.config.data.facts
    best = best_of(subs, facts)
    competition = app.config.project.competition
    app.out.data(competition=competition, submissions=[asdict(s) for s in subs], best=asdict(best) if best else None)
    app.out.info(f"submissions to {competition} ({len(subs)}); {metric_words(facts)}:")
    app.out.info(f"{'ref':>6}  {'date (UTC)':<16}  {'status':<8}  {'score':>7}  kernel version, adapter")
    for sub in subs:
        app.out.info(submission_text(sub) + ("   <- best" if best and sub.ref == best.ref else ""))
    if not subs:
        app.out.info("  none yet: kagflow submit")

