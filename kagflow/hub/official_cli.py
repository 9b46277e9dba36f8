"""Run the official CLI's own entry point with kagflow's client (the endpoint seam) in place."""

from __future__ import annotations

import sys


def run_official_cli(api, args: list[str]) -> int:
    """``kaggle ARGS`` through ``kaggle.cli.main`` with its module-level client swapped for ``api``."""
    from kagflow.hub import client  # noqa: F401 - imports kaggle quietly first
    import kaggle.cli

    saved_api, saved_argv = kaggle.cli.api, sys.argv
    kaggle.cli.api = api
    sys.argv = ["kaggle", *args]
    try:
        kaggle.cli.main()
        return 0
    except SystemExit as e:
        if e.code is None:
            return 0
        return e.code if isinstance(e.code, int) else 1
    finally:
        kaggle.cli.api, sys.argv = saved_api, saved_argv
