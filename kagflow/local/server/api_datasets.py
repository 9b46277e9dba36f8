"""datasets.DatasetApiService: create, version, status, get, list, list files, download, metadata, delete."""

from __future__ import annotations

from kagglesdk.datasets.types.dataset_api_service import (
    ApiCreateDatasetResponse,
    ApiDataset,
    ApiDatasetFile,
    ApiDatasetVersion,
    ApiDeleteDatasetResponse,
    ApiGetDatasetMetadataResponse,
    ApiGetDatasetStatusResponse,
    ApiListDatasetFilesResponse,
    ApiListDatasetsResponse,
    ApiUpdateDatasetMetadataResponse,
)
from kagglesdk.datasets.types.dataset_enums import DatabundleVersionStatus
from kagglesdk.datasets.types.dataset_types import DatasetInfo, SettingsLicense

from kagflow.errors import NamingError
from kagflow.local.server import access, transfer
from kagflow.local.server.access import Grant
from kagflow.local.server.api import Ctx, Redirect, add_version, in_body, now, page, resolve_uploads, route, utc
from kagflow.local.server.archives import Pack, blob_members, bundle, forget
from kagflow.local.server.names import check_relpath
from kagflow.local.server.protocol import ApiError
from kagflow.rules import slugs

KIND = "dataset_version"


def find(ctx: Ctx, owner: str, slug: str):
    row = ctx.store.one("SELECT * FROM datasets WHERE owner=? AND slug=?", owner or "", slug or "")
    if not access.visible(row, ctx.user):
        raise ApiError(404, f"Dataset {owner}/{slug} not found")
    return row


def version_of(ctx: Ctx, dataset, number=None):
    if number:
        row = ctx.store.one("SELECT * FROM dataset_versions WHERE dataset_id=? AND number=?", dataset["id"], number)
    else:
        row = ctx.store.one("SELECT * FROM dataset_versions WHERE dataset_id=? ORDER BY number DESC LIMIT 1",
                            dataset["id"])
    if row is None:
        raise ApiError(404, f"Dataset {dataset['owner']}/{dataset['slug']} has no version {number or ''}".strip())
    return row


def _ok(ctx: Ctx, owner: str, slug: str) -> ApiCreateDatasetResponse:
    resp = ApiCreateDatasetResponse()
    resp.ref = f"{owner}/{slug}"
    resp.url = f"{ctx.base_url}/datasets/{owner}/{slug}"
    resp.status = "ok"
    return resp


def _add_version(ctx: Ctx, db, dataset_id: int, notes: str, files) -> int:
    """Insert the next version of the dataset with its files, inside the caller's transaction ``db``."""
    return add_version(db, KIND, dataset_id, notes, files, processing_s=ctx.settings.dataset_processing_s,
                       busy="The previous version of this dataset is still processing; retry when its status is "
                            "ready")[1]


@route("datasets.DatasetApiService/CreateDataset")
@in_body(ApiCreateDatasetResponse)
def create_dataset(ctx: Ctx, req) -> ApiCreateDatasetResponse:
    owner = req.owner_slug or ctx.require_user()
    ctx.require_owner(owner, "datasets.create")
    try:
        slugs.check_slug(req.slug or "", what="dataset slug", min_len=slugs.DATASET_SLUG_MIN,
                         max_len=slugs.DATASET_SLUG_MAX)
    except NamingError as exc:
        raise ApiError(400, str(exc)) from None
    title = req.title or ""
    if not (slugs.DATASET_TITLE_MIN <= len(title) <= slugs.DATASET_TITLE_MAX):
        raise ApiError(400, "The dataset title must be between 6 and 50 characters")
    files = resolve_uploads(ctx, req.files, req.directories)
    if not files:
        raise ApiError(400, "A dataset needs at least one file")
    with ctx.store.tx() as db:  # the dataset and its first version, or neither (a crash between leaves nothing)
        if db.execute("SELECT id FROM datasets WHERE owner=? AND slug=?", (owner, req.slug)).fetchone():
            raise ApiError(409, f"The requested slug {req.slug!r} is already in use by a dataset of {owner!r}")
        dataset_id = db.execute("INSERT INTO datasets VALUES (NULL, ?, ?, ?, ?, ?, ?, ?, ?)",
                                (owner, req.slug, title, req.subtitle or "", req.description or "",
                                 req.license_name or "unknown", 1 if req.is_private else 0, now())).lastrowid
        _add_version(ctx, db, dataset_id, "Initial release", files)
    return _ok(ctx, owner, req.slug)


