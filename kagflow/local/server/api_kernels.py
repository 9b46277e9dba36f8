"""kernels.KernelsApiService: push (SaveKernel), status, output + log, pull (GetKernel), list, files, cancel,
delete, accelerator quota."""

from __future__ import annotations

import json
import shutil
from datetime import timedelta

from kagglesdk.kernels.types.kernels_api_service import (
    ApiAcceleratorQuota,
    ApiCancelKernelSessionResponse,
    ApiDeleteKernelResponse,
    ApiGetAcceleratorQuotaStatisticsResponse,
    ApiGetKernelResponse,
    ApiGetKernelSessionStatusResponse,
    ApiKernelBlob,
    ApiKernelMetadata,
    ApiKernelSessionOutputFile,
    ApiListKernelFilesItem,
    ApiListKernelFilesResponse,
    ApiListKernelSessionOutputResponse,
    ApiListKernelsResponse,
    ApiSaveKernelResponse,
)
from kagglesdk.kernels.types.kernels_enums import (
    KernelExecutionType,
    KernelsListSortType,
    KernelsListViewType,
    KernelWorkerStatus,
)

from kagflow.errors import NamingError
from kagflow.local.run import mounts
from kagflow.local.server import access, quota, transfer
from kagflow.local.server.access import Grant
from kagflow.local.server.api import Ctx, Redirect, in_body, now, page, refusal, route, shown, utc
from kagflow.local.server.archives import Pack, bundle, file_members, forget
from kagflow.local.server.jobs import sandbox_dir
from kagflow.local.server.names import inside, parse_count
from kagflow.local.server.protocol import ApiError
from kagflow.rules import slugs

LANGUAGES = ("python",)
KERNEL_TYPES = ("notebook", "script")


def find_kernel(ctx: Ctx, owner: str, slug: str):
    row = ctx.store.one("SELECT * FROM kernels WHERE owner=? AND slug=?", owner or "", slug or "")
    if not shown(ctx, row):
        raise ApiError(404, f"Kernel {owner}/{slug} not found")
    return row


def find_version(ctx: Ctx, kernel, label: str = ""):
    """``label`` is Kaggle's ``versionLabel`` (``v3``, or ``3``); empty means the latest version."""
    if label:
        number = parse_count(label.strip().removeprefix("v"), what="version label (use v<N>)")
        row = ctx.store.one("SELECT * FROM kernel_versions WHERE kernel_id=? AND number=?", kernel["id"], number)
    else:
        row = ctx.store.one("SELECT * FROM kernel_versions WHERE kernel_id=? ORDER BY number DESC LIMIT 1",
                            kernel["id"])
    if row is None:
        raise ApiError(404, f"Kernel {kernel['owner']}/{kernel['slug']} has no version {label}".strip())
    return row


def _sources(ctx: Ctx, req, owner: str) -> tuple[dict, dict]:
    """(sources saved with the version, invalid ones by kind). As on Kaggle, a source that names nothing
    or that ``owner`` may not see is not added to the kernel and is reported back; the version is saved."""
    given = {"dataset": req.dataset_data_sources, "competition": req.competition_data_sources,
             "kernel": req.kernel_data_sources, "model": req.model_data_sources}
    valid, invalid = access.check_sources(ctx.store, owner, given)
    return {f"{kind}_sources": refs for kind, refs in valid.items()}, invalid


