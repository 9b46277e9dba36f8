"""`kagflow init` and `kagflow check`."""

from __future__ import annotations

from pathlib import Path

import click

from kagflow.cli._app import App
from kagflow.config import COMPETITION


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
    from kagflow.project import init_project

    path = init_project(folder, competition=competition, username=username, force=force)
    app.out.result(f"Wrote {path}", next="edit it, then run `kagflow check`")


@click.command("check")
@click.pass_obj
def check(app: App) -> None:
    """List every problem in the project at once (exit 1 if any), each with file, field and fix."""
    from kagflow.check import check_project

    problems = check_project(app.config)
    if not problems:
        app.out.result(f"{app.config.path.name}: no problems found")
        return
    for problem in problems:
        click.echo(problem.render(), err=True)
    click.echo(f"{len(problems)} problem(s) found", err=True)
    raise click.exceptions.Exit(1)


COMMANDS = [init, check]
