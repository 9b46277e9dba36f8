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
    from kagflow.hub.common import connect
    from kagflow.hub.competitions import submit_file, wait_score
    from kagflow.state import State
    from kagflow.steps import submit as submit_step

    cfg = app.config
    gw = connect(cfg)
    if file is not None:
        sub = submit_file(gw, cfg.project.competition, file, message=message)
        if not no_wait:
            sub = wait_score(gw, cfg.project.competition, sub.ref, on_poll=poll_printer("submission"))
    else:
        sub = submit_step(gw, cfg, State.for_project(cfg.root, gw.target.kind), name, version=version,
                          wait=not no_wait, on_poll=poll_printer("submission"), message=message)
    app.out.result(f"Submission {sub.ref}: {sub.status}", score=sub.public_score if sub.public_score is not None
                   else "-", competition=cfg.project.competition)


COMMANDS = [submit]