def _create_version(ctx: Ctx, dataset, body) -> ApiCreateDatasetResponse:
    ctx.require_owner(dataset["owner"], "datasets.update")
    files = resolve_uploads(ctx, body.files if body else [], body.directories if body else [])
    if not files:
        raise ApiError(400, "A dataset version needs at least one file")
    with ctx.store.tx() as db:
        _add_version(ctx, db, dataset["id"], body.version_notes if body else "", files)
        if body and (body.subtitle or body.description):
            db.execute("UPDATE datasets SET subtitle=COALESCE(NULLIF(?, ''), subtitle), "
                       "description=COALESCE(NULLIF(?, ''), description) WHERE id=?",
                       (body.subtitle or "", body.description or "", dataset["id"]))
    return _ok(ctx, dataset["owner"], dataset["slug"])


@route("datasets.DatasetApiService/CreateDatasetVersion")
def create_dataset_version(ctx: Ctx, req) -> ApiCreateDatasetResponse:
    return _create_version(ctx, find(ctx, req.owner_slug, req.dataset_slug), req.body)


@route("datasets.DatasetApiService/CreateDatasetVersionById")
def create_dataset_version_by_id(ctx: Ctx, req) -> ApiCreateDatasetResponse:
    row = ctx.store.one("SELECT * FROM datasets WHERE id=?", req.id or 0)
    if row is None:
        raise ApiError(404, f"Dataset {req.id} not found")
    return _create_version(ctx, find(ctx, row["owner"], row["slug"]), req.body)


@route("datasets.DatasetApiService/GetDatasetStatus")
def get_dataset_status(ctx: Ctx, req) -> ApiGetDatasetStatusResponse:
    version = version_of(ctx, find(ctx, req.owner_slug, req.dataset_slug))
    resp = ApiGetDatasetStatusResponse()
    resp.status = (DatabundleVersionStatus.READY if version["ready_at"] <= now()
                   else DatabundleVersionStatus.BLOBS_RECEIVED)
    return resp


def _files(ctx: Ctx, dataset, version) -> list:
    out = []
    for f in ctx.store.files_of(KIND, version["id"]):
        item = ApiDatasetFile()
        item.ref = f"{dataset['owner']}/{dataset['slug']}/{f['name']}"
        item.dataset_ref = f"{dataset['owner']}/{dataset['slug']}"
        item.owner_ref = dataset["owner"]
        item.name = f["name"]
        item.description = f["description"] or ""
        item.total_bytes = f["size"]
        item.creation_date = utc(f["created"])
        out.append(item)
    return out


def describe(ctx: Ctx, dataset) -> ApiDataset:
    versions = ctx.store.all("SELECT * FROM dataset_versions WHERE dataset_id=? ORDER BY number", dataset["id"])
    latest = versions[-1]
    item = ApiDataset()
    item.id = dataset["id"]
    item.ref = f"{dataset['owner']}/{dataset['slug']}"
    item.title = dataset["title"]
    item.subtitle = dataset["subtitle"]
    item.description = dataset["description"]
    item.creator_name = item.owner_name = item.owner_ref = dataset["owner"]
    item.url = f"{ctx.base_url}/datasets/{dataset['owner']}/{dataset['slug']}"
    item.is_private = bool(dataset["is_private"])
    item.license_name = dataset["license_name"]
    item.current_version_number = latest["number"]
    item.last_updated = utc(latest["created"])
    item.total_bytes = sum(f["size"] for f in ctx.store.files_of(KIND, latest["id"]))
    item.files = _files(ctx, dataset, latest)
    item.versions = []
    for v in versions:
        dv = ApiDatasetVersion()
        dv.version_number = v["number"]
        dv.creation_date = utc(v["created"])
        dv.version_notes = v["notes"]
        dv.creator_name = dataset["owner"]
        item.versions.append(dv)
    return item


@route("datasets.DatasetApiService/GetDataset")
def get_dataset(ctx: Ctx, req) -> ApiDataset:
    return describe(ctx, find(ctx, req.owner_slug, req.dataset_slug))


@route("datasets.DatasetApiService/ListDatasets")
def list_datasets(ctx: Ctx, req) -> ApiListDatasetsResponse:
    rows = ctx.store.all("SELECT * FROM datasets ORDER BY created DESC")
    mine = req.group is not None and req.group.name.startswith("DATASET_SELECTION_GROUP_MY")
    owner = ctx.user if mine else req.user
    rows = [r for r in rows if access.visible(r, ctx.user)
            and (not owner or r["owner"] == owner)
            and (not req.search or req.search.lower() in (r["slug"] + " " + r["title"]).lower())]
    chunk, token = page(rows, req.page_size, req.page_token)
    resp = ApiListDatasetsResponse()
    resp.datasets = [describe(ctx, r) for r in chunk]
    resp.next_page_token = token
    return resp


