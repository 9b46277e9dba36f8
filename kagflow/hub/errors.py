"""Server refusals and failures as typed errors, with their hints in one table.

``classify`` decides what kind of failure a client exception is; ``REFUSALS`` says, per kind,
the one-line message and the next step, for Kaggle and for the local Kaggle (as
huggingface_hub's ``cli/_errors.py`` maps each error type to its fix).
"""

from __future__ import annotations

import json
import os
import re
from typing import Optional

from kagflow.errors import (
    HubError,
    NotFoundError,
    NotSupportedError,
    PermissionDeniedError,
    RefusedError,
    RulesNotAcceptedError,
    ServerError,
    UnreachableError,
)
from kagflow.hub.endpoint import Endpoint
from kagflow.hub.retry import RetryPolicy, is_unreachable, status_of
from kagflow.rules import kaggle


class BodyRefusal(Exception):
    """The official client returned the server's refusal in the answer (``response.error``): Kaggle's create and
    update handlers answer HTTP 200 with ``error`` and, on some types, ``errorCode`` (e.g. 409 "already exists")."""

    def __init__(self, message: str, error_code: Optional[int] = None):
        super().__init__(message)
        self.message = message
        self.error_code = error_code


def checked(response):
    """Raise a refusal the official client returned as ``response.error`` (e.g. a slug in use)."""
    error = getattr(response, "error", None)
    if error:
        raise BodyRefusal(str(error), getattr(response, "error_code", None) or None)
    return response


def is_conflict(exc: BaseException) -> bool:
    """Kaggle says the thing already exists: HTTP 409, or HTTP 200 with ``errorCode`` 409 in the body."""
    return getattr(exc, "status", None) == 409 or body_status(exc) == 409


_CREDENTIALS = "~/.kaggle/kaggle.json, KAGGLE_USERNAME/KAGGLE_KEY or KAGGLE_API_TOKEN"

# kind: (message, hint on Kaggle, hint on the local Kaggle): the hint column is the endpoint's kind (HINTS).
# Fields: what, handle, status, server, where (the target in words), endpoint, seconds.
HINTS = {"kaggle": 1, "local": 2}
REFUSALS: dict[type, tuple[str, str, str]] = {
    NotFoundError: (
        "{what}: {handle} not found on {where}: {server}",
        "check the handle's owner and slug in kagflow.toml; kagflow creates it on publish/push",
        "the local Kaggle keeps its data in .kagflow/local; publish or push it there first"),
    RulesNotAcceptedError: (
        "{what}: the rules of competition {competition} are not accepted by {user} on {where} (HTTP {status}): "
        "{server}",
        "accept them at {rules_url} (signed in as {user}), then run the same command again",
        "accept them on the local Kaggle: kagflow local competition --accept-rules"),
    PermissionDeniedError: (
        "{what}: {where} refused the credentials (HTTP {status}): {server}",
        "check your Kaggle credentials (" + _CREDENTIALS + ") and that [project] username owns {handle}",
        "the local Kaggle accepts any key; check that [project] username owns {handle}"),
    RefusedError: (
        "{what}: {where} refused {handle}: {server}",
        "fix what the server names above, then run the same command again",
        "fix what the server names above, then run the same command again"),
    NotSupportedError: (
        "{what}: {where} does not support this call (HTTP {status}): {server}",
        "this call is not available through the API; do it on kaggle.com",
        "the local Kaggle does not offer this call (it is not a Kaggle outage); run it against Kaggle "
        "(target = \"kaggle\" with credentials)"),
    ServerError: (
        "{what}: {where} kept failing (HTTP {status}) after retries: {server}",
        "a problem on Kaggle's side; run the same command again later (kagflow never creates a duplicate)",
        "the local Kaggle failed; see .kagflow/local for its log, or restart it: kagflow local stop"),
    UnreachableError: (
        "{what}: no answer from {endpoint} (gave up after {seconds:.0f}s)",
        "check your network and proxy settings (HTTPS_PROXY) and that www.kaggle.com is reachable",
        "check that the local Kaggle is running (`kagflow local start`) and that KAGFLOW_KAGGLE_ENDPOINT, "
        "if set, names it"),
}


