"""Which Kaggle kagflow talks to: real Kaggle, or the local Kaggle server on 127.0.0.1.

Resolution order: ``KAGFLOW_KAGGLE_ENDPOINT`` (an explicit server), then ``[project] target``
(``local``/``kaggle``), then ``auto``: Kaggle when credentials exist, else the local server,
started in the background on demand with its data under ``.kagflow/local``.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from kagflow.project.config import Config, has_credentials
from kagflow.errors import ConfigError
from kagflow.hub.client import ENDPOINT_ENV, EndpointKaggleApi

KAGGLE_URL = "https://www.kaggle.com"
LOCAL_KEY = "kagflow-local"  # the local server accepts any key; this one is not a secret


@dataclass(frozen=True)
class Target:
    kind: str  # "kaggle" | "local"
    endpoint: Optional[str]  # None: the official client's production endpoint
    username: str

    @property
    def is_local(self) -> bool:
        return self.kind == "local"

    @property
    def url(self) -> str:
        """Where the target is reached: the local server's URL or Kaggle's."""
        return self.endpoint or KAGGLE_URL

    def describe(self) -> str:
        return "Kaggle" if self.endpoint is None else f"the local Kaggle at {self.endpoint}"

    def link(self, handle) -> str:
        """The page of ``handle`` on this target (the local server's, not kaggle.com's, when local)."""
        url = handle.to_url()
        return url if self.endpoint is None else url.replace(KAGGLE_URL, self.endpoint)


def local_data_dir(config: Config) -> Path:
    return config.root / ".kagflow" / "local"


def server_data_dir(config: Config) -> Path:
    """The data folder of the local server the project talks to: the one ``KAGFLOW_KAGGLE_ENDPOINT`` names (it
    says where through ``/health``, so a server started with ``--data-dir`` is followed), else ``.kagflow/local``."""
    endpoint = os.environ.get(ENDPOINT_ENV)
    if not endpoint:
        return local_data_dir(config)
    from kagflow.local.control import health

    info = health(endpoint)
    if not info or not info.get("data_dir"):
        raise ConfigError(f"{ENDPOINT_ENV}={endpoint}: no local Kaggle answers there",
                          hint="start it (kagflow local serve --data-dir DIR) or unset the variable")
    return Path(info["data_dir"])


def targets_local(config: Config) -> bool:
    """Whether kagflow talks to a local server (an explicit endpoint, or the local target) rather
    than Kaggle: the rule ``resolve_target`` applies, without starting anything."""
    if os.environ.get(ENDPOINT_ENV):
        return True
    mode = config.project.target
    return mode == "local" or (mode == "auto" and not has_credentials())


def resolve_target(config: Config, *, announce: bool = True) -> Target:
    """The target of this command; with ``announce``, its name goes to stderr first, so a switch
    between Kaggle and the local Kaggle is never silent."""
    target, why = _resolve(config)
    if announce:
        print(f"kagflow: target {target.describe()} as {target.username}{why}", file=sys.stderr)
    return target


def _resolve(config: Config) -> tuple[Target, str]:
    endpoint = os.environ.get(ENDPOINT_ENV)
    if endpoint:
        _check_endpoint(endpoint)
        return Target("local", endpoint.rstrip("/"), config.username), f" ({ENDPOINT_ENV} is set)"
    mode = config.project.target
    if not targets_local(config):
        if not has_credentials():
            raise ConfigError(
                "target = \"kaggle\" but no Kaggle credentials were found",
                context="looked in KAGGLE_API_TOKEN, ~/.kaggle/access_token, KAGGLE_USERNAME/KAGGLE_KEY, "
                        "~/.kaggle/kaggle.json (or $KAGGLE_CONFIG_DIR)",
                hint="create a token at https://www.kaggle.com/settings and save kaggle.json, "
                     "or set target = \"local\"")
        why = " (target = \"auto\" and Kaggle credentials were found)" if mode == "auto" else ""
        return Target("kaggle", None, config.username), why
    from kagflow.local.control import ensure_background_server

    url = ensure_background_server(local_data_dir(config))
    why = (f" (no Kaggle credentials; using the local Kaggle, data in {local_data_dir(config)})"
           if mode == "auto" else "")
    return Target("local", url, config.username), why


def _check_endpoint(endpoint: str) -> None:
    from urllib.parse import urlparse

    host = urlparse(endpoint).hostname
    if host not in ("127.0.0.1", "localhost", "::1"):
        raise ConfigError(f"{ENDPOINT_ENV}={endpoint} is not a loopback address",
                          hint="point it at the local Kaggle server, e.g. http://127.0.0.1:PORT, or unset it")


def build_target_api(target: Target) -> EndpointKaggleApi:
    """The official client for ``target``, authenticated from the user's credentials where they
    exist (also against a local server); without any, signed in to the local server as the
    project's username (it takes any key)."""
    api = EndpointKaggleApi(target.endpoint)
    if target.kind == "kaggle" or has_credentials():
        api.authenticate()
        return api
    api.config_values = {api.CONFIG_NAME_USER: target.username, api.CONFIG_NAME_KEY: LOCAL_KEY}
    api._authenticated = True
    return api
