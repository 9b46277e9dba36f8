"""The route registry and what every handler receives.

A handler is ``def handler(ctx: Ctx, request) -> KaggleObject | Redirect`` registered with
``@route("datasets.DatasetApiService/CreateDataset")``; the request arrives already parsed and
checked against the kagglesdk request type (see :mod:`kagflow.local.server.protocol`).
"""

from __future__ import annotations

import base64
import functools
import logging
import secrets
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Callable, Dict, Optional

from kagflow.local.run.limits import Limits
from kagflow.local.server import access, transfer
from kagflow.local.server.access import Grant
from kagflow.local.server.archives import Pack, blob_members, bundle
from kagflow.local.server.names import check_name, check_relpath, parse_count
from kagflow.local.server.protocol import ApiError
from kagflow.local.server.store import Store
from kagflow.local.server.unpack import MAX_BYTES, UnpackLimits, unpack_uploads

HANDLERS: Dict[str, Callable] = {}
log = logging.getLogger("kagflow.local")


def route(name: str):
    """Register the decorated function as the handler of ``Service/Method``."""
    def register(fn):
        HANDLERS[name] = fn
        return fn
    return register


def in_body(response_type, codes=(409,)):
    """Answer refusals with ``codes`` as Kaggle's create/update/delete handlers do: HTTP 200 with the message in
    the response's ``error`` (and ``errorCode`` where the type has one, e.g. ApiCreateModelResponse), which the
    official client exposes as ``response.error`` and kagglehub's ``handle_mutate_call`` raises with its code."""
    def wrap(fn):
        @functools.wraps(fn)
        def handler(ctx, req):
            try:
                return fn(ctx, req)
            except ApiError as err:
                if err.code not in codes:
                    raise
                return refusal(response_type, err)
        return handler
    return wrap


def refusal(response_type, err: ApiError):
    resp = response_type()
    field = "error" if hasattr(response_type, "error") else "error_message"
    setattr(resp, field, err.message)
    if hasattr(response_type, "error_code"):
        resp.error_code = err.code
    return resp


@dataclass
class Settings:
    """Knobs of a local server (tests shorten or lengthen them)."""
    dataset_processing_s: float = 0.0   # a new dataset version is "processing" this long (files listed after it)
    model_processing_s: float = 0.0     # same for model instance versions
    not_found_s: float = 0.0            # a new dataset, model, instance or kernel answers 404 this long
    rate_limit_every: int = 0           # every Nth API call answers 429 RESOURCE_EXHAUSTED (0: never)
    rate_limit_retry_after_s: int = 1   # its Retry-After
    kernel_timeout_s: float = 9 * 3600  # default run time limit (Kaggle: 9 h GPU / 12 h CPU)
    kernel_limits: Limits = field(default_factory=Limits)  # per run: session ceiling, memory, processes, disk
    kernel_workers: int = 4             # kernel runs (and scoring re-runs) at a time
    kernel_sessions_per_user: int = 2   # of which one user's (Kaggle: 2 GPU sessions per user at once)
    max_json_bytes: int = 8 << 20       # largest API request body
    max_blob_bytes: int = MAX_BYTES     # largest single upload
    unpack: UnpackLimits = field(default_factory=UnpackLimits)  # how far an uploaded .zip/.tar may unpack
    daily_submissions: int = 5
    gpu_quota_s: float = 30 * 3600      # weekly accelerator quota per user (kaggle quota), GPU and TPU alike
    tpu_quota_s: float = 20 * 3600


@dataclass
class Redirect:
    """Answer a download call with ``302 Location: url`` (Kaggle redirects to signed storage URLs)."""
    url: str


