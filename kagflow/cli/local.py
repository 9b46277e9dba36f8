"""`kagflow local serve|start|stop|open|competition`: the local Kaggle server."""

from __future__ import annotations

from pathlib import Path

import click

from kagflow.cli._app import App
from kagflow.workflow import local as local_server


@click.group("local")
def local() -> None:
    """The local Kaggle: the official client's API on 127.0.0.1, with kernels run on this machine."""


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
@click.option("--idle-s", type=float, default=None,
              help="Stop by itself once idle (no request, no kernel queued or running) this many seconds. Default: "
                   "never (a background server started on demand: KAGFLOW_LOCAL_IDLE_S).")
@click.pass_obj
def serve(app: App, port: int, data_dir: Path | None, users_file: Path | None, consistency: str | None,
          idle_s: float | None) -> None:
    """Run the server in the foreground until Ctrl-C (or --idle-s).

    Point kagflow (or the official client through `kagflow kaggle`) at it with
    KAGFLOW_KAGGLE_ENDPOINT=http://127.0.0.1:PORT.
    """
    local_server.serve(app.config, port=port, data=data_dir, users_file=users_file, consistency=consistency,
                       idle_s=idle_s)


@local.command("start")
@click.option("--data-dir", type=click.Path(path_type=Path), default=None, help="Data folder.")
@click.pass_obj
def start(app: App, data_dir: Path | None) -> None:
    """Start the server in the background (reused if already running) and print its URL."""
    url = local_server.start(app.config, data_dir)
    app.out.result(f"Local Kaggle running at {url}", use=f"export KAGFLOW_KAGGLE_ENDPOINT={url}")


@local.command("stop")
@click.option("--data-dir", type=click.Path(path_type=Path), default=None, help="Data folder.")
@click.pass_obj
def stop(app: App, data_dir: Path | None) -> None:
    """Stop the background server."""
    stopped = local_server.stop(app.config, data_dir)
    app.out.result("Local Kaggle stopped" if stopped else "Local Kaggle was not running")


@local.command("open")
@click.option("--no-browser", is_flag=True, help="Print the one-time link instead of opening a browser.")
@click.pass_obj
def open_pages(app: App, no_browser: bool) -> None:
    """Open the local Kaggle's pages in a browser, signed in (your private notebooks, models, datasets and
    submissions too).

    The server gives a link that works once, for a short while; your key never goes into a URL or a cookie.
    Without a browser (or with --no-browser) the link is printed.

    \b
    Examples:
      kagflow local open
      kagflow local open --no-browser
    """
    import webbrowser

    link = local_server.login_link(app.session)
    if not no_browser and webbrowser.open(link.url):
        app.out.result(f"Opened the local Kaggle's pages at {app.session.target.url}/, signed in as {link.user}")
        return
    app.out.result(f"Open this link to sign in to the local Kaggle's pages as {link.user} (it works once, within "
                   f"{link.expires_in} s)", url=link.url)


@local.command("competition")
@click.option("--files", type=click.Path(path_type=Path, file_okay=False), default=None,
              help="Folder with train.csv, test.csv, sample_submission.csv, the hidden solution.csv and, under "
                   "hidden/, the hidden test set a code submission is re-run on (default: the synthetic "
                   "competition).")
@click.option("--data-dir", type=click.Path(path_type=Path), default=None,
              help="The server's data folder (default: the server KAGFLOW_KAGGLE_ENDPOINT names, else "
                   ".kagflow/local).")
@click.option("--metric", default=None,
              help="What scores its submissions: log_loss, accuracy, roc_auc, macro_f1 or map_at_3 (default: "
                   "[data] metric). solution.csv is in the submission's format.")
@click.option("--accept-rules", is_flag=True,
              help="Accept the competition's rules as [project] username (downloads and submissions answer 403 "
                   "until then, as on Kaggle).")
@click.pass_obj
def competition(app: App, files: Path | None, data_dir: Path | None, metric: str | None, accept_rules: bool) -> None:
    """Host the project's competition on the local server, scored by its metric (--metric, else [data] metric).

    Without --files: what the server hosts already, else the synthetic competition for the default competition
    (or after `kagflow data synth`); any other competition needs its files.

    \b
    Examples:
      kagflow local competition --files data/ --metric accuracy --accept-rules
    """
    cfg = app.config
    hosted, data = local_server.host_competition(cfg, data_dir, files=files, metric=metric,
                                                 accept_rules=accept_rules)
    app.out.result(f"Competition {cfg.project.competition} hosted locally"
                   + (f" ({hosted.note})" if hosted.synthetic else "")
                   + (f"; rules accepted as {cfg.username}" if accept_rules else ""),
                   files=sorted(hosted.files), synthetic=hosted.synthetic, data=data)

