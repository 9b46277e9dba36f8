"""`kagflow init`."""

from __future__ import annotations

from pathlib import Path

import click

from kagflow.cli._app import App
from kagflow.project.config import COMPETITION
from kagflow.project.init import init_project


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
    path = init_project(folder, competition=competition, username=username, force=force)
    app.out.result(f"Wrote {path}", next="edit it, then run `kagflow check`")
