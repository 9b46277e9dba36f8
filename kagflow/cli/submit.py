"""`kagflow submit`."""

from __future__ import annotations

from pathlib import Path

import click

from kagflow.cli._app import App, poll_printer


@click.command("submit")
@click.option("--kernel", "name", default="infer", show_default=True, help="Kernel whose version to submit.")
@click.option("--version", type=int, default=None, help="Kernel version (default: the last pushed).")
@click.option("--file", "file", type=click.Path(path_type=Path, exists=True, dir_okay=False), default=None,
              help="File competitions: submit this CSV instead of a kernel.")
@click.option("--message", default="", help="Submission description.")
@click.option("--no-wait", is_flag=True, help="Do not wait for the score.")
@click.pass_obj
def submit(app: App, name: str, version: int | None, file: Path | None, message: str, no_wait: bool) -> None:
    """Submit the inference kernel's version to the competition, wait for the score and print it.

    A kernel version is submitted once: running this again finds the earlier submission.

    \b
    Examples:
      kagflow submit
      kagflow submit --version 3
      kagflow submit --file submission.csv      # file competitions
    """
    session, on_poll = app.session, poll_printer("submission")
    if file is not None:
        sub = session.submit_csv(file, message=message, wait=not no_wait, on_poll=on_poll)
    else:
        sub = session.submit(name, version=version, wait=not no_wait, on_poll=on_poll, message=message)
    app.out.result(f"Submission {sub.ref}: {sub.status}", score=sub.public_score if sub.public_score is not None
                   else "-", competition=session.config.project.competition)
    app.out.data(ref=sub.ref, status=sub.status)

