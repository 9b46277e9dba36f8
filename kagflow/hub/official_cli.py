"""Run the official ``kaggle`` CLI (``kaggle.cli.main``) in this process with kagflow's client.

``kaggle.cli`` binds its commands to the module-level ``kaggle.cli.api`` object when it parses
arguments, so swapping that object for an :class:`EndpointKaggleApi` redirects every command
without touching the official code. ``sys.argv`` (and stdout/stderr when captured) are restored.
"""

from __future__ import annotations

import contextlib
import io
import sys
from dataclasses import dataclass
from typing import Sequence

from kagflow.hub.client import EndpointKaggleApi  # imports kaggle quietly first


@dataclass
class CliResult:
    exit_code: int
    stdout: str = ""
    stderr: str = ""


def run_official_cli(api: EndpointKaggleApi, args: Sequence[str], *, capture: bool = False) -> CliResult:
    """``kaggle <args>`` through the official entry point, with ``api`` as its client."""
    import kaggle
    import kaggle.cli

    saved = (sys.argv, kaggle.api, kaggle.cli.api)
    out, err = io.StringIO(), io.StringIO()
    code = 0
    try:
        sys.argv = ["kaggle", *args]
        kaggle.api = kaggle.cli.api = api
        with contextlib.ExitStack() as stack:
            if capture:
                stack.enter_context(contextlib.redirect_stdout(out))
                stack.enter_context(contextlib.redirect_stderr(err))
            try:
                kaggle.cli.main()
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    finally:
        sys.argv, kaggle.api, kaggle.cli.api = saved
    return CliResult(code, out.getvalue(), err.getvalue())
