"""Create a dataset or a new version of it, only when its content changed (wheels push)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from kagflow.errors import HubError, MissingFileError, NotFoundError
from kagflow.hub import gateway
from kagflow.hub.errors import checked
from kagflow.hub.gateway import Gateway, folder_manifest, manifest_digest, marker_digest, stage_folder
from kagflow.rules import kaggle, metadata, slugs

SKIP = (metadata.DATASET_METADATA,)


@dataclass(frozen=True)
class DatasetPushResult:
    handle: slugs.DatasetHandle
    uploaded: bool
    created: bool
    digest: str
    files: int
    bytes: int
    version: int  # the dataset version holding these files (what kernels pin: owner/slug/version)


def push_dataset(gw: Gateway, folder: Path, *, notes: str = "") -> DatasetPushResult:
    """Upload ``folder`` (holding dataset-metadata.json) as a new dataset or a new version.

    The folder's files are staged with a ``kagflow-content-<digest>.json`` marker, so a
    re-run compares the latest version's file list with the digest and uploads nothing when equal.
    """
    folder = Path(folder)
    meta_path = folder / metadata.DATASET_METADATA
    if not meta_path.is_file():
        raise MissingFileError(f"{meta_path} not found", hint="run `kagflow wheels build` first")
    meta = metadata.read_metadata(meta_path)
    handle = slugs.DatasetHandle.parse(meta["id"])
    manifest = folder_manifest(folder, skip=SKIP)
    if not manifest:
        raise MissingFileError(f"no files to upload in {folder}", hint="run `kagflow wheels build` first")
    digest = manifest_digest(manifest)
    size = sum(f["size"] for f in manifest.values())
    api = gw.api
    current = current_digest(gw, handle)
    if current == digest[:16]:
        gw.log(f"dataset {handle} already holds these files (content {digest[:16]}): nothing uploaded")
        return DatasetPushResult(handle, False, False, digest, len(manifest), size, current_version(gw, handle))
    gateway.log_subfolders(gw, manifest)
    staging = folder.parent / f".{folder.name}.upload"
    stage_folder(folder, staging, manifest, digest)
    metadata.write_metadata(staging, metadata.DATASET_METADATA, meta)
    done = lambda: True if current_digest(gw, handle) == digest[:16] else None  # noqa: E731
    exists = current is not None or gw.exists(lambda: api.dataset_status(str(handle)), what="dataset status",
                                              handle=str(handle))
    previous = current_version(gw, handle) if exists else 0
    created = False
    if not exists:
        gw.log(f"creating dataset {handle} ({len(manifest)} files, {size / 1e6:.1f} MB)")
        try:
            gw.call(lambda: checked(api.dataset_create_new(str(staging), public=not meta.get("isPrivate", True),
                                                            quiet=True, convert_to_csv=False,
                                                            dir_mode=kaggle.UPLOAD_DIR_MODE)),
                    what="create dataset", handle=str(handle), before_retry=done, uploads=True)
            created = True
        except HubError:  # Kaggle says "slug already in use" in the body (no code): created meanwhile?
            if not gw.exists(lambda: api.dataset_status(str(handle)), what="dataset status", handle=str(handle)):
                raise
            gw.log(f"dataset {handle} already exists: uploading a new version instead")
    if not created:
        gw.log(f"uploading a new version of dataset {handle} ({len(manifest)} files, {size / 1e6:.1f} MB)")
        gw.call(lambda: checked(api.dataset_create_version(str(staging), notes or "kagflow push", quiet=True,
                                                            convert_to_csv=False, dir_mode=kaggle.UPLOAD_DIR_MODE)),
                what="create dataset version", handle=str(handle), before_retry=done, retry_forbidden=True,
                uploads=True)
    # the version just made: Kaggle numbers a dataset's versions 1, 2, ... (the latest may still be processing)
    version = 1 if created else max(previous + 1, current_version(gw, handle))
    return DatasetPushResult(handle, True, created, digest, len(manifest), size, version)


def current_version(gw: Gateway, handle: slugs.DatasetHandle) -> int:
    """The number of the dataset's latest version (GetDataset's current_version_number; 0 if it has none)."""
    api = gw.api
    text = gw.call(lambda: api.dataset_status(str(handle), format="json(current_version_number)"),
                   what="dataset version", handle=str(handle))
    try:
        return int(json.loads(text).get("current_version_number") or 0)
    except (ValueError, TypeError, AttributeError):
        raise HubError(f"dataset {handle}: its version number came back as {text!r}",
                       hint="retry; if it persists the client's GetDataset answer changed") from None



def current_digest(gw: Gateway, handle: slugs.DatasetHandle) -> str | None:
    """The content digest the dataset's latest version carries; None if absent or unmarked."""
    api = gw.api
    try:
        response = gw.call(lambda: api.dataset_list_files(str(handle), page_size=200), what="list dataset files",
                           handle=str(handle))
    except NotFoundError:
        return None
    files = getattr(response, "dataset_files", None) or getattr(response, "files", None) or []
    return marker_digest(getattr(f, "name", "") for f in files)
