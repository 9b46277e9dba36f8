"""Shared by the hub modules: the Gateway object, error translation and content digests."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Optional, TypeVar

import requests

from kagflow.errors import HubError, NotFoundError
from kagflow.hub.retry import call_with_retry, is_transient, status_of
from kagflow.hub.target import Target

T = TypeVar("T")

CONTENT_PREFIX = "kagflow-content-"
UPLOAD_RETRIES = 24  # a file named kagflow-content-<digest16>.json rides with each upload


def _stderr(message: str) -> None:
    print(message, file=sys.stderr)


@dataclass
class Gateway:
    """The official client for one target plus how kagflow logs through it."""

    api: object  # kagflow.hub.client.EndpointKaggleApi
    target: Target
    log: Callable[[str], None] = field(default=_stderr)

    @property
    def username(self) -> str:
        return self.target.username

    def call(self, fn: Callable[[], T], *, what: str, handle: str = "",
             before_retry: Optional[Callable[[], Optional[T]]] = None,
             retry_forbidden: bool = False, uploads: bool = False) -> T:
        """One API call: retried when transient, translated to a HubError when not.

        ``uploads``: the call uploads files first (many requests, each of which may fail; the
        official client resumes finished files), so it gets a larger retry budget.
        """
        def should_retry(exc: BaseException) -> bool:
            if retry_forbidden and status_of(exc) == 403:
                return True  # Kaggle refuses a new version while the previous one is processing
            if isinstance(exc, ValueError) and str(exc).startswith("Upload unsuccessful"):
                return True  # the official client's word for a blob PUT that got 429/5xx
            return is_transient(exc)

        try:
            return call_with_retry(fn, what=what, should_retry=should_retry, before_retry=before_retry,
                                   log=self.log, max_retries=UPLOAD_RETRIES if uploads else None)
        except Exception as exc:  # noqa: BLE001
            raise translate(exc, what=what, handle=handle, target=self.target) from None

    def exists(self, fn: Callable[[], object], *, what: str, handle: str) -> bool:
        """True if ``fn`` finds the resource, False on 404 (retrying transient errors)."""
        try:
            self.call(fn, what=what, handle=handle)
            return True
        except NotFoundError:
            return False


class RefusedInBody(ValueError):
    """A refusal Kaggle answers with HTTP 200 and ``error`` (and ``errorCode``, e.g. 409) in the body, as its
    create/update handlers do; ``error_code`` plays the part of the HTTP status (see :func:`translate`)."""

    def __init__(self, message: str, error_code: Optional[int] = None):
        super().__init__(message)
        self.error_code = error_code


def checked(response):
    """The official client returns some refusals (e.g. a slug in use) as ``response.error``: raise them."""
    error = getattr(response, "error", None)
    if error:
        raise RefusedInBody(error, getattr(response, "error_code", None) or None)
    return response


def is_conflict(exc: BaseException) -> bool:
    """Kaggle says the thing already exists: HTTP 409, or 200 with ``errorCode`` 409 in the body."""
    return getattr(exc, "status", None) == 409 or status_of(exc) == 409 or getattr(exc, "error_code", None) == 409


def server_message(exc: BaseException) -> str:
    response = getattr(exc, "response", None)
    if response is not None:
        try:
            body = response.json()
            if isinstance(body, dict) and body.get("message"):
                return str(body["message"])
        except ValueError:
            pass
        text = (getattr(response, "text", "") or "").strip()
        if text:
            return text[:300]
    return str(exc)


def translate(exc: BaseException, *, what: str, handle: str, target: Target) -> Exception:
    """Map a client exception to a HubError naming the handle, the server's message and a next step."""
    if isinstance(exc, HubError):
        return exc
    status = status_of(exc) or getattr(exc, "error_code", None)
    where = f"{handle} on {target.describe()}" if handle else target.describe()
    if status == 404:
        return NotFoundError(f"{what}: {handle or 'resource'} not found", status=404, context=where,
                             hint="check the handle (kagflow check) or create it first")
    if status in (401, 403):
        hint = ("check your Kaggle credentials (~/.kaggle/kaggle.json or KAGGLE_USERNAME/KAGGLE_KEY) "
                "and that the username in kagflow.toml owns this handle")
        return HubError(f"{what}: permission denied ({status}): {scrub(server_message(exc))}", status=status,
                        context=where, hint=hint)
    if isinstance(exc, (requests.ConnectionError, requests.Timeout)):
        hint = ("start it with `kagflow local serve`, or unset KAGFLOW_KAGGLE_ENDPOINT" if target.is_local
                else "probably a temporary network issue; run the same command again")
        return HubError(f"{what}: could not reach {target.describe()}", context=where, hint=hint)
    if status is not None:
        return HubError(f"{what}: HTTP {status}: {scrub(server_message(exc))}", status=status, context=where,
                        hint="run the same command again; kagflow never creates a duplicate version")
    if isinstance(exc, ValueError):  # the official client's own pre-request checks
        return HubError(f"{what}: {scrub(str(exc))}", context=where,
                        hint="run `kagflow check` and fix what it lists")
    return HubError(f"{what}: {type(exc).__name__}: {scrub(str(exc))}", context=where,
                    hint="set KAGFLOW_DEBUG=1 for the traceback")


