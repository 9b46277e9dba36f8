"""Uploaded folder archives (``-r zip|tar``: ``sub.zip``/``sub.tar``) unpacked back into folders, as Kaggle does,
within :class:`UnpackLimits` so a zip bomb is refused before it fills the disk.

Members are staged in ``uploads/`` and become blobs only once the whole archive is in: a refused or broken
archive leaves nothing behind.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import shutil
import struct
import tarfile
import zipfile
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from kagflow.local.server.names import check_relpath
from kagflow.local.server.protocol import ApiError
from kagflow.local.server.store import CHUNK, Store

UNPACKED = (".zip", ".tar")  # what `kaggle datasets create/version -r zip|tar` uploads a sub-folder as
MAX_BYTES = 200 << 30  # Kaggle's largest dataset or model (and so the largest upload)


@dataclass(frozen=True)
class UnpackLimits:
    """How far an uploaded archive may unpack (zip bombs are refused): its members' bytes at most ``ratio`` times
    the archive's size (once past ``small_bytes``: a small archive of a sparse file is fine), at most ``disk_share``
    of the data dir's free disk and at most ``max_bytes``; at most ``max_files`` entries."""
    ratio: float = 100.0
    small_bytes: int = 64 << 20
    disk_share: float = 0.5
    max_bytes: int = MAX_BYTES
    max_files: int = 100_000

    def budget(self, store: Store, packed: int) -> "Budget":
        free = shutil.disk_usage(store.root).free
        return min(Budget(int(self.disk_share * free), f"{self.disk_share:g} of the {free} bytes free on disk"),
                   Budget(self.max_bytes, "the largest a dataset or model may be"),
                   Budget(max(int(self.ratio * packed), self.small_bytes), f"{self.ratio:g} times its {packed} bytes"))


@dataclass(frozen=True, order=True)
class Budget:
    """The most bytes one archive may unpack to, and the limit that sets it."""
    bytes: int
    why: str

    def check(self, name: str, total: int) -> None:
        if total > self.bytes:
            raise ApiError(400, f"Refused {name!r}: it unpacks to more than {self.bytes} bytes ({self.why}); "
                                "upload files this large or this compressible as they are, not in an archive")


def unpack_uploads(store: Store, files: list, limits: UnpackLimits) -> list:
    """Kaggle unpacks an uploaded ``sub.zip`` / ``sub.tar`` back into the folder ``sub/``: replace each such file of
    ``[(name, sha256, size, description)]`` by its members, named ``sub/<member>`` (each member stored as a blob).
    Members that are links, devices, absolute, with a drive letter or with ``..`` are refused (400), as are archives
    past ``limits``: their declared sizes and entry count are checked before anything is written, the bytes really
    inflated while writing; a refused archive leaves nothing behind."""
    out = []
    for name, sha, size, desc in files:
        stem = next((name[:-len(ext)] for ext in UNPACKED if name.lower().endswith(ext) and "/" not in name), None)
        if stem is None:
            out.append((name, sha, size, desc))
            continue
        path = store.blob_path(sha)
        try:
            members = _unpack(store, path, name, limits.budget(store, path.stat().st_size), limits.max_files)
        except (zipfile.BadZipFile, tarfile.TarError, EOFError, OSError, struct.error) as exc:
            raise ApiError(400, f"Could not unpack {name!r}: {exc}") from None
        out.extend((f"{stem}/{member}", msha, msize, desc) for member, msha, msize in members)
    return out


