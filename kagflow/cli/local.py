"""`kagflow local serve|start|stop|status|competition`: the local Kaggle server."""

from __future__ import annotations

from pathlib import Path

import click

from kagflow.cli._app import App


@click.group("local")
def local() -> None:
    """The local Kaggle: the official client's API on 127.0.0.1, with kernels run on this machine."""


def _data_dir(app: App, data_dir: Path | None) -> Path:
    if data_dir is not None:
        return data_dir
    from kagflow.hub.target import local_data_dir

    return local_data_dir(app.config)


@local.command("serve")
@click.option("--port", type=int, default=0, envvar="KAGFLOW_LOCAL_PORT",
              help="Port on 127.0.0.1 (0: a free one). [env var: KAGFLOW_LOCAL_PORT]")
@click.option("--data-dir", type=click.Path(path_type=Path), default=None,
              help="Where datasets, models, kernels and runs are kept (default: .kagflow/local).")
@click.option("--users", "users_file", type=click.Path(path_type=Path, dir_okay=False), default=None,
              envvar="KAGFLOW_LOCAL_USERS",
              help='JSON file {"username": "key", ...}: only these keys are accepted (401 otherwise). '
                   "Without it any key is. [env var: KAGFLOW_LOCAL_USERS]")
@click.option("--consistency", type=click.Choice(["instant", "eventual"]), default=None,
              envvar="KAGFLOW_LOCAL_CONSISTENCY",
              help="eventual: imitate Kaggle's delays (404 for seconds after a create, versions processing, a 429 "
                   "now and then). Default instant. [env var: KAGFLOW_LOCAL_CONSISTENCY]")
@click.pass_obj
def serve(app: App, port: int, data_dir: Path | None, users_file: Path | None, consistency: str | None) -> None:
    """Run the server in the foreground until Ctrl-C.

    Point kagflow (or the official client through `kagflow kaggle`) at it with
    KAGFLOW_KAGGLE_ENDPOINT=http://127.0.0.1:PORT.
    """
    from kagflow.local.control import load_users, serve_forever

    serve_forever(_data_dir(app, data_dir), port, users=load_users(users_file) if users_file else None,
                  users_file=users_file, consistency=consistency)


@local.command("start")
@click.option("--data-dir", type=click.Path(path_type=Path), default=None, help="Data folder.")
@click.pass_obj
def start(app: App, data_dir: Path | None) -> None:
    """Start the server in the background (reused if already running) and print its URL."""
    from kagflow.local.control import ensure_background_server

    url = ensure_background_server(_data_dir(app, data_dir))
    app.out.result(f"Local Kaggle running at {url}", use=f"export KAGFLOW_KAGGLE_ENDPOINT={url}")


@local.command("stop")
@click.option("--data-dir", type=click.Path(path_type=Path), default=None, help="Data folder.")
@click.pass_obj
def stop(app: App, data_dir: Path | None) -> None:
    """Stop the background server."""
    from kagflow.local.control import stop_background_server

    stopped = stop_background_server(_data_dir(app, data_dir))
    app.out.result("Local Kaggle stopped" if stopped else "Local Kaggle was not running")


@local.command("competition")
@click.option("--files", type=click.Path(path_type=Path, file_okay=False), default=None,
              help="Folder with train.csv, test.csv, sample_submission.csv, the hidden solution.csv and, under "
                   "hidden/, the hidden test set a code submission is re-run on (default: the synthetic "
                   "competition).")
@click.option("--data-dir", type=click.Path(path_type=Path), default=None,
              help="The server's data folder (default: the server KAGFLOW_KAGGLE_ENDPOINT names, else "
                   ".kagflow/local).")
@click.option("--accept-rules", is_flag=True,
              help="Accept the competition's rules as [project] username (downloads and submissions answer 403 "
                   "until then, as on Kaggle).")
@click.pass_obj
def competition(app: App, files: Path | None, data_dir: Path | None, accept_rules: bool) -> None:
    """Host the project's competition on the local server (scored by log loss, like Kaggle)."""
    from kagflow.hub.target import server_data_dir
    from kagflow.local.server import competition as comp
    from kagflow.workflow.standins import ensure_synthetic_competition

    cfg = app.config
    files = files or ensure_synthetic_competition(cfg)
    data = data_dir or server_data_dir(cfg)
    comp.install_competition(data, cfg.project.competition, files)
    if accept_rules:
        comp.accept_rules(data, cfg.project.competition, cfg.username)
    app.out.result(f"Competition {cfg.project.competition} hosted locally"
                   + (f"; rules accepted as {cfg.username}" if accept_rules else ""), files=files, data=data)


COMMANDS = [local]
