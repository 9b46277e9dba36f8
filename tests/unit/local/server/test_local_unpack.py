"""Uploaded folder archives (`-r zip|tar`, or any top-level .zip/.tar): zip bombs and hostile member names are
refused with a 400 naming the archive, before (or while) anything is written, and leave nothing behind."""

from __future__ import annotations

import io
import struct
import tarfile
import zipfile
import zlib

import pytest
from requests.exceptions import HTTPError

from kagflow.local.server.protocol import ApiError
from kagflow.local.server.store import Store
from kagflow.local.server.unpack import UnpackLimits, unpack_uploads

from local_fixtures import *  # noqa: F401,F403
from local_fixtures import USER, snapshot, write_dataset

GIB = 1 << 30


def zip_of_zeros(path, unpacked: int = GIB, name: str = "zeros.bin") -> int:
    """A valid zip of one deflated member of ``unpacked`` zero bytes (1 GiB packs to about 1 MB), written without
    compressing 1 GiB: one MiB of zeros deflates to the same bytes after each full flush, so the stream repeats."""
    mib = bytes(1 << 20)
    deflate = zlib.compressobj(9, zlib.DEFLATED, -15)
    piece = deflate.compress(mib) + deflate.flush(zlib.Z_FULL_FLUSH)
    assert deflate.compress(mib) + deflate.flush(zlib.Z_FULL_FLUSH) == piece
    data = piece * (unpacked >> 20) + deflate.flush()
    crc = 0
    for _ in range(unpacked >> 20):
        crc = zlib.crc32(mib, crc)
    raw = name.encode()
    fields = struct.pack("<HHHHHIII", 20, 0, 8, 0, 0x21, crc, len(data), unpacked)
    local = b"PK\x03\x04" + fields + struct.pack("<HH", len(raw), 0) + raw
    central = (b"PK\x01\x02" + struct.pack("<H", 20) + fields + struct.pack("<HHHHHII", len(raw), 0, 0, 0, 0, 0, 0)
               + raw)
    end = b"PK\x05\x06" + struct.pack("<HHHHIIH", 0, 0, 1, 1, len(central), len(local) + len(data), 0)
    path.write_bytes(local + data + central + end)
    return path.stat().st_size


def test_a_zip_bomb_is_refused_fast_and_writes_nothing(server, api, tmp_path):
    folder = write_dataset(tmp_path / "bomb", "bomb-data", {})
    packed = zip_of_zeros(folder / "bomb.zip")
    assert packed < 1_100_000
    with zipfile.ZipFile(folder / "bomb.zip") as zf, zf.open("zeros.bin") as member:  # a real zip of 1 GiB
        assert zf.getinfo("zeros.bin").file_size == GIB and member.read(1 << 20) == bytes(1 << 20)
    with pytest.raises(HTTPError) as err:
        api.dataset_create_new(str(folder), quiet=True)
    message = err.value.response.json()["message"]
    assert err.value.response.status_code == 400 and "'bomb.zip'" in message and "100 times" in message, message
    assert api.dataset_list(user=USER) == []
    written = snapshot(server.data_dir)
    assert sum(written.values()) < packed + 200_000, written  # the uploaded zip itself, and no member
    assert not list((server.data_dir / "uploads").glob("*.part"))


def _store_with(tmp_path, name, data: bytes):
    store = Store(tmp_path / "data")
    part = store.root / "uploads" / "x.part"
    part.write_bytes(data)
    sha, size = store.ingest(part)
    return store, [(name, sha, size, "")]


def _zip(members: dict) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for member, data in members.items():
            zf.writestr(member, data)
    return buf.getvalue()


def _tar(members: dict) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for member, data in members.items():
            info = tarfile.TarInfo(member)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


@pytest.mark.parametrize("pack", [_zip, _tar])
def test_too_many_entries_are_refused_before_any_write(tmp_path, pack):
    store, files = _store_with(tmp_path, "many.zip" if pack is _zip else "many.tar",
                               pack({f"f{i}.txt": b"x" for i in range(4)}))
    before = snapshot(store.root)
    with pytest.raises(ApiError) as err:
        unpack_uploads(store, files, UnpackLimits(max_files=3))
    assert err.value.code == 400 and "more than 3 files" in err.value.message
    assert snapshot(store.root) == before
    assert [n for n, *_ in unpack_uploads(store, files, UnpackLimits(max_files=4))] == [
        f"many/f{i}.txt" for i in range(4)]


def test_the_ratio_applies_past_small_archives_and_the_disk_share_always(tmp_path):
    store, files = _store_with(tmp_path, "rows.zip", _zip({"rows.csv": b"1,2,3\n" * 100_000}))  # ~600 kB, ~300x
    assert unpack_uploads(store, files, UnpackLimits())[0][0] == "rows/rows.csv"  # small: the ratio waits
    with pytest.raises(ApiError) as err:
        unpack_uploads(store, files, UnpackLimits(small_bytes=0))
    assert "100 times its" in err.value.message
    with pytest.raises(ApiError) as err:
        unpack_uploads(store, files, UnpackLimits(disk_share=1e-12))
    assert "free on disk" in err.value.message


@pytest.mark.parametrize("member", ["/abs/path.csv", "../up.csv", "a/../../up.csv", "C:/windows.csv", "C:",
                                    "a\\..\\b.csv", "\\abs.csv", "a//b.csv", "./../x.csv", "é" * 128 + ".csv"])
def test_hostile_members_are_refused(server, api, tmp_path, member):
    folder = write_dataset(tmp_path / "evil", "evil-members", {"x.zip": _zip({"ok.csv": b"1", member: b"2"})})
    before = snapshot(server.data_dir)
    with pytest.raises(HTTPError) as err:
        api.dataset_create_new(str(folder), quiet=True)
    message = err.value.response.json()["message"]
    assert err.value.response.status_code == 400 and "member of x.zip" in message, message
    assert api.dataset_list(user=USER) == []
    after = snapshot(server.data_dir)
    assert {k for k in after if not k.startswith("blobs/")} == {k for k in before if not k.startswith("blobs/")}
    assert len(after) == len(before) + 1  # the uploaded x.zip, and no member of it


def test_tar_style_and_utf8_members_are_kept(server, api, tmp_path):
    name = "é" * 100 + ".csv"  # 204 bytes in UTF-8
    folder = write_dataset(tmp_path / "ok", "good-members", {"t.tar": _tar({"./a.csv": b"1", f"sub/{name}": b"2"})})
    api.dataset_create_new(str(folder), quiet=True)
    names = sorted(f.name for f in api.dataset_list_files(f"{USER}/good-members").files)
    assert names == ["t/a.csv", f"t/sub/{name}"]
