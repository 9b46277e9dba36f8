"""models.ModelApiService: models, instances, instance versions (create, get, list, files, download, update,
delete)."""

from __future__ import annotations

import json

from kagglesdk.models.types.model_api_service import (
    ApiCreateModelResponse,
    ApiDeleteModelResponse,
    ApiListModelInstancesResponse,
    ApiListModelInstanceVersionFilesResponse,
    ApiListModelInstanceVersionsResponse,
    ApiListModelsResponse,
    ApiModel,
    ApiModelFile,
    ApiModelInstance,
    ApiUpdateModelResponse,
)
from kagglesdk.models.types.model_enums import ModelFramework, ModelInstanceType
from kagglesdk.models.types.model_types import ModelInstance, ModelInstanceVersion, ModelInstanceVersionList

from kagflow.errors import NamingError
from kagflow.local.server.api import (
    Ctx,
    Redirect,
    add_version,
    download_version,
    in_body,
    is_new,
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

KIND = "model_version"
UNKNOWN_LICENSE = "Unknown"  # an instance created without a licence (kagglehub's model_upload(license_name=None))
_PREFIX = "MODEL_FRAMEWORK_"


def framework_source(enum_name: str) -> str:
    """``MODEL_FRAMEWORK_TRANSFORMERS`` → ``transformers`` (the form in handles and mount paths)."""
    return slugs.framework_source_name(enum_name.removeprefix(_PREFIX))


def _framework(value) -> str:
    if value is None or value == ModelFramework.MODEL_FRAMEWORK_UNSPECIFIED:
        raise ApiError(400, "A model framework is required")
    return value.name


def _slug(value: str, what: str) -> str:
    """Kaggle's rule, not kagflow's narrower one: underscores and dots are fine (``model_<uuid>``, ``qwen2.5``)."""
    try:
        return slugs.check_model_slug(value or "", what=what)
    except NamingError as exc:
        raise ApiError(400, str(exc)) from None


def _title(title: str) -> str:
    if not title or not slugs.MODEL_TITLE_MIN <= len(title) <= slugs.MODEL_TITLE_MAX:
        raise ApiError(400, f"A model title must be between {slugs.MODEL_TITLE_MIN} and {slugs.MODEL_TITLE_MAX} "
                            "characters")
    return title


def find_model(ctx: Ctx, owner: str, slug: str):
    row = ctx.store.one("SELECT * FROM models WHERE owner=? AND slug=?", owner or "", slug or "")
    if not shown(ctx, row):
        raise ApiError(404, f"Model {owner}/{slug} not found")
    return row


def find_instance(ctx: Ctx, owner: str, model_slug: str, framework, instance_slug: str):
    model = find_model(ctx, owner, model_slug)
    fw = framework.name if hasattr(framework, "name") else str(framework)
    row = ctx.store.one("SELECT * FROM model_instances WHERE model_id=? AND framework=? AND slug=?",
                        model["id"], fw, instance_slug or "")
    if row is None or is_new(ctx, row):
        raise ApiError(404, f"Model instance {owner}/{model_slug}/{framework_source(fw)}/{instance_slug} not found")
    return model, row


def find_version(ctx: Ctx, instance, number=None):
    if number:
        row = ctx.store.one("SELECT * FROM model_versions WHERE instance_id=? AND number=?", instance["id"], number)
    else:
        row = ctx.store.one("SELECT * FROM model_versions WHERE instance_id=? ORDER BY number DESC LIMIT 1",
                            instance["id"])
    if row is None:
        raise ApiError(404, f"Model instance version {number or 'latest'} not found")
    return row


def instance_ref(model, instance) -> str:
    return f"{model['owner']}/{model['slug']}/{framework_source(instance['framework'])}/{instance['slug']}"


def _response(ctx: Ctx, id_: int, ref: str) -> ApiCreateModelResponse:
    resp = ApiCreateModelResponse()
    resp.id = id_
    resp.ref = ref
    resp.url = f"{ctx.base_url}/models/{ref}"
    return resp


def _add_version(ctx: Ctx, db, instance_id: int, notes: str, files) -> tuple[int, int]:
    """Insert the next version of the instance with its files, inside the caller's transaction ``db``."""
    return add_version(db, KIND, instance_id, notes, files, processing_s=ctx.settings.model_processing_s,
                       busy="The previous version of this model instance is still processing; retry later")


@route("models.ModelApiService/CreateModel")
@in_body(ApiCreateModelResponse)
def create_model(ctx: Ctx, req) -> ApiCreateModelResponse:
    owner = req.owner_slug or ctx.require_user()
    ctx.require_owner(owner, "models.create")
    slug = _slug(req.slug, "model slug")
    _title(req.title)
    # the clients key on "already used"
    if ctx.store.one("SELECT id FROM models WHERE owner=? AND slug=?", owner, slug):
        raise ApiError(409, f"The model slug {slug!r} is already used by another model of {owner!r}")
    model_id = ctx.store.run("INSERT INTO models VALUES (NULL, ?, ?, ?, ?, ?, ?, ?, ?, ?)", owner, slug, req.title,
                             req.subtitle or "", req.description or "", 0 if req.is_private is False else 1,
                             req.publish_time.isoformat() if req.publish_time else None,
                             req.provenance_sources or "", now())
    return _response(ctx, model_id, f"{owner}/{slug}")


def describe_instance(ctx: Ctx, model, instance) -> ApiModelInstance:
    item = ApiModelInstance()
    item.id = instance["id"]
    item.slug = instance["slug"]
    item.framework = ModelFramework[instance["framework"]]
    item.fine_tunable = bool(instance["fine_tunable"])
    item.overview = instance["overview"]
    item.usage = instance["usage"]
    item.license_name = instance["license_name"]
    item.training_data = json.loads(instance["training_data"] or "[]")
    item.model_instance_type = ModelInstanceType[instance["instance_type"]]
    item.url = f"{ctx.base_url}/models/{instance_ref(model, instance)}"
    latest = ctx.store.one("SELECT * FROM model_versions WHERE instance_id=? ORDER BY number DESC LIMIT 1",
                           instance["id"])
    if latest is not None:
        item.version_id = latest["id"]
        item.version_number = latest["number"]
        item.total_uncompressed_bytes = sum(f["size"] for f in ready_files(ctx, KIND, latest))
    return item


def describe_model(ctx: Ctx, model) -> ApiModel:
    item = ApiModel()
    item.id = model["id"]
    item.ref = f"{model['owner']}/{model['slug']}"
    item.title = model["title"]
    item.subtitle = model["subtitle"]
    item.author = model["owner"]
    item.slug = model["slug"]
    item.is_private = bool(model["is_private"])
    item.description = model["description"]
    item.provenance_sources = model["provenance"] or ""
    item.url = f"{ctx.base_url}/models/{model['owner']}/{model['slug']}"
    item.instances = [describe_instance(ctx, model, i) for i in
                      ctx.store.all("SELECT * FROM model_instances WHERE model_id=? ORDER BY id", model["id"])
                      if not is_new(ctx, i)]
    return item


@route("models.ModelApiService/GetModel")
def get_model(ctx: Ctx, req) -> ApiModel:
    return describe_model(ctx, find_model(ctx, req.owner_slug, req.model_slug))


@route("models.ModelApiService/ListModels")
def list_models(ctx: Ctx, req) -> ApiListModelsResponse:
    rows = [r for r in ctx.store.all("SELECT * FROM models ORDER BY created DESC")
            if shown(ctx, r) and (not req.owner or r["owner"] == req.owner)
            and (not req.search or req.search.lower() in (r["slug"] + " " + r["title"]).lower())]
    chunk, token = page(rows, req)
    resp = ApiListModelsResponse()
    resp.models = [describe_model(ctx, r) for r in chunk]
    resp.next_page_token = token
    return resp


@route("models.ModelApiService/CreateModelInstance")
@in_body(ApiCreateModelResponse)
def create_model_instance(ctx: Ctx, req) -> ApiCreateModelResponse:
    model = find_model(ctx, req.owner_slug, req.model_slug)
    ctx.require_owner(model["owner"], "models.update")
    body = req.body
    if body is None:
        raise ApiError(400, "body is required")
    fw = _framework(body.framework)
    slug = _slug(body.instance_slug, "model instance slug")
    license_name = body.license_name or UNKNOWN_LICENSE  # kagglehub's model_upload may send none; Kaggle takes it
    files = resolve_uploads(ctx, body.files, body.directories)
    if not files:
        raise ApiError(400, "A model instance needs at least one file")
    kind = body.model_instance_type or ModelInstanceType.MODEL_INSTANCE_TYPE_UNSPECIFIED
    with ctx.store.tx() as db:  # the instance and its first version, or neither (a crash between leaves nothing)
        if db.execute("SELECT id FROM model_instances WHERE model_id=? AND framework=? AND slug=?",
                      (model["id"], fw, slug)).fetchone():
            raise ApiError(409, f"Model instance {model['owner']}/{model['slug']}/{framework_source(fw)}/{slug} "
                                "already exists")  # the clients key on "already exists" here
        instance_id = db.execute("INSERT INTO model_instances VALUES (NULL, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                                 (model["id"], fw, slug, license_name, body.overview or "", body.usage or "",
                                  1 if body.fine_tunable else 0, json.dumps(body.training_data or []), kind.name,
                                  now(), body.base_model_instance or "")).lastrowid
        _add_version(ctx, db, instance_id, "Initial version", files)
    instance = ctx.store.one("SELECT * FROM model_instances WHERE id=?", instance_id)
    return _response(ctx, instance_id, instance_ref(model, instance))