@route("kernels.KernelsApiService/SaveKernel")
def save_kernel(ctx: Ctx, req) -> ApiSaveKernelResponse:
    user = ctx.require_user()
    if req.id:
        row = ctx.store.one("SELECT * FROM kernels WHERE id=?", req.id)
        if row is None:
            raise ApiError(404, f"Kernel {req.id} not found")
        owner, slug = row["owner"], row["slug"]
    else:
        parts = (req.slug or "").split("/")
        if len(parts) > 2:
            raise ApiError(400, f"Invalid kernel slug {req.slug!r}: use owner/kernel-slug")
        owner, slug = parts if len(parts) == 2 else (user, parts[0])
    ctx.require_owner(owner, "kernels.create")
    try:
        slugs.check_slug(slug, what="kernel slug", min_len=slugs.KERNEL_SLUG_MIN, max_len=slugs.KERNEL_TITLE_MAX)
    except NamingError as exc:
        raise ApiError(400, str(exc)) from None
    language, kernel_type = (req.language or "python").lower(), (req.kernel_type or "notebook").lower()
    if language not in LANGUAGES:
        raise ApiError(400, f"The local Kaggle runs python kernels only, not {language!r}")
    if kernel_type not in KERNEL_TYPES:
        raise ApiError(400, f"Invalid kernel type {kernel_type!r}: use notebook or script")
    if not req.text:
        raise ApiError(400, "The kernel has no source text")
    if kernel_type == "notebook":
        try:
            if not isinstance(json.loads(req.text).get("cells"), list):
                raise ValueError
        except (ValueError, AttributeError):
            raise ApiError(400, "The notebook source is not a valid .ipynb (JSON with a cells list)") from None
    sources, invalid = _sources(ctx, req, owner)
    settings = {**sources,
                "enable_internet": True if req.enable_internet is None else bool(req.enable_internet),
                "enable_gpu": bool(req.enable_gpu), "enable_tpu": bool(req.enable_tpu),
                "machine_shape": req.machine_shape or "", "docker_image": req.docker_image or "",
                "docker_image_pinning_type": req.docker_image_pinning_type or "",
                "category_ids": list(req.category_ids or []),
                "timeout": req.session_timeout_seconds or ctx.settings.kernel_timeout_s,
                "title": req.new_title or ""}
    quick = req.kernel_execution_type == KernelExecutionType.QUICK_SAVE
    kind = quota.accelerator(settings)
    if kind and not quick:
        allowed = ctx.settings.gpu_quota_s if kind == "gpu" else ctx.settings.tpu_quota_s
        if quota.used_seconds(ctx.store, owner, kind) >= allowed:
            return refusal(ApiSaveKernelResponse, ApiError(  # in the body: "Kernel push error: <error>"
                403, f"You have used your weekly {kind.upper()} quota of {allowed / 3600:g} hours; it renews at "
                     f"{utc(quota.week_start(now()) + quota.WEEK_S)} UTC (see kaggle quota), or push without an "
                     "accelerator"))
    with ctx.store.tx() as db:
        kernel = db.execute("SELECT * FROM kernels WHERE owner=? AND slug=?", (owner, slug)).fetchone()
        if kernel is None:
            kernel_id = db.execute("INSERT INTO kernels VALUES (NULL, ?, ?, ?, ?, ?, ?, ?)",
                                   (owner, slug, req.new_title or slug, language, kernel_type,
                                    0 if req.is_private is False else 1, now())).lastrowid
        else:
            kernel_id = kernel["id"]
            db.execute("UPDATE kernels SET title=COALESCE(NULLIF(?, ''), title), language=?, kernel_type=?, "
                       "is_private=? WHERE id=?", (req.new_title or "", language, kernel_type,
                                                   0 if req.is_private is False else 1, kernel_id))
        last = db.execute("SELECT MAX(number) FROM kernel_versions WHERE kernel_id=?", (kernel_id,)).fetchone()[0]
        number = (last or 0) + 1
        version_id = db.execute("INSERT INTO kernel_versions VALUES (NULL, ?, ?, ?, ?, ?, '', ?, NULL, NULL)",
                                (kernel_id, number, req.text, json.dumps(settings),
                                 "COMPLETE" if quick else "QUEUED", now())).lastrowid
    if not quick:
        ctx.jobs.submit_run(version_id)
    resp = ApiSaveKernelResponse()
    resp.ref = f"{owner}/{slug}"
    resp.url = f"{ctx.base_url}/code/{owner}/{slug}"
    resp.version_number = number
    resp.kernel_id = kernel_id
    resp.invalid_dataset_sources = invalid["dataset"]
    resp.invalid_competition_sources = invalid["competition"]
    resp.invalid_kernel_sources = invalid["kernel"]
    resp.invalid_model_sources = invalid["model"]
    return resp


