"""datasets.DatasetApiService: create, version, status, get, list, list files, download, metadata, delete."""

from __future__ import annotations

import json

from kagglesdk.datasets.types.dataset_api_service import (
    ApiCategory,
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
from kagglesdk.datasets.types.dataset_enums import (
    DatabundleVersionStatus,
    DatasetFileTypeGroup,
    DatasetLicenseGroup,
    DatasetSelectionGroup,
    DatasetSizeGroup,
    DatasetSortBy,
    DatasetViewedGroup,
)
from kagglesdk.datasets.types.dataset_types import DatasetInfo, SettingsLicense

from kagflow.errors import NamingError
from kagflow.local.server.api import (
    Ctx,
    Redirect,
    add_version,
    download_version,
    in_body,
    now,
    page,
    ready_files,
    resolve_uploads,
    route,
    shown,
    utc,
)
from kagflow.local.server.archives import Pack, forget
from kagflow.local.server.protocol import ApiError
from kagflow.rules import slugs

KIND = "dataset_version"


def find(ctx: Ctx, owner: str, slug: str):
    row = ctx.store.one("SELECT * FROM datasets WHERE owner=? AND slug=?", owner or "", slug or "")
    if not shown(ctx, row):
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
        dataset_id = db.execute("INSERT INTO datasets (owner, slug, title, subtitle, description, license_name, "
                                "is_private, created, tags) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                                (owner, req.slug, title, req.subtitle or "", req.description or "",
                                 req.license_name or "unknown", 1 if req.is_private else 0, now(),
                                 json.dumps([t for t in req.category_ids or [] if t]))).lastrowid
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
    for f in ready_files(ctx, KIND, version):
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
    item.total_bytes = sum(f["size"] for f in ready_files(ctx, KIND, latest))
    item.files = _files(ctx, dataset, latest)
    item.tags = []
    for name in json.loads(dataset["tags"] or "[]"):
        tag = ApiCategory()
        tag.ref = tag.name = name
        item.tags.append(tag)
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


# --file-type: the extensions of each group; BigQuery datasets are Kaggle's own (none can be uploaded)
FILE_TYPES = {DatasetFileTypeGroup.DATASET_FILE_TYPE_GROUP_CSV: (".csv",),
              DatasetFileTypeGroup.DATASET_FILE_TYPE_GROUP_SQLITE: (".sqlite", ".sqlite3", ".db"),
              DatasetFileTypeGroup.DATASET_FILE_TYPE_GROUP_JSON: (".json",),
              DatasetFileTypeGroup.DATASET_FILE_TYPE_GROUP_PARQUET: (".parquet",),
              DatasetFileTypeGroup.DATASET_FILE_TYPE_GROUP_BIG_QUERY: ()}
# --license: the group of a licence name (kaggle datasets list --license cc|gpl|odb|other)
LICENSE_PREFIXES = {DatasetLicenseGroup.DATASET_LICENSE_GROUP_CC: ("cc",),
                    DatasetLicenseGroup.DATASET_LICENSE_GROUP_GPL: ("gpl", "lgpl", "agpl"),
                    DatasetLicenseGroup.DATASET_LICENSE_GROUP_ODB: ("odbl", "odc", "pddl")}
# the selection groups the local Kaggle answers: the public listing, the caller's, another user's
GROUPS = (DatasetSelectionGroup.DATASET_SELECTION_GROUP_PUBLIC, DatasetSelectionGroup.DATASET_SELECTION_GROUP_ALL,
          DatasetSelectionGroup.DATASET_SELECTION_GROUP_MY, DatasetSelectionGroup.DATASET_SELECTION_GROUP_MY_PRIVATE,
          DatasetSelectionGroup.DATASET_SELECTION_GROUP_MY_PUBLIC, DatasetSelectionGroup.DATASET_SELECTION_GROUP_USER)


def license_group(name: str) -> DatasetLicenseGroup:
    key = (name or "").lower()
    for group, prefixes in LICENSE_PREFIXES.items():
        if key.startswith(prefixes):
            return group
    return DatasetLicenseGroup.DATASET_LICENSE_GROUP_OTHER


def _listing(ctx: Ctx, dataset) -> dict:
    """What the list filters look at: the latest version's files, size and date, the licence group, the tags."""
    latest = version_of(ctx, dataset)
    files = ready_files(ctx, KIND, latest)
    return {"names": [f["name"].lower() for f in files], "bytes": sum(f["size"] for f in files),
            "updated": latest["created"], "license": license_group(dataset["license_name"]),
            "tags": {t.lower() for t in json.loads(dataset["tags"] or "[]")}}