@dataclass
class Ctx:
    store: Store
    base_url: str
    settings: Settings
    user: Optional[str]
    jobs: object = None  # kagflow.local.server.jobs.Jobs
    extras: dict = field(default_factory=dict)

    def require_user(self) -> str:
        if not self.user:
            raise ApiError(401, "Unauthenticated: send HTTP Basic username:key or a Bearer token")
        return self.user

    def require_owner(self, owner: str, what: str) -> str:
        user = self.require_user()
        if owner != user:
            raise ApiError(403, f"Permission '{what}' was denied: {user!r} cannot write under {owner!r}")
        return user


def shown(ctx: Ctx, row) -> bool:
    """``row`` (a dataset, model, model instance or kernel) exists, the caller may see it, and it is past the
    ``not_found_s`` after its create during which Kaggle answers 404 (see :mod:`kagflow.local.server.consistency`).
    A model instance row carries its model's ``owner`` and ``is_private`` where the caller joins them in."""
    return access.visible(row, ctx.user) and not is_new(ctx, row)


def is_new(ctx: Ctx, row) -> bool:
    """Created less than ``not_found_s`` ago: Kaggle does not show it yet."""
    return row["created"] + ctx.settings.not_found_s > now()


def ready_files(ctx: Ctx, kind: str, version) -> list:
    """The files of a dataset or model version (``kind`` its file-set kind), none while it is still processing: Kaggle
    lists (and serves) a new version's files only once it has unpacked its archives."""
    return ctx.store.files_of(kind, version["id"]) if version["ready_at"] <= now() else []


def processing(what: str) -> ApiError:
    """The answer to a download of a version whose files are not unpacked yet."""
    return ApiError(404, f"{what} is still being processed: its files are not available yet; try again in a few "
                         "seconds")


def download_version(ctx: Ctx, kind: str, version, *, what: str, path: str, where: str,
                     pack: Callable[[tuple], Pack], archive_name: str) -> Redirect:
    """The download of a dataset or model version (``kind`` its file-set kind, ``what`` its name for the processing
    answer): one file when ``path`` is given (a checked relative path; 404 naming ``where`` when the version has no
    such file), else every file bundled into ``pack(members)``, served as ``archive_name``; both by a signed URL
    granted to the caller for this version only."""
    files = ready_files(ctx, kind, version)
    if not files:
        raise processing(what)
    grant = Grant(kind, version["id"], ctx.user or "")
    if path:
        name = check_relpath(path)
        match = [f for f in files if f["name"] == name]
        if not match:
            raise ApiError(404, f"File {name!r} not found in {where}")
        return Redirect(transfer.signed_url(ctx.store, ctx.base_url, ctx.store.blob_path(match[0]["sha256"]), name,
                                            grant))
    archive = bundle(ctx.store, pack(blob_members(ctx.store, files)))
    return Redirect(transfer.signed_url(ctx.store, ctx.base_url, archive, archive_name, grant))


def utc(ts: Optional[float]) -> Optional[datetime]:
    """A naive UTC datetime, the form kagglesdk serialises as ``...Z``."""
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, tz=timezone.utc).replace(tzinfo=None)


def new_token() -> str:
    return secrets.token_urlsafe(24)


PAGE_SIZE = 20  # the official client's default page size
_TOKEN_PREFIX = "kagflow-offset:"


def page(items: list, req) -> tuple[list, str]:
    """One page of ``items`` for a list request; return ``(page, next_page_token)``.

    Where it starts: ``req.page_token`` (an opaque token this server issued; one it did not issue, e.g. the
    suites' ``--page-token=abcd``, reads as the first page: Kaggle's tokens are opaque and it answers such a
    request), else the 1-based ``req.page`` of the older calls (ListCompetitions, ListDatasets, ListKernels), else
    the start. ``req.page_size`` defaults to :data:`PAGE_SIZE`."""
    size = getattr(req, "page_size", None) or PAGE_SIZE
    token = getattr(req, "page_token", None) or ""
    number = getattr(req, "page", None) if hasattr(type(req), "page") else None
    start = _token_offset(token) if token else ((number - 1) * size if number and number > 1 else 0)
    chunk = items[start:start + size]
    return chunk, (page_token(start + size) if start + size < len(items) else "")


