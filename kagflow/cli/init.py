"""`kagflow init` and `kagflow check`."""

from __future__ import annotations

from pathlib import Path

import click

from kagflow.cli._app import App
from kagflow.project.config import COMPETITION


@click.command("init")
@click.option("--competition", default=COMPETITION, show_default=True, help="Competition slug.")
@click.option("--username", default="", help="Kaggle username (default: from your Kaggle credentials).")
@click.option("--force", is_flag=True, help="Overwrite an existing kagflow.toml.")
@click.argument("folder", type=click.Path(path_type=Path), default=".")
@click.pass_obj
def init(app: App, competition: str, username: str, force: bool, folder: Path) -> None:
    """Write kagflow.toml and the wheels/, kernels/, models/ folders into FOLDER.

    \b
    Examples:
      kagflow init
      kagflow init my-project --competition llm-classification-finetuning --username alice
    """
    from kagflow.project.init import init_project

    path = init_project(folder, competition=competition, username=username, force=force)
    app.out.result(f"Wrote {path}", next="edit it, then run `kagflow check`")


@click.command("check")
@click.pass_obj
def check(app: App) -> None:
    """List every problem in the project at once (exit 1 if any), each with file, field and fix.

    Knows the target: versions published there (recorded in .kagflow/state-<target>.json on the
    local Kaggle, pinned in kagflow.toml on Kaggle) count as published; what the flow has not
    produced yet is listed as pending, which is not a problem.

    \b
    Examples:
      kagflow check
      kagflow check --json
    """
    from kagflow.workflow.check import check_project, pending

    session = app.session
    config = session.config  # with the target's recorded versions; nothing is started or connected
    problems, todo = check_project(config), pending(config)
    target = "the local Kaggle" if session.is_local else "Kaggle"
    app.out.data(target=target, problems=[p.__dict__ for p in problems], pending=[p.__dict__ for p in todo])
    for item in todo:
        app.out.info(f"pending: {item.render()}")
    if not problems:
        app.out.result(f"{config.path.name}: no problems found (target: {target}"
                       + (f"; {len(todo)} pending, made by `kagflow flow`)" if todo else ")"))
        return
    if not app.out.json_mode:
        for problem in problems:
            click.echo(problem.render(), err=True)
        click.echo(f"{len(problems)} problem(s) found", err=True)
    app.out.flush(ok=False)
    raise click.exceptions.Exit(1)


COMMANDS = [init, check]