_SECRET_ENV = ("KAGGLE_KEY", "KAGGLE_API_TOKEN")


def scrub(text: str) -> str:
    """Remove any credential value from text that may reach a log or an error."""
    for name in _SECRET_ENV:
        value = os.environ.get(name)
        if value and len(value) >= 6:
            text = text.replace(value, "***")
    return re.sub(r"(Basic|Bearer)\s+[A-Za-z0-9+/=._-]{8,}", r"\1 ***", text)


# --------------------------------------------------------------------------- content digests

def file_sha256(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def content_files(folder: Path, skip: Iterable[str] = ()) -> list[Path]:
    """The top-level files of ``folder``: what the official client uploads (it skips sub-folders)."""
    skip = set(skip)
    return sorted(p for p in Path(folder).iterdir()
                  if p.is_file() and p.name not in skip and not p.name.startswith(CONTENT_PREFIX))


def folder_manifest(folder: Path, skip: Iterable[str] = ()) -> dict:
    """{relative path: {size, sha256}} of every file under ``folder`` (metadata files skipped)."""
    folder = Path(folder)
    return {str(p.relative_to(folder)): {"size": p.stat().st_size, "sha256": file_sha256(p)}
            for p in content_files(folder, skip)}


def manifest_digest(manifest: dict) -> str:
    blob = json.dumps(manifest, sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()


def content_marker_name(digest: str) -> str:
    return f"{CONTENT_PREFIX}{digest[:16]}.json"


def marker_digest(names: Iterable[str]) -> Optional[str]:
    """The 16-hex digest a listing of uploaded file names carries, if any."""
    for name in names:
        base = os.path.basename(name)
        if base.startswith(CONTENT_PREFIX) and base.endswith(".json"):
            return base[len(CONTENT_PREFIX):-len(".json")]
    return None


def stage_folder(source: Path, staging: Path, manifest: dict, digest: str,
                 keep: Iterable[str] = ()) -> None:
    """Fill ``staging`` with links to ``source``'s files (no copy of a 5 GB model) plus the marker."""
    source, staging = Path(source), Path(staging)
    keep = set(keep)
    staging.mkdir(parents=True, exist_ok=True)
    for child in staging.iterdir():
        if child.name in keep:
            continue
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child)
        else:
            child.unlink()
    for rel in manifest:
        src, dst = source / rel, staging / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(src, dst)
        except OSError:
            os.symlink(src.resolve(), dst)
    (staging / content_marker_name(digest)).write_text(json.dumps(
        {"digest": digest, "files": manifest}, indent=1, sort_keys=True), encoding="utf-8")


def connect(config, *, announce: bool = True) -> Gateway:
    """The gateway for the project's target (see kagflow.hub.target)."""
    from kagflow.hub.target import build_target_api, resolve_target

    target = resolve_target(config, announce=announce)
    return Gateway(build_target_api(target), target)