@route("models.ModelApiService/GetModelInstance")
def get_model_instance(ctx: Ctx, req) -> ApiModelInstance:
    model, instance = find_instance(ctx, req.owner_slug, req.model_slug, req.framework, req.instance_slug)
    return describe_instance(ctx, model, instance)


@route("models.ModelApiService/CreateModelInstanceVersion")
def create_model_instance_version(ctx: Ctx, req) -> ApiCreateModelResponse:
    model, instance = find_instance(ctx, req.owner_slug, req.model_slug, req.framework, req.instance_slug)
    ctx.require_owner(model["owner"], "models.update")
    files = resolve_uploads(ctx, req.body.files if req.body else [],
                            req.body.directories if req.body else [])
    if not files:
        raise ApiError(400, "A model instance version needs at least one file")
    with ctx.store.tx() as db:
        version_id, number = _add_version(ctx, db, instance["id"], req.body.version_notes if req.body else "", files)
    return _response(ctx, version_id, f"{instance_ref(model, instance)}/{number}")


@route("models.ModelApiService/ListModelInstanceVersions")
def list_model_instance_versions(ctx: Ctx, req) -> ApiListModelInstanceVersionsResponse:
    model, instance = find_instance(ctx, req.owner_slug, req.model_slug, req.framework, req.instance_slug)
    rows = ctx.store.all("SELECT * FROM model_versions WHERE instance_id=? ORDER BY number DESC", instance["id"])
    chunk, token = page(rows, req)
    versions = []
    for v in chunk:
        item = ModelInstanceVersion()
        item.id = v["id"]
        item.framework = ModelFramework[instance["framework"]]
        item.variation_slug = instance["slug"]
        item.version_number = v["number"]
        item.model_title = model["title"]
        item.is_private = bool(model["is_private"])
        item.url = f"{ctx.base_url}/models/{instance_ref(model, instance)}/{v['number']}"
        item.owner_slug, item.model_slug = model["owner"], model["slug"]
        item.model_id, item.model_instance_id = model["id"], instance["id"]
        versions.append(item)
    resp = ApiListModelInstanceVersionsResponse()
    resp.version_list = ModelInstanceVersionList()
    resp.version_list.versions = versions
    resp.next_page_token = token
    return resp


