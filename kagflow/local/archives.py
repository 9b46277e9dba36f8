"""Zip and tar.gz bundles of a version's files, built once into ``cache/`` and served from disk.

Built from the blob files in chunks (no file is read into memory) under a lock, written to a
temporary name and renamed, so a reader never sees half an archive.
"""

from __future__ import annotations

import os
import tarfile
import threading
import zipfile
from pathlib import Path
from typing import Iterable, Tuple

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
