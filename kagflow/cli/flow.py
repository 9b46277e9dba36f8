"""`kagflow flow`: the whole competition flow (what `make submit` runs)."""

from __future__ import annotations

import click

from kagflow.cli._app import App, poll_printer
from kagflow.workflow.flow import run_flow
from kagflow.workflow.folds import check_folds, parse_folds
from kagflow.workflow.steps import STEP_NAMES, STEPS


@click.command("flow", help="""Run every step: publish the base model, build and push wheels, train, publish the
adapter, infer, submit; print the score. Re-running continues from the first unfinished step.

\b
Steps:
""" + "\n".join(f"  {s.name:<8} {s.help}" for s in STEPS) + """

\b
Examples:
  kagflow flow
  kagflow flow --from train
  kagflow flow --folds 0-4      # five folds, five adapter versions, their ensemble submitted
  make submit KAGFLOW_FROM=train
""")
@click.option("--from", "from_step", type=click.Choice(STEP_NAMES), default=None, envvar="KAGFLOW_FROM",
              help="Redo the flow from this step on (re-pushes kernels). [env var: KAGFLOW_FROM]")
@click.option("--local-train", is_flag=True, envvar="KAGFLOW_LOCAL_TRAIN",
              help="Train on this machine (its GPU if any) instead of a Kaggle kernel. [env var: KAGFLOW_LOCAL_TRAIN]")
@click.option("--folds", default=None, metavar="0-4|0,2",
              help="Train these folds (each its own kernel version and adapter version) and submit their "
                   "ensemble (default: [train] folds; none: fold_idx alone).")
@click.pass_obj
def flow(app: App, from_step: str | None, local_train: bool, folds: str | None) -> None:
    train = app.config.train
    chosen = parse_folds(folds, train.n_splits) if folds else check_folds(train.folds, train.n_splits)
    report = run_flow(app.session, from_step=from_step, local_train=local_train,
                      log=lambda m: click.echo(m, err=True), on_poll=poll_printer("submission"), folds=chosen)
    app.out.data(**report.to_dict())
    for line in report.lines():
        app.out.info(line)
    if report.local_server:
        app.out.info(f"  the local Kaggle keeps running at {report.local_server} for the next run, until idle for "
                     "KAGFLOW_LOCAL_IDLE_S; stop it now with `kagflow local stop`")