def _matches(ctx: Ctx, req, dataset, seen: dict) -> bool:
    group = req.group or DatasetSelectionGroup.DATASET_SELECTION_GROUP_PUBLIC
    if not shown(ctx, dataset):
        return False
    if group.name.startswith("DATASET_SELECTION_GROUP_MY"):
        if dataset["owner"] != ctx.require_user():
            return False
        if group != DatasetSelectionGroup.DATASET_SELECTION_GROUP_MY and bool(dataset["is_private"]) != (
                group == DatasetSelectionGroup.DATASET_SELECTION_GROUP_MY_PRIVATE):
            return False
    if req.user and dataset["owner"] != req.user:
        return False
    if req.search and req.search.lower() not in (dataset["slug"] + " " + dataset["title"]).lower():
        return False
    facts = seen[dataset["id"]] = _listing(ctx, dataset)
    if req.file_type and req.file_type.value and not any(
            n.endswith(FILE_TYPES[req.file_type]) for n in facts["names"]):
        return False
    if req.license and req.license.value and facts["license"] != req.license:
        return False
    if req.min_size and facts["bytes"] < req.min_size:  # 0: unset (kagglesdk's default)
        return False
    if req.max_size and facts["bytes"] > req.max_size:
        return False
    tags = {t.strip().lower() for t in (req.tag_ids or "").split(",") if t.strip()}
    return tags <= facts["tags"]


# --sort-by: published (newest first) and updated (latest version first) are told apart; hottest, votes, active,
# usability, downloads and notebooks have no signal here and keep the newest-first order.
_SORTS = {DatasetSortBy.DATASET_SORT_BY_UPDATED: "updated"}


@route("datasets.DatasetApiService/ListDatasets")
def list_datasets(ctx: Ctx, req) -> ApiListDatasetsResponse:
    """``kaggle datasets list`` with its filters (group/--mine, --user, --search, --file-type, --license, --tags,
    --min-size/--max-size, --sort-by, -p/--page). Refused: the selection groups of votes, bookmarks, sharing and
    organisations, and --viewed (the local Kaggle keeps none of those)."""
    if req.group is not None and req.group not in GROUPS:
        raise ApiError(400, f"The local Kaggle cannot list datasets by {req.group.name}: it keeps no votes, "
                            "bookmarks, collaborators or organisations")
    if req.viewed not in (None, DatasetViewedGroup.DATASET_VIEWED_GROUP_UNSPECIFIED):
        raise ApiError(400, "The local Kaggle keeps no view history: list without the viewed filter")
    if req.size not in (None, DatasetSizeGroup.DATASET_SIZE_GROUP_ALL):
        raise ApiError(400, "size is deprecated: use minSize and maxSize (bytes)")
    seen: dict = {}
    rows = [r for r in ctx.store.all("SELECT * FROM datasets ORDER BY created DESC, id DESC")
            if _matches(ctx, req, r, seen)]
    if req.sort_by in _SORTS:
        rows.sort(key=lambda r: -seen[r["id"]][_SORTS[req.sort_by]])
    chunk, token = page(rows, req)
    resp = ApiListDatasetsResponse()
    resp.datasets = [describe(ctx, r) for r in chunk]
    resp.next_page_token = token
    return resp


@route("datasets.DatasetApiService/ListDatasetFiles")
def list_dataset_files(ctx: Ctx, req) -> ApiListDatasetFilesResponse:
    dataset = find(ctx, req.owner_slug, req.dataset_slug)
    files = _files(ctx, dataset, version_of(ctx, dataset, req.dataset_version_number))
    chunk, token = page(files, req)
    resp = ApiListDatasetFilesResponse()
    resp.dataset_files = chunk
    resp.next_page_token = token
    return resp


@route("datasets.DatasetApiService/DownloadDataset")
def download_dataset(ctx: Ctx, req) -> Redirect:
    dataset = find(ctx, req.owner_slug, req.dataset_slug)
    version = version_of(ctx, dataset, req.dataset_version_number)
    where = f"{dataset['owner']}/{dataset['slug']} version {version['number']}"
    return download_version(ctx, KIND, version, what=f"Dataset {where}", path=req.file_name, where=where,
                            pack=lambda members: Pack("datasets", (dataset["owner"], dataset["slug"]),
                                                      str(version["number"]), members),
                            archive_name=f"{dataset['slug']}.zip")


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
    info.keywords = json.loads(dataset["tags"] or "[]")
    return info


@route("datasets.DatasetApiService/GetDatasetMetadata")
def get_dataset_metadata(ctx: Ctx, req) -> ApiGetDatasetMetadataResponse:
    """What ``kaggle datasets metadata`` writes, and what ``kaggle datasets download`` reads the license from."""
    resp = ApiGetDatasetMetadataResponse()
    resp.info = dataset_info(ctx, find(ctx, req.owner_slug, req.dataset_slug))
    return resp


@route("datasets.DatasetApiService/UpdateDatasetMetadata")
def update_dataset_metadata(ctx: Ctx, req) -> ApiUpdateDatasetMetadataResponse:
    """Title, subtitle, description, privacy, license and keywords (collaborators and images are not kept)."""
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
    tags = json.dumps([k for k in s.keywords or [] if k]) if s.keywords else dataset["tags"]
    ctx.store.run("UPDATE datasets SET title=COALESCE(NULLIF(?, ''), title), subtitle=?, description=?, "
                  "is_private=?, license_name=COALESCE(NULLIF(?, ''), license_name), tags=? WHERE id=?",
                  s.title or "", s.subtitle or "", s.description or "", 1 if s.is_private else 0, license_name,
                  tags, dataset["id"])
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
