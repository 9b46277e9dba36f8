"""Zip and tar.gz bundles of a version's files, built once into ``cache/`` and served from disk; and the
unpacking of uploaded folder archives (``-r zip|tar``) back into folders, as Kaggle does.

Built from the blob files in chunks (no file is read into memory) under a lock, written to a
temporary name and renamed, so a reader never sees half an archive.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import tarfile
import threading
import zipfile
from pathlib import Path
from typing import Iterable, Tuple

from kagflow.local.names import check_relpath
from kagflow.local.protocol import ApiError
from kagflow.local.store import CHUNK, Store

_lock = threading.Lock()


def bundle(store: Store, key: str, members: Iterable[Tuple[str, Path]], fmt: str = "zip") -> Path:
    """``cache/<key>.<fmt>`` holding ``members`` (``(name in archive, source path)``); built if missing."""
    target = store.root / "cache" / f"{key}.{fmt}"
    with _lock:
        if target.exists():
            return target
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(target.name + ".tmp")
        if fmt == "zip":
            with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED, compresslevel=1, allowZip64=True) as zf:
                for name, source in members:
                    with open(source, "rb") as src, zf.open(zipfile.ZipInfo.from_file(source, name), "w",
                                                            force_zip64=True) as dst:
                        while chunk := src.read(CHUNK):
                            dst.write(chunk)
        elif fmt == "tar.gz":
            with tarfile.open(tmp, "w:gz", compresslevel=1) as tf:
                for name, source in members:
                    info = tf.gettarinfo(str(source), arcname=name)
                    info.mode, info.uid, info.gid, info.uname, info.gname = 0o644, 0, 0, "", ""
                    with open(source, "rb") as src:
                        tf.addfile(info, src)
        else:
            raise ValueError(f"unknown archive format {fmt!r}")
        os.replace(tmp, target)
        return target


# ---------------------------------------------------------------------- unpacking uploads

UNPACKED = (".zip", ".tar")  # what `kaggle datasets create/version -r zip|tar` uploads a sub-folder as
MAX_MEMBERS = 100_000


def unpack_uploads(store: Store, files: list, max_bytes: int) -> list:
    """Kaggle unpacks an uploaded ``sub.zip`` / ``sub.tar`` back into the folder ``sub/``: replace each such file of
    ``[(name, sha256, size, description)]`` by its members, named ``sub/<member>`` (each member stored as a blob).
    Members that are links, devices, absolute or with ``..`` are refused (400), as are archives over ``max_bytes``
    unpacked or with more than ``MAX_MEMBERS`` files."""
    out = []
    for name, sha, size, desc in files:
        stem = next((name[:-len(ext)] for ext in UNPACKED if name.lower().endswith(ext) and "/" not in name), None)
        if stem is None:
            out.append((name, sha, size, desc))
            continue
        try:
            members = list(_members(store, store.blob_path(sha), name, max_bytes))
        except (zipfile.BadZipFile, tarfile.TarError, EOFError, OSError) as exc:
            raise ApiError(400, f"Could not unpack {name!r}: {exc}") from None
        out.extend((f"{stem}/{member}", msha, msize, desc) for member, msha, msize in members)
    return out


def _members(store: Store, path: Path, name: str, max_bytes: int):
    total = count = 0

    def take(member: str, size: int, stream):
        nonlocal total, count
        member = check_relpath(member.strip("/").removeprefix("./"), what=f"member of {name}")
        total, count = total + size, count + 1
        if total > max_bytes or count > MAX_MEMBERS:
            raise ApiError(400, f"{name!r} unpacks to more than {max_bytes} bytes or {MAX_MEMBERS} files")
        part = store.root / "uploads" / f"copy-{secrets.token_hex(8)}.part"
        digest = hashlib.sha256()
        with open(part, "wb") as dst:
            while chunk := stream.read(CHUNK):
                digest.update(chunk)
                dst.write(chunk)
        sha, got = store.ingest(part, digest.hexdigest())
        return member, sha, got

    if name.lower().endswith(".zip"):
        with zipfile.ZipFile(path) as zf:
            for info in zf.infolist():
                if info.is_dir():
                    continue
                if (info.external_attr >> 16) & 0o170000 not in (0, 0o100000):  # a symlink or special file
                    raise ApiError(400, f"{name!r} holds {info.filename!r}, which is not a regular file")
                with zf.open(info) as stream:
                    yield take(info.filename, info.file_size, stream)
    else:
        with tarfile.open(path, "r:") as tf:
            for info in tf:
                if info.isdir():
                    continue
                if not info.isfile():
                    raise ApiError(400, f"{name!r} holds {info.name!r}, which is not a regular file")
                yield take(info.name, info.size, tf.extractfile(info))