@route("models.ModelApiService/ListModelInstanceVersionFiles")
def list_model_instance_version_files(ctx: Ctx, req) -> ApiListModelInstanceVersionFilesResponse:
    _, instance = find_instance(ctx, req.owner_slug, req.model_slug, req.framework, req.instance_slug)
    version = find_version(ctx, instance, req.version_number)
    files = []
    for f in ready_files(ctx, KIND, version):
        item = ApiModelFile()
        item.name, item.size, item.creation_date = f["name"], f["size"], utc(f["created"])
        files.append(item)
    chunk, token = page(files, req)
    resp = ApiListModelInstanceVersionFilesResponse()
    resp.files = chunk
    resp.next_page_token = token
    return resp


@route("models.ModelApiService/DownloadModelInstanceVersion")
def download_model_instance_version(ctx: Ctx, req) -> Redirect:
    model, instance = find_instance(ctx, req.owner_slug, req.model_slug, req.framework, req.instance_slug)
    version = find_version(ctx, instance, req.version_number)
    label = f"{framework_source(instance['framework'])}/{instance['slug']}/{version['number']}"
    return download_version(ctx, KIND, version,
                            what=f"Model instance version {instance_ref(model, instance)}/{version['number']}",
                            path=req.path, where="this model version",
                            pack=lambda members: Pack("models", (model["owner"], model["slug"]), label, members,
                                                      fmt="tar.gz"),
                            archive_name=f"{model['slug']}.tar.gz")