# Kaggle's 403 to a user who has not accepted a competition's rules: "You must accept this competition's rules
# before you'll be able to download files" (and the like for submissions)
_RULES = re.compile(r"accept\w*\b.{0,40}\brules\b", re.IGNORECASE | re.DOTALL)
_COMPETITION_URL = re.compile(r"/competitions/([A-Za-z0-9-]+)")


def _competition(server: str, handle: str) -> str:
    """The competition a rules refusal is about: named in the server's message, else the handle (a slug)."""
    named = _COMPETITION_URL.search(server)
    if named:
        return named.group(1)
    return handle if handle and "/" not in handle else ""


def body_status(exc: BaseException) -> Optional[int]:
    """The status a refusal carries: the HTTP code, or the body's ``code``/``errorCode`` on a 200-with-error."""
    if isinstance(exc, BodyRefusal):
        return exc.error_code
    status = status_of(exc)
    if status is not None and status < 400:
        try:
            code = exc.response.json().get("code")  # type: ignore[union-attr]
            return int(code) if code else status
        except (ValueError, AttributeError, TypeError):
            return status
    return status


def classify(exc: BaseException) -> type:
    if isinstance(exc, BodyRefusal):
        return RefusedError
    if is_unreachable(exc):
        return UnreachableError
    status = body_status(exc)
    if status == 404:
        return NotFoundError
    if status == 403 and _RULES.search(server_message(exc)):
        return RulesNotAcceptedError
    if status in (401, 403):
        return PermissionDeniedError
    if status in (405, 501):
        return NotSupportedError
    if status is not None and (status >= 500 or status in (408, 429)):
        return ServerError
    if status is not None or isinstance(exc, ValueError):
        return RefusedError  # 4xx, and the official client's own refusals (ValueError)
    return HubError


def server_message(exc: BaseException) -> str:
    if isinstance(exc, BodyRefusal):
        return exc.message
    response = getattr(exc, "response", None)
    if response is not None:
        try:
            body = response.json()
            if isinstance(body, dict) and body.get("message"):
                return str(body["message"])
        except (ValueError, json.JSONDecodeError):
            pass
        text = (getattr(response, "text", "") or "").strip()
        if text:
            return text[:300]
    return str(exc)


def translate(exc: BaseException, *, what: str, handle: str, target: Endpoint) -> Exception:
    """The typed HubError for a client exception: message and hint from ``REFUSALS``."""
    if isinstance(exc, HubError):
        return exc
    kind = classify(exc)
    server = scrub(server_message(exc))
    if kind is HubError:
        return HubError(f"{what}: {type(exc).__name__}: {server}", context=handle or None,
                        hint="set KAGFLOW_DEBUG=1 for the traceback", server_message=server, handle=handle,
                        target=target.describe())
    message, hint = REFUSALS[kind][0], REFUSALS[kind][HINTS[target.kind]]
    competition = _competition(server, handle)
    fields = dict(what=what, handle=handle or "the resource", status=body_status(exc), server=server,
                  where=target.describe(), endpoint=target.url, seconds=RetryPolicy.DEADLINE,
                  user=target.username, competition=competition or "(unnamed)",
                  rules_url=kaggle.rules_url(competition) if competition else
                  f"{kaggle.KAGGLE_URL}/competitions/<slug>/rules (the competition's Rules tab)")
    context = f"{handle} on {target.describe()}" if handle else target.describe()
    return kind(message.format(**fields), status=body_status(exc), context=context,
                hint=hint.format(**fields),
                server_message=server, handle=handle, target=target.describe())


_SECRET_ENV = ("KAGGLE_KEY", "KAGGLE_API_TOKEN")


def scrub(text: str) -> str:
    """Remove any credential value from text that may reach a log or an error."""
    for name in _SECRET_ENV:
        value = os.environ.get(name)
        if value and len(value) >= 6:
            text = text.replace(value, "***")
    return re.sub(r"(Basic|Bearer)\s+[A-Za-z0-9+/=._-]{8,}", r"\1 ***", text)
