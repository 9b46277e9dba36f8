"""Zip and tar.gz bundles of a version's files, built once into ``cache/`` and served from disk (the unpacking
of uploaded archives is :mod:`kagflow.local.server.unpack`).

An archive is named by a digest of everything it packs (:class:`Pack`: the resource, its version, each member's
name and content digest) under its resource's folder, ``cache/<kind>/<owner>/<slug>/<key>.zip``: another
resource, another version or changed files give another name, so a cached archive is never served for anything
but what it holds, whatever ids SQLite hands out; deleting a resource removes its folder (:func:`forget`).

Built from the blob files in chunks (no file is read into memory) under a lock, written to a
temporary name and renamed, so a reader never sees half an archive.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tarfile
import threading
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Tuple

from kagflow.local.server.names import inside
from kagflow.local.server.store import CHUNK, Store

_lock = threading.Lock()
FORMATS = ("zip", "tar.gz")


@dataclass(frozen=True)
class Pack:
    """What one download archive holds. ``kind`` and ``folder`` (``("bob", "my-data")``) place it, ``version``
    names the version, ``members`` are ``(name in archive, source file, content id)``: the blob's sha256, or for a
    file outside the blob store (a kernel's output) its :func:`file_id`."""
    kind: str
    folder: Tuple[str, ...]
    version: str
    members: Tuple[Tuple[str, Path, str], ...]
    fmt: str = "zip"

    @property
    def key(self) -> str:
        spec = [self.kind, list(self.folder), self.version, self.fmt, [[n, c] for n, _, c in self.members]]
        return hashlib.sha256(json.dumps(spec).encode()).hexdigest()

    def path(self, store: Store) -> Path:
        return inside(store.root / "cache", self.kind, *self.folder, f"{self.key}.{self.fmt}")


def blob_members(store: Store, rows) -> Tuple[Tuple[str, Path, str], ...]:
    """Pack members for stored file rows (``name``, ``sha256``)."""
    return tuple((f["name"], store.blob_path(f["sha256"]), f["sha256"]) for f in rows)


def file_members(files: Iterable[Tuple[str, Path]]) -> Tuple[Tuple[str, Path, str], ...]:
    """Pack members for files on disk (``(name, path)``), identified by :func:`file_id`."""
    return tuple((name, path, file_id(path)) for name, path in files)


def file_id(path: Path) -> str:
    """Size, modification time and inode: a file rewritten in any way gets another id (without reading it)."""
    st = os.stat(path)
    return f"{st.st_size}:{st.st_mtime_ns}:{st.st_ino}"


def bundle(store: Store, pack: Pack) -> Path:
    """The archive of ``pack`` in ``cache/``; built if missing."""
    if pack.fmt not in FORMATS:
        raise ValueError(f"unknown archive format {pack.fmt!r}")
    target = pack.path(store)
    with _lock:
        if target.exists():
            return target
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(target.name + ".tmp")
        if pack.fmt == "zip":
            with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED, compresslevel=1, allowZip64=True) as zf:
                for name, source, _ in pack.members:
                    with open(source, "rb") as src, zf.open(zipfile.ZipInfo.from_file(source, name), "w",
                                                            force_zip64=True) as dst:
                        while chunk := src.read(CHUNK):
                            dst.write(chunk)
        else:
            with tarfile.open(tmp, "w:gz", compresslevel=1) as tf:
                for name, source, _ in pack.members:
                    info = tf.gettarinfo(str(source), arcname=name)
                    info.mode, info.uid, info.gid, info.uname, info.gname = 0o644, 0, 0, "", ""
                    with open(source, "rb") as src:
                        tf.addfile(info, src)
        os.replace(tmp, target)
        return target


def forget(store: Store, kind: str, *folder: str) -> None:
    """Remove every cached archive of one resource (``forget(store, "datasets", owner, slug)``) on its delete."""
    with _lock:
        shutil.rmtree(inside(store.root / "cache", kind, *folder), ignore_errors=True)