@route("kernels.KernelsApiService/GetKernelSessionStatus")
def get_kernel_session_status(ctx: Ctx, req) -> ApiGetKernelSessionStatusResponse:
    version = find_version(ctx, find_kernel(ctx, req.user_name, req.kernel_slug), req.version_label)
    resp = ApiGetKernelSessionStatusResponse()
    resp.status = KernelWorkerStatus[version["status"]]
    if version["failure"]:
        resp.failure_message = version["failure"]
    return resp


def _output(ctx: Ctx, kernel, version):
    sandbox = sandbox_dir(ctx.store, kernel["owner"], kernel["slug"], version["number"])
    return sandbox, mounts.output_files(sandbox / "working")


@route("kernels.KernelsApiService/ListKernelSessionOutput")
def list_kernel_session_output(ctx: Ctx, req) -> ApiListKernelSessionOutputResponse:
    kernel = find_kernel(ctx, req.user_name, req.kernel_slug)
    version = find_version(ctx, kernel, req.version_label)
    sandbox, files = _output(ctx, kernel, version)
    grant = _grant(ctx, version)
    chunk, token = page(files, req)
    resp = ApiListKernelSessionOutputResponse()
    resp.files = []
    for name, path in chunk:
        item = ApiKernelSessionOutputFile()
        item.file_name = name
        item.url = transfer.signed_url(ctx.store, ctx.base_url, path, name, grant)
        resp.files.append(item)
    log = sandbox / "log.json"
    if log.is_file():
        resp.log = log.read_text(encoding="utf-8", errors="replace")
    resp.next_page_token = token
    return resp


def _grant(ctx: Ctx, version) -> Grant:
    return Grant("kernel_version", version["id"], ctx.user or "")


def _output_zip(ctx: Ctx, kernel, version) -> Redirect:
    _, files = _output(ctx, kernel, version)
    archive = bundle(ctx.store, Pack("kernels", (kernel["owner"], kernel["slug"]), str(version["number"]),
                                     file_members(files)))
    return Redirect(transfer.signed_url(ctx.store, ctx.base_url, archive, "output.zip", _grant(ctx, version)))


def _finished(kernel, version) -> None:
    if version["status"] not in ("COMPLETE", "ERROR", "CANCEL_ACKNOWLEDGED"):
        raise ApiError(409, f"Kernel {kernel['owner']}/{kernel['slug']} version {version['number']} is still running")


@route("kernels.KernelsApiService/DownloadKernelOutputZip")
def download_kernel_output_zip(ctx: Ctx, req) -> Redirect:
    row = ctx.store.one("SELECT k.owner, k.slug, v.number FROM kernel_versions v JOIN kernels k ON "
                        "k.id = v.kernel_id WHERE v.id=?", req.kernel_session_id or 0)
    if row is None:
        raise ApiError(404, f"Kernel session {req.kernel_session_id} not found")
    kernel = find_kernel(ctx, row["owner"], row["slug"])
    version = find_version(ctx, kernel, f"v{row['number']}")
    _finished(kernel, version)
    return _output_zip(ctx, kernel, version)


@route("kernels.KernelsApiService/DownloadKernelOutput")
def download_kernel_output(ctx: Ctx, req) -> Redirect:
    """One output file (``filePath``) or the whole output as a zip (kagglehub's notebook_output_download)."""
    kernel = find_kernel(ctx, req.owner_slug, req.kernel_slug)
    version = find_version(ctx, kernel, f"v{req.version_number}" if req.version_number else "")
    _finished(kernel, version)
    _, files = _output(ctx, kernel, version)
    if req.file_path:
        match = [p for n, p in files if n == req.file_path]
        if not match:
            raise ApiError(404, f"Output file {req.file_path!r} not found")
        return Redirect(transfer.signed_url(ctx.store, ctx.base_url, match[0], req.file_path, _grant(ctx, version)))
    return _output_zip(ctx, kernel, version)