def page_token(offset: int) -> str:
    """The opaque token of the page that starts at ``offset``."""
    return base64.urlsafe_b64encode(f"{_TOKEN_PREFIX}{offset}".encode()).decode().rstrip("=")


def _token_offset(token: str) -> int:
    try:
        text = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode("ascii")
        if text.startswith(_TOKEN_PREFIX):
            return parse_count(text[len(_TOKEN_PREFIX):], what="page token")
    except (ValueError, ApiError):
        pass
    log.info("page token %r was not issued here: answering the first page", token[:40])
    return 0


def _with_folders(new_files, directories, prefix: str = ""):
    """``(folder prefix, ApiDatasetNewFile)`` for the top-level files and those of ``ApiUploadDirectoryInfo`` trees
    (kagglehub uploads a folder's sub-folders that way)."""
    for f in new_files or []:
        yield prefix, f
    for d in directories or []:
        if d is None:
            continue
        folder = prefix + check_name(d.name, what="folder name") + "/"
        yield from _with_folders(d.files, d.directories, folder)


def resolve_uploads(ctx: Ctx, new_files, directories=None) -> list[tuple[str, str, int, str]]:
    """``ApiDatasetNewFile`` tokens → ``[(name, sha256, size, description)]``; each must be a finished upload.
    Files of ``directories`` are named ``folder/.../file``; uploaded ``.zip``/``.tar`` files are unpacked into
    folders of their name, as Kaggle does."""
    user = ctx.require_user()
    out, seen = [], set()
    for prefix, f in _with_folders(new_files, directories):
        if f is None or not f.token:
            raise ApiError(400, "Each file needs the token StartBlobUpload returned")
        row = ctx.store.one("SELECT * FROM uploads WHERE token=?", f.token)
        if row is None or row["owner"] != user:
            raise ApiError(400, f"Unknown upload token {f.token[:8]}...")
        if row["sha256"] is None:
            raise ApiError(400, f"Upload of {row['name']!r} is not complete")
        name = prefix + check_name(row["name"])
        blob = ctx.store.one("SELECT size FROM blobs WHERE sha256=?", row["sha256"])
        out.append((name, row["sha256"], blob["size"], f.description or ""))
    out = unpack_uploads(ctx.store, out, ctx.settings.unpack)  # sub.zip / sub.tar -> sub/...
    for name, *_ in out:
        check_relpath(name)  # folders and name together, unpacked members included
        if name in seen:
            raise ApiError(400, f"Duplicate file name {name!r}")
        seen.add(name)
    return out


def add_version(db, kind: str, parent_id: int, notes: str, files, *, processing_s: float, busy: str) -> tuple[int, int]:
    """Insert version N+1 of a dataset (``kind`` "dataset_version") or model instance ("model_version") with its
    files, inside the caller's transaction ``db``; return ``(version id, number)``. While the previous version is
    still processing, 403 ``busy`` (as Kaggle)."""
    table, parent = {"dataset_version": ("dataset_versions", "dataset_id"),
                     "model_version": ("model_versions", "instance_id")}[kind]
    last = db.execute(f"SELECT number, ready_at FROM {table} WHERE {parent}=? ORDER BY number DESC LIMIT 1",
                      (parent_id,)).fetchone()
    if last is not None and last["ready_at"] > now():
        raise ApiError(403, busy)
    number = (last["number"] if last else 0) + 1
    version_id = db.execute(f"INSERT INTO {table} VALUES (NULL, ?, ?, ?, ?, ?)",
                            (parent_id, number, notes or "", now() + processing_s, now())).lastrowid
    db.executemany("INSERT INTO files VALUES (?, ?, ?, ?, ?, ?, ?)",
                   [(kind, version_id, n, s, z, d, now()) for n, s, z, d in files])
    return version_id, number


def now() -> float:
    return time.time()
