"""Builds the official ``KaggleApi`` for a target: real Kaggle or kagflow's local server.

The 2.x client always targets production (``KaggleApi.build_kaggle_client`` passes the
environment explicitly and ignores ``KAGGLE_API_ENVIRONMENT``), so this module is the one seam:
a subclass whose ``build_kaggle_client`` points the kagglesdk HTTP client at ``endpoint``.
Requests then go to ``{endpoint}/api/v1/{Service}/{Method}``, the local server's layout.
"""

from __future__ import annotations

import contextlib
import io
import os
from typing import Optional

# `import kaggle` authenticates a module-level client at import time and, with no credentials,
# prints a page of login help: kagflow decides about credentials itself, so keep that quiet.
with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
    from kaggle.api.kaggle_api_extended import KaggleApi
from kagglesdk.kaggle_env import KaggleEnv
import requests
from requests.adapters import HTTPAdapter

from kagflow.hub.retry import RETRY_STATUS, call_with_retry

ENDPOINT_ENV = "KAGFLOW_KAGGLE_ENDPOINT"
SAFE_METHOD_PREFIXES = ("Get", "List", "Download", "StartBlobUpload", "IntrospectToken")


class SafeRetryAdapter(HTTPAdapter):
    """Retries 429/5xx and dropped connections of calls that create nothing (Get*, List*,
    Download*, StartBlobUpload) inside one request; creating calls are retried one level up,
    where kagflow looks before it creates again."""

    def send(self, request, **kwargs):
        method = request.url.rstrip("/").rsplit("/", 1)[-1]
        if not method.startswith(SAFE_METHOD_PREFIXES):
            return super().send(request, **kwargs)

        def attempt():
            response = super(SafeRetryAdapter, self).send(request, **kwargs)
            if response.status_code in RETRY_STATUS:
                raise requests.HTTPError(f"HTTP {response.status_code}", response=response)
            return response

        try:
            return call_with_retry(attempt, what=method, log=lambda m: None)
        except requests.HTTPError as e:
            return e.response


def _mount_safe_retries(http) -> None:
    original = http._init_session

    def init_session():
        fresh = http._session is None
        result = original()
        if fresh and http._session is not None:
            adapter = SafeRetryAdapter()
            http._session.mount("http://", adapter)
            http._session.mount("https://", adapter)
        return result

    http._init_session = init_session


class EndpointKaggleApi(KaggleApi):
    """``KaggleApi`` whose requests go to ``endpoint`` (None: the client's own production default)."""

    def __init__(self, endpoint: Optional[str] = None):
        super().__init__()
        self.kagflow_endpoint = endpoint.rstrip("/") if endpoint else None

    def build_kaggle_client(self):
        client = super().build_kaggle_client()
        _mount_safe_retries(client._http_client)
        if self.kagflow_endpoint:
            http = client._http_client
            http._env = KaggleEnv.LOCAL  # LOCAL serves under {endpoint}/api/v1
            http._endpoint = self.kagflow_endpoint
        return client


def build_api(endpoint: Optional[str] = None, *, authenticate: bool = True) -> EndpointKaggleApi:
    """An authenticated official client for ``endpoint`` (default: ``$KAGFLOW_KAGGLE_ENDPOINT`` or Kaggle).

    Credentials are read only where the official client reads them (``~/.kaggle/kaggle.json``,
    ``KAGGLE_USERNAME``/``KAGGLE_KEY``, ``KAGGLE_API_TOKEN``/``~/.kaggle/access_token``).
    """
    endpoint = endpoint if endpoint is not None else os.environ.get(ENDPOINT_ENV) or None
    api = EndpointKaggleApi(endpoint)
    if authenticate:
        api.authenticate()
    return api
