"""Local Kaggle: a Kaggle-compatible API on loopback that stores datasets and models and runs kernels.

Point the official client at it with ``KAGFLOW_KAGGLE_ENDPOINT=http://127.0.0.1:PORT``
(``kagflow.hub.client.ENDPOINT_ENV``) or ``build_api(server.url)``.

Public API::

    start_server(data_dir, port=0, *, faults=None, settings=None, users=None, tokens=None) -> LocalServer
        LocalServer: .url .port .data_dir .faults (settable) .stop() .cancel_kernel(owner, slug, version=None)
                     context manager
    serve_forever(data_dir, port)                  foreground; what ``python -m kagflow.local serve`` runs
    ensure_background_server(data_dir) -> url      start detached unless alive; stop_background_server(data_dir)
    default_data_dir()                             $KAGFLOW_LOCAL_DATA_DIR or ~/.kagflow/local
    run_notebook_in_sandbox(notebook, sandbox, *, timeout, enable_internet, env=None, cancel=None,
                            python=None, hide=(), limits=Limits(), require_sandbox=False)
                            -> (status, failure_message, log_path)
        the one runner of local kernels: an unprivileged bubblewrap sandbox (sandbox.py) on the local Kaggle
        image (kernel_image.py), under Kaggle's limits (limits.py)
    install_competition(data_dir, slug, files_dir, *, title=None, kernels_only=True)   (files_dir/hidden/: the
        hidden test set code submissions are re-run on); accept_rules(data_dir, slug, username);
        score_submission(solution, submission)
    serve_forever(data_dir, port, users=load_users(path))  key checking (also $KAGFLOW_LOCAL_USERS)
    (the official CLI against a server: kagflow.hub.official_cli.run_official_cli)
    Faults / FaultRule, Settings

See ``store.py`` for the data-dir layout, ``runner.py`` for the sandbox, ``server.py`` for routes.
"""

from __future__ import annotations

from kagflow.local.server.api import Settings
from kagflow.local.server.competition import ScoreError, accept_rules, install_competition, score_submission
from kagflow.local.control import (DATA_DIR_ENV, USERS_ENV, default_data_dir, ensure_background_server,
                                   find_free_port, load_users, running_url, serve_forever, stop_background_server)
from kagflow.local.server.faults import FaultRule, Faults
from kagflow.local.run.runner import run_notebook_in_sandbox
from kagflow.local.server.httpd import LocalServer, start_server


__all__ = ["DATA_DIR_ENV", "USERS_ENV", "FaultRule", "Faults", "LocalServer", "ScoreError", "Settings", "accept_rules",
           "default_data_dir", "ensure_background_server", "find_free_port", "install_competition", "load_users",
           "run_notebook_in_sandbox", "running_url", "score_submission", "serve_forever", "start_server",
           "stop_background_server"]
