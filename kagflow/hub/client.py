"""Builds the official ``KaggleApi`` for a target: real Kaggle or kagflow's local server.

This module is the one seam between kagflow and the official client:

* The 2.x client always targets production (``KaggleApi.build_kaggle_client`` passes the
  environment explicitly and ignores ``KAGGLE_API_ENVIRONMENT``), so a subclass points the
  kagglesdk HTTP client at ``endpoint``: requests go to ``{endpoint}/api/v1/{Service}/{Method}``.
* Every HTTP request the client makes (API calls, blob uploads, downloads) gets a
  ``(connect, read)`` timeout (``Timeouts``), so a hung connection cannot hang a command.
* Uploads and downloads report their progress (``kagflow.progress``): bytes, rate, ETA.
* The client's own retry loops (``with_retry``, urllib3 ``Retry`` on upload sessions, repeated
  upload resumes, download retries) are switched off: kagflow retries in one place, ``kagflow.hub.retry``.
"""

from __future__ import annotations

import contextlib
import io
import os
import threading
import types
from typing import Optional

# `import kaggle` authenticates a module-level client at import time and, with no credentials,
# prints a page of login help: kagflow decides about credentials itself, so keep that quiet.
with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
    from kaggle.api import kaggle_api_extended
    from kaggle.api.kaggle_api_extended import KaggleApi
import kagglesdk.kaggle_http_client as sdk_http
import requests
from kagglesdk.kaggle_env import KaggleEnv
from urllib3.util.retry import Retry

from kagflow import progress
from kagflow.hub.endpoint import ENDPOINT_ENV, Endpoint
from kagflow.project.credentials import has_credentials

LOCAL_KEY = "kagflow-local"  # the local server accepts any key; this one is not a secret


class Timeouts:
    """Seconds to wait for a connection and for each read (class constants; tests lower them)."""

    CONNECT = 5.0
    READ = 120.0

    @classmethod
    def pair(cls, requested=None) -> tuple[float, float]:
        """``requested`` as ``(connect, read)``: a caller's single number bounds the read only."""
        if isinstance(requested, tuple):
            connect, read = requested
            return (connect or cls.CONNECT, read or cls.READ)
        return (cls.CONNECT, requested or cls.READ)


class BoundedSession(requests.Session):
    """A session whose requests always carry a (connect, read) timeout and never retry inside."""

    def mount(self, prefix, adapter):
        adapter.max_retries = Retry(total=0, read=False)
        super().mount(prefix, adapter)

    def send(self, request, **kwargs):
        kwargs["timeout"] = Timeouts.pair(kwargs.get("timeout"))
        bar = getattr(_uploading, "bar", None)
        if bar is not None and request.method == "PUT" and hasattr(request.body, "read"):
            request.body = progress.CountingReader(request.body, bar)
        return super().send(request, **kwargs)


_uploading = threading.local()  # the Transfer of the file this thread is uploading


def _one_shot(method: Optional[str] = None):
    def call(*args, **kwargs):
        with BoundedSession() as session:
            if method is None:
                return session.request(*args, **kwargs)
            return session.request(method, *args, **kwargs)
    return call


class _BoundedRequests(types.ModuleType):
    """``requests`` as the official client's modules see it: every session is a BoundedSession."""

    Session = BoundedSession
    request = staticmethod(_one_shot())
    get = staticmethod(_one_shot("GET"))
    put = staticmethod(_one_shot("PUT"))
    post = staticmethod(_one_shot("POST"))

    def __getattr__(self, name):
        return getattr(requests, name)


_BOUNDED = _BoundedRequests("requests")
kaggle_api_extended.requests = _BOUNDED
sdk_http.requests = _BOUNDED


class EndpointKaggleApi(KaggleApi):
    """``KaggleApi`` whose requests go to ``endpoint`` (None: the client's own production default)."""

    MAX_UPLOAD_RESUME_ATTEMPTS = 1  # a failed upload fails the call; kagflow's retry re-runs it

    def __init__(self, endpoint: Optional[str] = None):
        super().__init__()
        self.kagflow_endpoint = endpoint.rstrip("/") if endpoint else None

    def with_retry(self, func, *args, **kwargs):
        return func  # kagflow.hub.retry is the one retry layer

    def upload_complete(self, path, url, quiet, resume=False):
        with progress.transfer(f"upload {os.path.basename(path)}", os.path.getsize(path)) as bar:
            _uploading.bar = bar
            try:
                return super().upload_complete(path, url, quiet, resume)
            finally:
                _uploading.bar = None

    def download_file(self, response, outfile, http_client, *args, **kwargs):
        size = int(response.headers.get("Content-Length") or 0) or None
        with progress.transfer(f"download {os.path.basename(outfile)}", size) as bar:
            chunks = response.iter_content

            def counted(*a, **k):
                for chunk in chunks(*a, **k):
                    bar.advance(len(chunk))
                    yield chunk

            response.iter_content = counted
            if len(args) < 4:  # (quiet, resume, chunk_size, max_retries): no retry loop of its own
                kwargs["max_retries"] = 0
            return super().download_file(response, outfile, http_client, *args, **kwargs)

    def build_kaggle_client(self):
        client = super().build_kaggle_client()
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


def api_for(endpoint: Endpoint) -> EndpointKaggleApi:
    """The official client for ``endpoint``, authenticated from the user's credentials where they exist (also
    against a local server); without any, signed in to the local server as ``endpoint.username`` (it takes any
    key)."""
    api = EndpointKaggleApi(endpoint.endpoint)
    if endpoint.kind == "kaggle" or has_credentials():
        api.authenticate()
        return api
    api.config_values = {api.CONFIG_NAME_USER: endpoint.username, api.CONFIG_NAME_KEY: LOCAL_KEY}
    api._authenticated = True
    return api
