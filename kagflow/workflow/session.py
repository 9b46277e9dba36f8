"""One command's session: the facade the CLI (and the flow's steps) call, one verb per command.

Data flows one way: CLI -> Session -> hub (or local) -> rules. The session holds the target, chosen once
(``kagflow.workflow.target``), the gateway connected on first use, the typed state of that target, and the
config as that target has it (its model versions pinned). Each verb is a function of its own module,
``workflow/<group>.py`` (a CLI group's), taking the session first and bound here (dvc's ``Repo``); the ones
that publish, push or submit hold the project lock (``@locked``).

The verb modules import the hub (the official client) and the local Kaggle inside the functions that talk
to them, so a command that needs neither (``kagflow check``) never loads them.
"""

from __future__ import annotations

import sys
from functools import cached_property
from typing import Callable

from kagflow.project.config import Config
from kagflow.project.state import ProjectState
from kagflow.workflow.target import Target, choose_target


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


class Session:
    """Built once per command from kagflow.toml's ``config``. Nothing is connected, started or announced until a
    verb needs it."""

    def __init__(self, config: Config, *, log: Callable[[str], None] = _stderr, announce: bool = True):
        self.target: Target = choose_target(config)
        self.root = config.root
        self.log = log
        self.announce = announce

    # ------------------------------------------------------------------ where, and what is there

    @cached_property
    def endpoint(self):
        """The target's endpoint, reached once (starting the local Kaggle if needed) and named on stderr, so a switch
        between Kaggle and the local Kaggle is never silent."""
        endpoint, why = self.target.connect()
        if self.announce:
            print(f"kagflow: target {endpoint.describe()} as {endpoint.username}{why}", file=sys.stderr)
        return endpoint

    @cached_property
    def gateway(self):
        from kagflow.hub.client import api_for
        from kagflow.hub.gateway import Gateway

        return Gateway(api_for(self.endpoint), self.endpoint, self.log)

    @cached_property
    def state(self) -> ProjectState:
        return self.target.state()

    @property
    def config(self) -> Config:
        """kagflow.toml's config with the model versions the target really has (on the local target recorded in
        the state file, on Kaggle pinned in kagflow.toml)."""
        return self.target.pinned(self.state)

    def link(self, handle) -> str:
        """``handle``'s page on the target (the local server's pages on the local target)."""
        return self.endpoint.link(handle)

    def official_cli(self, args: list[str]) -> int:
        """`kagflow kaggle ARGS`: the official kaggle CLI against this target; its exit code."""
        from kagflow.hub.official_cli import run_official_cli

        return run_official_cli(self.gateway.api, list(args)).exit_code

    # ------------------------------------------------------------------ the verbs, one module per CLI group

    from kagflow.workflow.check import check  # kagflow check
    from kagflow.workflow.image import probe_image  # kagflow image probe
    from kagflow.workflow.kernel import follow, kernel_version, logs, pull, push, render, status, wait  # kernel
    from kagflow.workflow.kernel_import import import_notebook  # kagflow kernel import
    from kagflow.workflow.kernel_run import run_here  # kagflow kernel run --local
    from kagflow.workflow.model import adapter_dir, publish  # kagflow model publish
    from kagflow.workflow.online import check_online  # kagflow check --online
    from kagflow.workflow.status import day_status, submission_lines  # kagflow status, kagflow submissions
    from kagflow.workflow.submit import submit, submit_csv  # kagflow submit
    from kagflow.workflow.wheels import build_wheels, push_wheels  # kagflow wheels build|push
