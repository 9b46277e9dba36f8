"""Run the official ``kaggle`` CLI (``kaggle.cli.main``) against an endpoint, in this process.

``kaggle.cli`` binds its commands to the module-level ``kaggle.api`` object when it parses
arguments, so swapping that object for an :class:`EndpointKaggleApi` redirects every command
without touching the official code. ``sys.argv``, stdout and stderr are restored afterwards.
"""

from __future__ import annotations

import contextlib
import io
import sys
from dataclasses import dataclass
from typing import Optional, Sequence

import kaggle
import kaggle.cli

from kagflow.hub.client import EndpointKaggleApi


@dataclass
class CliResult:
    exit_code: int
    stdout: str
    stderr: str


def run_official_cli(args: Sequence[str], endpoint: Optional[str]) -> CliResult:
    """``kaggle <args>`` against ``endpoint`` (None: Kaggle itself); returns exit code and output."""
    api = EndpointKaggleApi(endpoint)
    saved = (sys.argv, kaggle.api, kaggle.cli.api)
    out, err = io.StringIO(), io.StringIO()
    code = 0
    try:
        sys.argv = ["kaggle", *args]
        kaggle.api = kaggle.cli.api = api
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                kaggle.cli.main()
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    finally:
        sys.argv, kaggle.api, kaggle.cli.api = saved
    return CliResult(code, out.getvalue(), err.getvalue())
