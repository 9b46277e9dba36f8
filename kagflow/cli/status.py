"""`kagflow status` and `kagflow submissions`: the day at a glance, and the submission history."""

from __future__ import annotations

import json

import click

from kagflow.cli._app import App


def _connect(app: App):
    from kagflow.hub.common import connect
    from kagflow.state import State

    gw = connect(app.config)
    return gw, State.for_project(app.config.root, gw.target.kind)


@click.command("status")
@click.option("--json", "as_json", is_flag=True, help="One JSON object instead of text.")
@click.option("--last", type=int, default=5, show_default=True, help="How many recent submissions to show.")
@click.pass_obj
def status(app: App, as_json: bool, last: int) -> None:
    """Target, published versions, each kernel's latest run, recent submissions and the best,
    submissions left today, and the week's GPU quota.

    \b
    Examples:
      kagflow status
      kagflow status --json
    """
    from kagflow.overview import day_status, status_lines

    gw, state = _connect(app)
    day = day_status(gw, app.config, state, last=last)
    if as_json or app.out.json_mode:
        click.echo(json.dumps(day.to_json(), indent=1))
        return
    for line in status_lines(day):
        click.echo(line)


@click.command("submissions")
@click.option("--json", "as_json", is_flag=True, help="One JSON object instead of text.")
@click.pass_obj
def submissions(app: App, as_json: bool) -> None:
    """Every submission to the competition, newest first: score, the kernel version and the adapter
    version(s) behind it, and the best."""
    from dataclasses import asdict

    from kagflow.overview import best_of, submission_lines, submission_text

    gw, _ = _connect(app)
    subs = submission_lines(gw, app.config)
    best = best_of(subs)
    if as_json or app.out.json_mode:
        click.echo(json.dumps({"competition": app.config.project.competition,
                               "submissions": [asdict(s) for s in subs],
                               "best": asdict(best) if best else None}, indent=1))
        return
    click.echo(f"submissions to {app.config.project.competition} ({len(subs)}), log loss, lower is better:")
    click.echo(f"{'ref':>6}  {'date (UTC)':<16}  {'status':<8}  {'score':>7}  kernel version, adapter")
    for sub in subs:
        click.echo(submission_text(sub) + ("   <- best" if best and sub.ref == best.ref else ""))
    if not subs:
        click.echo("  none yet: kagflow submit")


COMMANDS = [status, submissions]
