"""Create a dataset or a new version of it, only when its content changed (wheels push); download one (the
sources of a kernel run here)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
import tempfile
import time
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
        except HubError as exc:  # Kaggle says "... already in use" in the body (no code): created meanwhile?
            taken = "already in use" in (exc.server_message or str(exc))  # then it exists, even while it 404s
            if not taken and not gw.exists(lambda: api.dataset_status(str(handle)), what="dataset status",
                                           handle=str(handle)):
                raise
            # it exists (made meanwhile, or just made and not shown yet): the same files there are no new version
            if settled_digest(gw, handle) == digest[:16]:
                gw.log(f"dataset {handle} already holds these files (content {digest[:16]}): nothing uploaded")
                return DatasetPushResult(handle, False, False, digest, len(manifest), size,
                                         current_version(gw, handle))
            gw.log(f"dataset {handle} already exists: uploading a new version instead")
    if not created:
        gw.log(f"uploading a new version of dataset {handle} ({len(manifest)} files, {size / 1e6:.1f} MB)")
        gw.call(lambda: checked(api.dataset_create_version(str(staging), notes or "kagflow push", quiet=True,
                                                            convert_to_csv=False, dir_mode=kaggle.UPLOAD_DIR_MODE)),
                what="create dataset version", handle=str(handle), before_retry=done, retry_forbidden=True,
                uploads=True)
    # a new dataset answers 404 for a few seconds and a new version lists its files late: read it back
    gw.settle(lambda: current_digest(gw, handle), what="list dataset files", handle=str(handle),
              ready=lambda found: found == digest[:16],
              waiting=f"not listing the new files (content {digest[:16]}) yet")
    # the version just made: Kaggle numbers a dataset's versions 1, 2, ... (the latest may still be processing)
    version = 1 if created else max(previous + 1, current_version(gw, handle))
    return DatasetPushResult(handle, True, created, digest, len(manifest), size, version)


def _listed(response) -> list:
    return getattr(response, "dataset_files", None) or getattr(response, "files", None) or []


def current_digest(gw: Gateway, handle: slugs.DatasetHandle) -> str | None:
    """The content digest the dataset's latest version carries; None if absent or unmarked. A version whose files
    are not listed yet (Kaggle unpacks a new version late; a version without files cannot exist) is waited for,
    bounded: "not listed yet" is never read as "other content"."""
    api = gw.api
    files = gw.read(lambda: api.dataset_list_files(str(handle), page_size=200), what="list dataset files",
                    handle=str(handle))
    try:
        response = files()
    except NotFoundError:
        return None
    if not _listed(response):
        response = gw.settle(files, what="list dataset files", handle=str(handle), ready=lambda r: bool(_listed(r)),
                             waiting="still processing (no file listed yet)")
    return marker_digest(getattr(f, "name", "") for f in _listed(response))


def settled_digest(gw: Gateway, handle: slugs.DatasetHandle) -> str | None:
    """:func:`current_digest` of a dataset known to exist: its 404 of the first seconds is waited for."""
    api = gw.api
    gw.settle(gw.read(lambda: api.dataset_status(str(handle)), what="dataset status", handle=str(handle)),
              what="dataset status", handle=str(handle), ready=bool)
    return current_digest(gw, handle)


def current_version(gw: Gateway, handle: slugs.DatasetHandle) -> int:
    """The number of the dataset's latest version (GetDataset's current_version_number; 0 if it has none; the
    latest may still be processing)."""
    from kagglesdk.datasets.types.dataset_api_service import ApiGetDatasetRequest

    def get():
        with gw.api.build_kaggle_client() as kaggle:
            request = ApiGetDatasetRequest()
            request.owner_slug, request.dataset_slug = handle.owner, handle.slug
            return kaggle.datasets.dataset_api_client.get_dataset(request)

    return int(gw.call(get, what="get dataset", handle=str(handle)).current_version_number or 0)


def download_dataset(gw: Gateway, handle: slugs.DatasetHandle, cache: Path) -> Path:
    """The files of dataset ``handle`` (the version it pins, else the latest) in ``cache/<owner>/<slug>/<N>/``,
    downloaded and unpacked once (a version never changes); the folder appears whole or not at all."""
    version = handle.version or current_version(gw, handle)
    dest = Path(cache) / handle.owner / handle.slug / str(version)
    done = dest.with_name(f"{version}.complete")  # beside it: the folder holds the dataset's files only
    if done.is_file() and dest.is_dir():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(prefix=f".{version}.", dir=dest.parent))
    try:
        ref = str(handle.with_version(version))
        with contextlib.redirect_stdout(sys.stderr):  # the client prints the dataset's URL: not our stdout
            gw.call(lambda: gw.api.dataset_download_files(ref, path=str(partial), unzip=True, quiet=True,
                                                          force=True),
                    what="download dataset", handle=ref)
        shutil.rmtree(dest, ignore_errors=True)  # an earlier attempt cut short
        os.replace(partial, dest)
        done.write_text(json.dumps({"dataset": ref, "time": time.time()}))
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return dest