def _unpack(store: Store, path: Path, name: str, budget: Budget, max_files: int) -> list:
    """``[(member, sha256, size)]`` of an archive's regular files, staged in ``uploads/`` and stored as blobs only
    once every member is in (a refusal or a broken archive removes what was staged)."""
    staged, total = [], 0
    try:
        with (_zip_entries if name.lower().endswith(".zip") else _tar_entries)(path, name, max_files) as entries:
            budget.check(name, sum(size for _, size, _ in entries))  # what the headers declare, before any write
            for member, size, open_member in entries:
                part = store.root / "uploads" / f"copy-{secrets.token_hex(8)}.part"
                digest, got = hashlib.sha256(), 0
                staged.append((member, part, digest))
                with open_member() as stream, open(part, "wb") as dst:
                    while chunk := stream.read(CHUNK):  # what really inflates: never more than declared, or budget
                        got, total = got + len(chunk), total + len(chunk)
                        if got > size:
                            raise ApiError(400, f"Refused {name!r}: {member!r} holds more than the {size} bytes "
                                                "its header declares")
                        budget.check(name, total)
                        digest.update(chunk)
                        dst.write(chunk)
    except BaseException:
        for _, part, _ in staged:
            part.unlink(missing_ok=True)
        raise
    return [(member, *store.ingest(part, digest.hexdigest())) for member, part, digest in staged]


def _member_name(name: str, member: str) -> str:
    return check_relpath(member.removeprefix("./"), what=f"member of {name}")  # `tar` writes ./a.csv


def _too_many(name: str, max_files: int) -> ApiError:
    return ApiError(400, f"Refused {name!r}: it holds more than {max_files} files and folders")


@contextmanager
def _zip_entries(path: Path, name: str, max_files: int):
    """``[(member, declared size, open)]`` of a zip's regular files; the entry count is checked on the central
    directory itself before :mod:`zipfile` reads every entry into memory."""
    _count_zip_entries(path, name, max_files)
    with zipfile.ZipFile(path) as zf:
        entries = []
        for info in zf.infolist():
            if info.is_dir():
                continue
            if (info.external_attr >> 16) & 0o170000 not in (0, 0o100000):  # a symlink or special file
                raise ApiError(400, f"{name!r} holds {info.filename!r}, which is not a regular file")
            entries.append((_member_name(name, info.filename), info.file_size, partial(zf.open, info)))
        yield entries


def _count_zip_entries(path: Path, name: str, max_files: int) -> None:
    """Walk the central directory's fixed headers (46 bytes each, then name, extra field and comment) as zipfile
    finds it: the end record (or the zip64 one just before its locator) gives its size and where it ends."""
    with open(path, "rb") as f:
        size = f.seek(0, os.SEEK_END)
        tail_at = max(0, size - 22 - 0xFFFF)
        f.seek(tail_at)
        tail = f.read()
        at = tail.rfind(b"PK\x05\x06")
        if at < 0 or len(tail) - at < 22:
            raise zipfile.BadZipFile("File is not a zip file")
        cd_size, cd_end = struct.unpack_from("<I", tail, at + 12)[0], tail_at + at
        if at >= 20 and tail[at - 20:at - 16] == b"PK\x06\x07":  # zip64: its end record precedes the locator
            cd_end -= 20 + 56
            f.seek(cd_end)
            record = f.read(56)
            if len(record) < 56 or record[:4] != b"PK\x06\x06":
                raise zipfile.BadZipFile("Corrupt zip64 end of central directory record")
            cd_size = struct.unpack_from("<Q", record, 40)[0]
        if cd_size > cd_end:
            raise zipfile.BadZipFile("Corrupt central directory size")
        f.seek(cd_end - cd_size)
        count, left = 0, cd_size
        while left >= 46:
            head = f.read(46)
            if len(head) < 46 or head[:4] != b"PK\x01\x02":
                break  # zipfile refuses it as it parses
            count += 1
            if count > max_files:
                raise _too_many(name, max_files)
            skip = sum(struct.unpack_from("<HHH", head, 28))
            f.seek(skip, os.SEEK_CUR)
            left -= 46 + skip


@contextmanager
def _tar_entries(path: Path, name: str, max_files: int):
    """``[(member, size, open)]`` of an (uncompressed) tar's regular files, counting headers as they are read."""
    with tarfile.open(path, "r:") as tf:
        entries = []
        for count, info in enumerate(tf, 1):
            if count > max_files:
                raise _too_many(name, max_files)
            if info.isdir():
                continue
            if not info.isfile():
                raise ApiError(400, f"{name!r} holds {info.name!r}, which is not a regular file")
            entries.append((_member_name(name, info.name), info.size, partial(tf.extractfile, info)))
        yield entries