def describe(ctx: Ctx, kernel, version) -> ApiKernelMetadata:
    settings = json.loads(version["settings"])
    item = ApiKernelMetadata()
    item.id = kernel["id"]
    item.ref = f"{kernel['owner']}/{kernel['slug']}"
    item.title = kernel["title"]
    item.author = kernel["owner"]
    item.slug = kernel["slug"]
    item.language = kernel["language"]
    item.kernel_type = kernel["kernel_type"]
    item.is_private = bool(kernel["is_private"])
    item.enable_gpu = settings.get("enable_gpu", False)
    item.enable_tpu = settings.get("enable_tpu", False)
    item.enable_internet = settings.get("enable_internet", True)
    item.category_ids = settings.get("category_ids", [])
    item.dataset_data_sources = settings.get("dataset_sources", [])
    item.kernel_data_sources = settings.get("kernel_sources", [])
    item.competition_data_sources = settings.get("competition_sources", [])
    item.model_data_sources = settings.get("model_sources", [])
    item.current_version_number = version["number"]
    item.docker_image = settings.get("docker_image", "")
    item.machine_shape = settings.get("machine_shape", "")
    item.last_run_time = utc(version["started"] or version["created"])
    return item


@route("kernels.KernelsApiService/GetKernel")
def get_kernel(ctx: Ctx, req) -> ApiGetKernelResponse:
    kernel = find_kernel(ctx, req.user_name, req.kernel_slug)
    version = find_version(ctx, kernel, req.version_label)
    resp = ApiGetKernelResponse()
    resp.metadata = describe(ctx, kernel, version)
    resp.blob = ApiKernelBlob()
    resp.blob.source = version["source"]
    resp.blob.language = kernel["language"]
    resp.blob.kernel_type = kernel["kernel_type"]
    resp.blob.slug = kernel["slug"]
    return resp


def _listed(ctx: Ctx, req, kernel) -> bool:
    """ListKernels filters: ``-m`` (group PROFILE: the caller's, or ``--user``'s), ``--user``, ``--competition``,
    ``--dataset`` (a source of the latest version), ``--parent`` (kernels forked from it: none, the API cannot
    fork), ``--kernel-type``, ``--language``, ``--output-type`` (data: the latest run wrote files), ``--search``."""
    if not shown(ctx, kernel):
        return False
    owner = (req.user or ctx.require_user()) if req.group == KernelsListViewType.PROFILE else req.user
    if owner and kernel["owner"] != owner:
        return False
    if req.search and req.search.lower() not in (kernel["slug"] + " " + kernel["title"]).lower():
        return False
    if req.parent_kernel:
        return False
    if req.kernel_type not in (None, "", "all") and kernel["kernel_type"] != req.kernel_type:
        return False
    if req.language not in (None, "", "all") and kernel["language"] != req.language:
        return False
    if req.competition or req.dataset or req.output_type not in (None, "", "all"):
        version = find_version(ctx, kernel)
        settings = json.loads(version["settings"])
        if req.competition and req.competition not in settings.get("competition_sources", []):
            return False
        if req.dataset and req.dataset not in settings.get("dataset_sources", []):
            return False
        if req.output_type == "data" and not _output(ctx, kernel, version)[1]:
            return False
        if req.output_type == "visualization":
            return False  # the local Kaggle does not tell plots apart
    return True


def _last_run(ctx: Ctx, kernel) -> float:
    version = find_version(ctx, kernel)
    return version["started"] or version["created"]


# --sort-by: the orders the local Kaggle can tell (newest kernel, latest run); hotness, votes, views, comments,
# relevance and scores keep the newest-first order.
_SORTS = {KernelsListSortType.DATE_CREATED: lambda ctx, k: -k["created"],
          KernelsListSortType.DATE_RUN: lambda ctx, k: -_last_run(ctx, k)}


@route("kernels.KernelsApiService/ListKernels")
def list_kernels(ctx: Ctx, req) -> ApiListKernelsResponse:
    rows = [k for k in ctx.store.all("SELECT * FROM kernels ORDER BY created DESC, id DESC") if _listed(ctx, req, k)]
    if req.sort_by in _SORTS:
        rows.sort(key=lambda k: _SORTS[req.sort_by](ctx, k))
    chunk, token = page(rows, req)
    resp = ApiListKernelsResponse()
    resp.kernels = [describe(ctx, k, find_version(ctx, k)) for k in chunk]
    resp.next_page_token = token
    return resp


