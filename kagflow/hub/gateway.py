"""Shared by the hub modules: the Gateway object (every call's retry and error translation) and
content digests."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Optional, TypeVar

from kagflow.errors import HubError, NotFoundError
from kagflow.hub.endpoint import Endpoint
from kagflow.hub.errors import translate
from kagflow.hub.retry import Outage, WaitPolicy, call_with_retry, is_transient, poll_until, status_of

T = TypeVar("T")

CONTENT_PREFIX = "kagflow-content-"
UPLOAD_RETRIES = 24  # a file named kagflow-content-<digest16>.json rides with each upload


def _stderr(message: str) -> None:
    print(message, file=sys.stderr)


@dataclass
class Gateway:
    """The official client for one target plus how kagflow logs through it.

    ``call`` is the one place a hub request is retried and translated: reading calls are retried
    as they are; creating calls pass ``before_retry``, which looks before creating again.
    """

    api: object  # kagflow.hub.client.EndpointKaggleApi
    endpoint: Endpoint
    log: Callable[[str], None] = field(default=_stderr)
    outage: Outage = field(default_factory=Outage)  # one unreachable-deadline for the whole command

    @property
    def username(self) -> str:
        return self.endpoint.username

    def call(self, fn: Callable[[], T], *, what: str, handle: str = "",
             before_retry: Optional[Callable[[], Optional[T]]] = None,
             retry_forbidden: bool = False, uploads: bool = False) -> T:
        """One API call: retried when transient, translated to a typed HubError when not.

        ``uploads``: the call uploads files first (many requests, each of which may fail; the
        official client resumes finished files), so it gets a larger retry budget.
        """
        def should_retry(exc: BaseException) -> bool:
            if retry_forbidden and status_of(exc) == 403:
                return True  # Kaggle refuses a new version while the previous one is processing
            if isinstance(exc, ValueError) and str(exc).startswith("Upload unsuccessful"):
                return True  # the official client's word for a blob PUT that failed
            return is_transient(exc)

        try:
            return call_with_retry(fn, what=what, should_retry=should_retry, before_retry=before_retry,
                                   log=self.log, max_retries=UPLOAD_RETRIES if uploads else None,
                                   outage=self.outage)
        except Exception as exc:  # noqa: BLE001
            raise translate(exc, what=what, handle=handle, target=self.endpoint) from None

    def read(self, fn: Callable[[], T], *, what: str, handle: str) -> Callable[[], T]:
        """``fn`` (one official-client call) as a function that goes through :meth:`call`: what :meth:`settle`
        takes."""
        return lambda: self.call(fn, what=what, handle=handle)

    def settle(self, fn: Callable[[], T], *, what: str, handle: str, ready: Callable[[T], bool],
               waiting: str = "not visible yet") -> T:
        """Read back what this command just created or changed until ``ready(value)``: Kaggle answers 404 for a few
        seconds after a create and lists a new version's files only once it has unpacked them. ``fn`` makes its
        requests through :meth:`call` (:meth:`read` for one client call); a 404 (NotFoundError) or a value not
        ``ready`` is looked at again, at WaitPolicy's growing intervals,
        for at most ``WaitPolicy.SETTLE`` seconds; then the 404, or a HubError, is raised: never a guess. Only for
        a resource this command created or saw: a 404 of anything else is real and is not waited on."""
        missing = object()
        last: list = []

        def look():
            try:
                return fn()
            except NotFoundError as exc:
                last[:] = [exc]
                return missing

        def seen(value, elapsed: float) -> None:
            if (value is missing or not ready(value)) and not said:
                said.append(True)
                self.log(f"{what}: {handle} is {waiting} (Kaggle shows new things after a few seconds); waiting up "
                         f"to {WaitPolicy.SETTLE:.0f}s")

        def give_up(value, elapsed: float) -> BaseException:
            if value is missing:
                return last[0]
            return HubError(f"{what}: {handle} is still {waiting} after {elapsed:.0f}s", context=handle,
                            hint="run the same command again: kagflow looks before it uploads, so it never makes a "
                                 "duplicate", handle=handle, target=self.endpoint.describe())

        said: list = []
        return poll_until(look, lambda v: v is not missing and ready(v), timeout=WaitPolicy.SETTLE, on_poll=seen,
                          on_timeout=give_up, cap=self.endpoint.poll_cap)

    def exists(self, fn: Callable[[], object], *, what: str, handle: str) -> bool:
        """True if ``fn`` finds the resource, False on 404 (retrying transient errors)."""
        try:
            self.call(fn, what=what, handle=handle)
            return True
        except NotFoundError:
            return False


def epoch_seconds(value) -> Optional[float]:
    """A datetime from the client (naive ones are UTC, as kagglesdk returns them) as epoch seconds."""
    if value is None:
        return None
    from datetime import timezone

    return (value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value).timestamp()


# --------------------------------------------------------------------------- content digests

def file_sha256(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def content_files(folder: Path, skip: Iterable[str] = ()) -> list[Path]:
    """Every file of ``folder`` that the official client uploads with ``dir_mode`` = kaggle.UPLOAD_DIR_MODE: the
    top-level files (less the metadata files ``skip`` and kagflow's content marker) and those of each sub-folder
    (sent as one archive that Kaggle unpacks back into the folder), less the client's ignore patterns (``.git/``,
    ``.cache/``, ``.huggingface/``) as it applies them: at the top level and within each sub-folder."""
    from kagflow.hub.client import kaggle_api_extended as client

    folder, skip = Path(folder), set(skip)
    patterns = client.DEFAULT_IGNORE_PATTERNS

    def ignored(rel: Path, is_dir: bool) -> bool:
        inner = Path(*rel.parts[1:]) if len(rel.parts) > 1 else None  # within its top-level sub-folder
        return client.should_ignore(str(rel), is_dir, patterns) or (
            inner is not None and client.should_ignore(str(inner), is_dir, patterns))

    out = []
    for root, dirs, files in os.walk(folder):
        base = Path(root).relative_to(folder)
        dirs[:] = [d for d in dirs if not ignored(base / d, True)]
        for name in files:
            rel, path = base / name, Path(root) / name
            if not path.is_file() or ignored(rel, False):
                continue
            if not base.parts and (name in skip or name.startswith(CONTENT_PREFIX)):
                continue
            out.append(path)
    return sorted(out)


def log_subfolders(gw: "Gateway", manifest: dict) -> None:
    """Say which sub-folders go up, each as one archive Kaggle unpacks back into the folder (never dropped)."""
    folders = sorted({Path(rel).parts[0] for rel in manifest if len(Path(rel).parts) > 1})
    if folders:
        files = sum(1 for rel in manifest if len(Path(rel).parts) > 1)
        gw.log(f"{len(folders)} sub-folder(s) ({', '.join(folders[:5])}{', ...' if len(folders) > 5 else ''}; "
               f"{files} files) go up as uncompressed archives that Kaggle unpacks back into folders")


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
            if len(Path(rel).parts) > 1:  # archived by the client: a symbolic link would go up as a link
                shutil.copyfile(src, dst)
            else:
                os.symlink(src.resolve(), dst)
    (staging / content_marker_name(digest)).write_text(json.dumps(
        {"digest": digest, "files": manifest}, indent=1, sort_keys=True), encoding="utf-8")
