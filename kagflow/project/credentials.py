"""Kaggle credentials, looked up where the official client looks (kaggle 2.x): their presence and username.

The key itself is never read out: kagflow only asks whether credentials exist (which picks the target) and
whose they are (the default ``[project] username``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path


def kaggle_config_dir() -> Path:
    """Where the official client looks for kaggle.json (same rules as kaggle 2.x)."""
    env = os.environ.get("KAGGLE_CONFIG_DIR")
    if env:
        return Path(env)
    home = Path.home() / ".kaggle"
    if home.exists():
        return home
    xdg = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(xdg) / "kaggle"


def has_credentials() -> bool:
    """True when the official client would find Kaggle credentials (the values are never read out)."""
    if os.environ.get("KAGGLE_API_TOKEN"):
        return True
    if os.environ.get("KAGGLE_USERNAME") and os.environ.get("KAGGLE_KEY"):
        return True
    for name in ("access_token", "access_token.txt"):
        if (Path.home() / ".kaggle" / name).is_file():
            return True
    cfg = kaggle_config_dir() / "kaggle.json"
    if cfg.is_file():
        try:
            data = json.loads(cfg.read_text())
            return bool(data.get("username") and data.get("key"))
        except (OSError, ValueError):
            return False
    return False


def credentials_username() -> str:
    """The username of the Kaggle credentials, if any (never the key)."""
    if os.environ.get("KAGGLE_USERNAME"):
        return os.environ["KAGGLE_USERNAME"]
    cfg = kaggle_config_dir() / "kaggle.json"
    if cfg.is_file():
        try:
            return str(json.loads(cfg.read_text()).get("username") or "")
        except (OSError, ValueError):
            return ""
    return ""