@route("kernels.KernelsApiService/CancelKernelSession")
def cancel_kernel_session(ctx: Ctx, req) -> ApiCancelKernelSessionResponse:
    row = ctx.store.one("SELECT v.id, k.owner FROM kernel_versions v JOIN kernels k ON k.id = v.kernel_id "
                        "WHERE v.id=?", req.kernel_session_id or 0)
    if row is None:
        raise ApiError(404, f"Kernel session {req.kernel_session_id} not found")
    ctx.require_owner(row["owner"], "kernels.update")
    resp = ApiCancelKernelSessionResponse()
    if not ctx.jobs.cancel(row["id"]):
        resp.error_message = "The session has already finished"
    return resp


@route("kernels.KernelsApiService/ListKernelFiles")
def list_kernel_files(ctx: Ctx, req) -> ApiListKernelFilesResponse:
    """The files of a kernel version: its one source file (``notebook.ipynb`` or ``script.py``)."""
    kernel = find_kernel(ctx, req.user_name, req.kernel_slug)
    version = find_version(ctx, kernel, req.version_label)
    item = ApiListKernelFilesItem()
    item.name = f"{kernel['slug']}.ipynb" if kernel["kernel_type"] == "notebook" else f"{kernel['slug']}.py"
    item.size = len(version["source"].encode("utf-8"))
    item.creation_date = utc(version["created"]).isoformat() + "Z"
    chunk, token = page([item], req)
    resp = ApiListKernelFilesResponse()
    resp.files = chunk
    resp.next_page_token = token
    return resp


@route("kernels.KernelsApiService/DeleteKernel")
@in_body(ApiDeleteKernelResponse)
def delete_kernel(ctx: Ctx, req) -> ApiDeleteKernelResponse:
    """Delete a kernel, its versions and their runs (refused while a version is queued or running)."""
    kernel = find_kernel(ctx, req.user_name, req.kernel_slug)
    ctx.require_owner(kernel["owner"], "kernels.delete")
    busy = ctx.store.one("SELECT number FROM kernel_versions WHERE kernel_id=? AND status IN ('QUEUED', 'RUNNING', "
                         "'CANCEL_REQUESTED')", kernel["id"])
    if busy is not None:
        raise ApiError(409, f"Kernel {kernel['owner']}/{kernel['slug']} version {busy['number']} is still running; "
                            "cancel it first")
    with ctx.store.tx() as db:
        db.execute("DELETE FROM kernel_versions WHERE kernel_id=?", (kernel["id"],))
        db.execute("DELETE FROM kernels WHERE id=?", (kernel["id"],))
    runs = inside(ctx.store.root / "runs", kernel["owner"], kernel["slug"])
    shutil.rmtree(runs, ignore_errors=True)
    forget(ctx.store, "kernels", kernel["owner"], kernel["slug"])
    return ApiDeleteKernelResponse()


def _quota(ctx: Ctx, user: str, kind: str, allowed: float) -> ApiAcceleratorQuota:
    item = ApiAcceleratorQuota()
    used = quota.used_seconds(ctx.store, user, kind)
    item.time_used = timedelta(seconds=round(used))
    item.total_time_allowed = timedelta(seconds=allowed)
    item.time_reserved = timedelta(0)
    item.minimum_time_allowed = timedelta(seconds=allowed)
    item.has_ever_run = used > 0
    return item


@route("kernels.KernelsApiService/GetAcceleratorQuotaStatistics")
def get_accelerator_quota_statistics(ctx: Ctx, req) -> ApiGetAcceleratorQuotaStatisticsResponse:
    """``kaggle quota``: this week's GPU/TPU time used by the caller's runs, and when it renews."""
    user = ctx.require_user()
    resp = ApiGetAcceleratorQuotaStatisticsResponse()
    resp.gpu_quota = _quota(ctx, user, "gpu", ctx.settings.gpu_quota_s)
    resp.tpu_quota = _quota(ctx, user, "tpu", ctx.settings.tpu_quota_s)
    resp.quota_refresh_time = utc(quota.week_start(now()) + quota.WEEK_S)
    return resp