@route("datasets.DatasetApiService/ListDatasetFiles")
def list_dataset_files(ctx: Ctx, req) -> ApiListDatasetFilesResponse:
    dataset = find(ctx, req.owner_slug, req.dataset_slug)
    files = _files(ctx, dataset, version_of(ctx, dataset, req.dataset_version_number))
    chunk, token = page(files, req.page_size, req.page_token)
    resp = ApiListDatasetFilesResponse()
    resp.dataset_files = chunk
    resp.next_page_token = token
    return resp


@route("datasets.DatasetApiService/DownloadDataset")
def download_dataset(ctx: Ctx, req) -> Redirect:
    dataset = find(ctx, req.owner_slug, req.dataset_slug)
    version = version_of(ctx, dataset, req.dataset_version_number)
    files = ctx.store.files_of(KIND, version["id"])
    grant = Grant(KIND, version["id"], ctx.user or "")
    if req.file_name:
        name = check_relpath(req.file_name)
        match = [f for f in files if f["name"] == name]
        if not match:
            raise ApiError(404, f"File {name!r} not found in {dataset['owner']}/{dataset['slug']} "
                                f"version {version['number']}")
        return Redirect(transfer.signed_url(ctx.store, ctx.base_url, ctx.store.blob_path(match[0]["sha256"]), name,
                                            grant))
    archive = bundle(ctx.store, Pack("datasets", (dataset["owner"], dataset["slug"]), str(version["number"]),
                                     blob_members(ctx.store, files)))
    return Redirect(transfer.signed_url(ctx.store, ctx.base_url, archive, f"{dataset['slug']}.zip", grant))


def dataset_info(ctx: Ctx, dataset) -> DatasetInfo:
    info = DatasetInfo()
    info.dataset_id = dataset["id"]
    info.dataset_slug = dataset["slug"]
    info.owner_user = dataset["owner"]
    info.title = dataset["title"]
    info.subtitle = dataset["subtitle"]
    info.description = dataset["description"]
    info.is_private = bool(dataset["is_private"])
    lic = SettingsLicense()
    lic.name = dataset["license_name"]
    info.licenses = [lic]
    info.keywords = []
    return info


@route("datasets.DatasetApiService/GetDatasetMetadata")
def get_dataset_metadata(ctx: Ctx, req) -> ApiGetDatasetMetadataResponse:
    """What ``kaggle datasets metadata`` writes, and what ``kaggle datasets download`` reads the license from."""
    resp = ApiGetDatasetMetadataResponse()
    resp.info = dataset_info(ctx, find(ctx, req.owner_slug, req.dataset_slug))
    return resp


@route("datasets.DatasetApiService/UpdateDatasetMetadata")
def update_dataset_metadata(ctx: Ctx, req) -> ApiUpdateDatasetMetadataResponse:
    """Title, subtitle, description, privacy and license (keywords, collaborators and images are not kept)."""
    dataset = find(ctx, req.owner_slug, req.dataset_slug)
    ctx.require_owner(dataset["owner"], "datasets.update")
    s = req.settings
    resp = ApiUpdateDatasetMetadataResponse()
    if s is None:
        return resp
    if s.title and not (slugs.DATASET_TITLE_MIN <= len(s.title) <= slugs.DATASET_TITLE_MAX):
        resp.errors = [f"The dataset title must be between {slugs.DATASET_TITLE_MIN} and {slugs.DATASET_TITLE_MAX} "
                       "characters"]
        return resp
    license_name = next((lic.name for lic in s.licenses or [] if lic is not None and lic.name), "")
    ctx.store.run("UPDATE datasets SET title=COALESCE(NULLIF(?, ''), title), subtitle=?, description=?, "
                  "is_private=?, license_name=COALESCE(NULLIF(?, ''), license_name) WHERE id=?",
                  s.title or "", s.subtitle or "", s.description or "", 1 if s.is_private else 0, license_name,
                  dataset["id"])
    return resp


@route("datasets.DatasetApiService/DeleteDataset")
@in_body(ApiDeleteDatasetResponse)
def delete_dataset(ctx: Ctx, req) -> ApiDeleteDatasetResponse:
    dataset = find(ctx, req.owner_slug, req.dataset_slug)
    ctx.require_owner(dataset["owner"], "datasets.delete")
    with ctx.store.tx() as db:
        db.execute(f"DELETE FROM files WHERE set_kind='{KIND}' AND set_id IN (SELECT id FROM dataset_versions WHERE "
                   "dataset_id=?)", (dataset["id"],))
        db.execute("DELETE FROM dataset_versions WHERE dataset_id=?", (dataset["id"],))
        db.execute("DELETE FROM datasets WHERE id=?", (dataset["id"],))
    forget(ctx.store, "datasets", dataset["owner"], dataset["slug"])
    return ApiDeleteDatasetResponse()
