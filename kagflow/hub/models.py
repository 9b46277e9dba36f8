"""Publish a model instance version: model → instance → version, created only when missing or changed.

Re-runs are safe: each step looks before it creates, and every upload carries a
``kagflow-content-<digest>.json`` file, so the latest version's file list tells whether the
same content is already there (after a crash too, with no local state).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from kagflow.errors import HubError, MissingFileError, NotFoundError, PermissionDeniedError
from kagflow.hub import gateway
from kagflow.hub.errors import checked, is_conflict
from kagflow.hub.gateway import Gateway, folder_manifest, manifest_digest, marker_digest, stage_folder
from kagflow.rules import kaggle, metadata, slugs

SKIP = (metadata.MODEL_METADATA, metadata.MODEL_INSTANCE_METADATA)


@dataclass(frozen=True)
class PublishResult:
    handle: slugs.ModelInstanceVersionHandle
    uploaded: bool
    digest: str
    files: int
    bytes: int

    @property
    def source(self) -> str:
        return slugs.model_source(self.handle)


def model_description(gw: Gateway, mhandle: slugs.ModelHandle) -> Optional[str]:
    """The description of model ``mhandle`` on the server (None: no such model)."""
    try:
        model = gw.call(lambda: gw.api.model_get(str(mhandle)), what="get model", handle=str(mhandle))
    except NotFoundError:
        return None
    return getattr(model, "description", None) or ""


def publish_model(gw: Gateway, ihandle: slugs.ModelInstanceHandle, model_dir: Path, instance_dir: Path,
                  source: Path, *, notes: str = "") -> PublishResult:
    """Publish the files of ``source`` as the next version of model instance ``ihandle``.

    ``model_dir`` holds its model-metadata.json and ``instance_dir`` its model-instance-metadata.json (written
    by the caller, ``kagflow.workflow.model``); the files are staged there as links, never copied."""
    source = Path(source)
    if not source.is_dir() or not any(p.is_file() for p in source.iterdir()):
        raise MissingFileError(f"no model files in {source}",
                               hint="train first (kagflow kernel pull train) or set [base_model] local_dir")
    mhandle = ihandle.model_handle
    manifest = folder_manifest(source, skip=SKIP)
    digest = manifest_digest(manifest)
    size = sum(f["size"] for f in manifest.values())
    api = gw.api

    if not gw.exists(lambda: api.model_get(str(mhandle)), what="get model", handle=str(mhandle)):
        gw.log(f"creating model {mhandle}")
        try:
            gw.call(lambda: checked(api.model_create_new(str(model_dir))), what="create model", handle=str(mhandle),
                    before_retry=lambda: True if gw.exists(lambda: api.model_get(str(mhandle)), what="get model",
                                                           handle=str(mhandle)) else None)
        except HubError as exc:
            if not is_conflict(exc):  # 409 (HTTP or errorCode in the body): created meanwhile, fine
                raise
        # Kaggle answers 404 for a new model for a few seconds: its instance would be refused until then
        gw.settle(gw.read(lambda: api.model_get(str(mhandle)), what="get model", handle=str(mhandle)),
                  what="get model", handle=str(mhandle), ready=bool)

    latest = latest_version(gw, ihandle)
    if latest is not None and listed_digest(gw, ihandle.version(latest)) == digest[:16]:
        gw.log(f"{ihandle}/{latest} already holds these files (content {digest[:16]}): nothing uploaded")
        return PublishResult(ihandle.version(latest), False, digest, len(manifest), size)

    gateway.log_subfolders(gw, manifest)
    stage_folder(source, instance_dir, manifest, digest, keep=SKIP)
    notes = (notes or f"kagflow publish of {source.name}")
    found = lambda: _find_version(gw, ihandle, digest)  # noqa: E731
    created = False
    if latest is None:
        gw.log(f"creating model instance {ihandle} ({len(manifest)} files, {size / 1e6:.1f} MB)")
        try:
            gw.call(lambda: checked(api.model_instance_create(str(instance_dir), quiet=True,
                                                                dir_mode=kaggle.UPLOAD_DIR_MODE)),
                    what="create model instance", handle=str(ihandle), before_retry=found, uploads=True)
            created = True
        except HubError as exc:
            if not is_conflict(exc):  # Kaggle's errorCode 409: the instance exists, make a version (as kagglehub)
                raise
            # it exists (made meanwhile, or just made and not shown yet): the same files there are no new version
            latest = gw.settle(lambda: latest_version(gw, ihandle), what="list model versions", handle=str(ihandle),
                               ready=lambda number: number is not None)
            if listed_digest(gw, ihandle.version(latest)) == digest[:16]:
                gw.log(f"{ihandle}/{latest} already holds these files (content {digest[:16]}): nothing uploaded")
                return PublishResult(ihandle.version(latest), False, digest, len(manifest), size)
            gw.log(f"{ihandle} already exists: uploading a new version instead")
    if not created:
        which = f"version {latest + 1}" if latest else "a new version"
        gw.log(f"uploading {which} of {ihandle} ({len(manifest)} files, {size / 1e6:.1f} MB)")
        gw.call(lambda: checked(api.model_instance_version_create(str(ihandle), str(instance_dir),
                                                                   version_notes=notes, quiet=True,
                                                                   dir_mode=kaggle.UPLOAD_DIR_MODE)),
                what="create model instance version", handle=str(ihandle), before_retry=found,
                retry_forbidden=True, uploads=True)
    # a new instance answers 404, a new version lists its files late: read it back before saying which it is
    version = gw.settle(found, what="list model versions", handle=str(ihandle), ready=lambda v: v is not None,
                        waiting=f"not listing the new version (content {digest[:16]}) yet")
    return PublishResult(version, True, digest, len(manifest), size)


def latest_version(gw: Gateway, ihandle: slugs.ModelInstanceHandle) -> int | None:
    """The newest version number of an instance, None if the instance does not exist."""
    api = gw.api
    try:
        response = gw.call(lambda: api.model_instance_versions_list(str(ihandle)), what="list model versions",
                           handle=str(ihandle))
    except NotFoundError:
        return None
    versions = [v.version_number for v in (response.version_list.versions if response.version_list else [])]
    return max(versions) if versions else None


def listed_digest(gw: Gateway, vhandle: slugs.ModelInstanceVersionHandle) -> str | None:
    """The content digest a version's files carry (None: unmarked), once they are listed: Kaggle lists a new
    version's files only when it has unpacked them, and a version without files cannot exist, so none listed
    means "not yet" (waited for, bounded), never "different content"."""
    api = gw.api
    files = gw.read(lambda: api.model_instance_version_files(str(vhandle), page_size=100),
                    what="list model version files", handle=str(vhandle))
    response = gw.settle(files, what="list model version files", handle=str(vhandle), ready=lambda r: bool(r.files),
                         waiting="still processing (no file listed yet)")
    return marker_digest(f.name for f in response.files)


def _find_version(gw: Gateway, ihandle: slugs.ModelInstanceHandle, digest: str):
    """The latest version of ``ihandle`` if it holds ``digest`` (None: no version, or another content)."""
    latest = latest_version(gw, ihandle)
    if latest is not None and listed_digest(gw, ihandle.version(latest)) == digest[:16]:
        return ihandle.version(latest)
    return None


def model_visible(gw: Gateway, handle: slugs.ModelHandle) -> bool:
    """Whether the caller can see model ``handle`` (GetModel): False when absent, private or refused."""
    api = gw.api
    try:
        return gw.exists(lambda: api.model_get(str(handle)), what="get model", handle=str(handle))
    except PermissionDeniedError:
        return False
