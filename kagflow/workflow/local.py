"""`kagflow local serve|start|stop|competition`: the project's local Kaggle server and its competition."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from kagflow.project.config import Config
from kagflow.workflow import competition_data
from kagflow.workflow.target import local_target


def data_dir(config: Config, given: Optional[Path] = None) -> Path:
    """``given``, else the data folder of the project's background server (``.kagflow/local``)."""
    return given if given is not None else config.layout.local_server_data


def serve(config: Config, *, port: int, data: Optional[Path], users_file: Optional[Path],
          consistency: Optional[str] = None, idle_s: Optional[float] = None) -> None:
    """Serve in the foreground until Ctrl-C; ``users_file``: only its keys are accepted; ``consistency``
    ("eventual"): imitate Kaggle's delays (kagflow.local.server.consistency); ``idle_s``: stop once idle that long."""
    from kagflow.local.control import load_users, serve_forever

    serve_forever(data_dir(config, data), port, users=load_users(users_file) if users_file else None,
                  users_file=users_file, consistency=consistency, idle_s=idle_s)


def start(config: Config, data: Optional[Path] = None) -> str:
    """The URL of the background server of ``data`` (started unless running)."""
    from kagflow.local.control import ensure_background_server

    return ensure_background_server(data_dir(config, data))


def stop(config: Config, data: Optional[Path] = None) -> bool:
    """Stop the background server of ``data``; False if none was running."""
    from kagflow.local.control import stop_background_server

    return stop_background_server(data_dir(config, data))


def login_link(session):
    """A one-time link that signs a browser in to the local Kaggle's pages as the credentials' user."""
    from kagflow.hub.pages import login_link as ask

    return ask(session.gateway)


def host_competition(config: Config, data: Optional[Path] = None, *, files: Optional[Path] = None,
                     metric: Optional[str] = None, accept_rules: bool = False
                     ) -> tuple[competition_data.CompetitionData, Path]:
    """``competition_data.host_competition`` on the server the project talks to, unless ``data`` names another;
    (what it hosts, the server's data folder)."""
    data = data or local_target(config).server_data_dir()
    return competition_data.host_competition(config, data, files=files, metric=metric,
                                             accept_rules=accept_rules), data