@route("models.ModelApiService/ListModelInstances")
def list_model_instances(ctx: Ctx, req) -> ApiListModelInstancesResponse:
    model = find_model(ctx, req.owner_slug, req.model_slug)
    rows = [r for r in ctx.store.all("SELECT * FROM model_instances WHERE model_id=? ORDER BY id", model["id"])
            if not is_new(ctx, r)]
    chunk, token = page(rows, req)
    resp = ApiListModelInstancesResponse()
    resp.instances = []
    for row in chunk:
        item = ModelInstance()
        latest = ctx.store.one("SELECT * FROM model_versions WHERE instance_id=? ORDER BY number DESC LIMIT 1",
                               row["id"])
        item.id, item.slug, item.model_id = row["id"], row["slug"], model["id"]
        item.owner_slug, item.model_slug = model["owner"], model["slug"]
        item.framework = ModelFramework[row["framework"]]
        item.fine_tunable = bool(row["fine_tunable"])
        item.overview, item.usage = row["overview"], row["usage"]
        item.model_instance_type = ModelInstanceType[row["instance_type"]]
        if latest is not None:
            item.version_id = item.last_version_id = latest["id"]
            item.version_number = latest["number"]
            item.version_notes = latest["notes"]
            item.total_uncompressed_bytes = sum(f["size"] for f in ready_files(ctx, KIND, latest))
        resp.instances.append(item)
    resp.next_page_token = token
    return resp


def _mask(req) -> set:
    return set(req.update_mask.paths) if req.update_mask is not None else set()


@route("models.ModelApiService/UpdateModel")
@in_body(ApiUpdateModelResponse, codes=(400, 409))
def update_model(ctx: Ctx, req) -> ApiUpdateModelResponse:
    model = find_model(ctx, req.owner_slug, req.model_slug)
    ctx.require_owner(model["owner"], "models.update")
    mask = _mask(req)
    if "title" in mask:
        _title(req.title)
    values = {"title": req.title, "subtitle": req.subtitle or "", "description": req.description or "",
              "is_private": 1 if req.is_private else 0, "provenance": req.provenance_sources or "",
              "publish_time": req.publish_time.isoformat() if req.publish_time else None}
    fields = {"provenance_sources": "provenance"}
    for path in mask:
        column = fields.get(path, path)
        if column in values:
            ctx.store.run(f"UPDATE models SET {column}=? WHERE id=?", values[column], model["id"])
    return _response(ctx, model["id"], f"{model['owner']}/{model['slug']}")


