"""The local Kaggle built once for the web pages' tests (test_web_*.py): see web_fixtures.build_site."""

from __future__ import annotations

import pytest
from web_fixtures import build_site


@pytest.fixture(scope="session")
def web_site(tmp_path_factory):
    """A key-checking local Kaggle holding a competitor's day (built in about 15 s); stopped at the end."""
    with pytest.MonkeyPatch.context() as env:
        env.setenv("HOME", str(tmp_path_factory.mktemp("web-home")))
        for name in ("KAGGLE_API_TOKEN", "KAGGLE_USERNAME", "KAGGLE_KEY", "KAGGLE_CONFIG_DIR"):
            env.delenv(name, raising=False)  # the official clients sign in with KEYS only
        server = build_site(tmp_path_factory.mktemp("web-site"))
    try:
        yield server
    finally:
        server.stop()