@route("models.ModelApiService/UpdateModelInstance")
@in_body(ApiUpdateModelResponse, codes=(400, 409))
def update_model_instance(ctx: Ctx, req) -> ApiUpdateModelResponse:
    model, instance = find_instance(ctx, req.owner_slug, req.model_slug, req.framework, req.instance_slug)
    ctx.require_owner(model["owner"], "models.update")
    values = {"overview": req.overview or "", "usage": req.usage or "", "fine_tunable": 1 if req.fine_tunable else 0,
              "training_data": json.dumps(req.training_data or []), "license_name": req.license_name or "",
              "instance_type": (req.model_instance_type or ModelInstanceType.MODEL_INSTANCE_TYPE_UNSPECIFIED).name}
    fields = {"model_instance_type": "instance_type"}
    for path in _mask(req):
        column = fields.get(path, path)
        if column in values:
            if column == "license_name" and not values[column]:
                raise ApiError(400, "A model instance needs a license")
            ctx.store.run(f"UPDATE model_instances SET {column}=? WHERE id=?", values[column], instance["id"])
    return _response(ctx, instance["id"], instance_ref(model, instance))


def _delete_versions(db, where: str, arg) -> None:
    db.execute(f"DELETE FROM files WHERE set_kind='{KIND}' AND set_id IN (SELECT id FROM model_versions WHERE "
               f"{where})", (arg,))
    db.execute(f"DELETE FROM model_versions WHERE {where}", (arg,))


@route("models.ModelApiService/DeleteModel")
@in_body(ApiDeleteModelResponse)
def delete_model(ctx: Ctx, req) -> ApiDeleteModelResponse:
    model = find_model(ctx, req.owner_slug, req.model_slug)
    ctx.require_owner(model["owner"], "models.delete")
    with ctx.store.tx() as db:
        _delete_versions(db, "instance_id IN (SELECT id FROM model_instances WHERE model_id=?)", model["id"])
        db.execute("DELETE FROM model_instances WHERE model_id=?", (model["id"],))
        db.execute("DELETE FROM models WHERE id=?", (model["id"],))
    forget(ctx.store, "models", model["owner"], model["slug"])  # every archive of the model: rebuilt on demand
    return ApiDeleteModelResponse()


@route("models.ModelApiService/DeleteModelInstance")
@in_body(ApiDeleteModelResponse)
def delete_model_instance(ctx: Ctx, req) -> ApiDeleteModelResponse:
    model, instance = find_instance(ctx, req.owner_slug, req.model_slug, req.framework, req.instance_slug)
    ctx.require_owner(model["owner"], "models.delete")
    with ctx.store.tx() as db:
        _delete_versions(db, "instance_id=?", instance["id"])
        db.execute("DELETE FROM model_instances WHERE id=?", (instance["id"],))
    forget(ctx.store, "models", model["owner"], model["slug"])
    return ApiDeleteModelResponse()


@route("models.ModelApiService/DeleteModelInstanceVersion")
@in_body(ApiDeleteModelResponse)
def delete_model_instance_version(ctx: Ctx, req) -> ApiDeleteModelResponse:
    model, instance = find_instance(ctx, req.owner_slug, req.model_slug, req.framework, req.instance_slug)
    ctx.require_owner(model["owner"], "models.delete")
    version = find_version(ctx, instance, req.version_number)
    with ctx.store.tx() as db:
        _delete_versions(db, "id=?", version["id"])
    forget(ctx.store, "models", model["owner"], model["slug"])
    return ApiDeleteModelResponse()
