"""Wheel files: names, hashes, import names, and the stand-in wheels that represent the image."""

from __future__ import annotations

import base64
import hashlib
import os
import zipfile
from pathlib import Path
from typing import Mapping, Sequence

from packaging.tags import Tag
from packaging.utils import InvalidWheelFilename, canonicalize_name, parse_wheel_filename
from packaging.version import InvalidVersion, Version

from kagflow.errors import WheelsError

PURE_TAG = "py3-none-any"


def sha256_file(path: "str | os.PathLike[str]") -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def wheel_name_version(filename: str) -> tuple[str, str]:
    """(canonical name, version) of a wheel file name."""
    try:
        name, version, _build, _tags = parse_wheel_filename(Path(filename).name)
    except (InvalidWheelFilename, InvalidVersion) as exc:
        raise WheelsError(f"not a wheel file name: {filename}", context=str(exc)) from exc
    return str(name), str(version)


def wheel_tags(filename: str) -> frozenset[Tag]:
    return parse_wheel_filename(Path(filename).name)[3]


def is_pure_py3(filename: str) -> bool:
    """True for ``py3-none-any`` (also ``py2.py3-none-any``): runs on any Python 3 platform."""
    return any(t.interpreter == "py3" and t.abi == "none" and t.platform == "any" for t in wheel_tags(filename))


def top_level_names(path: "str | os.PathLike[str]") -> list[str]:
    """Importable top-level names a wheel installs (``top_level.txt``, else from its file list)."""
    names: set[str] = set()
    with zipfile.ZipFile(path) as z:
        members = z.namelist()
        top_txt = [m for m in members if m.endswith(".dist-info/top_level.txt") and m.count("/") == 1]
        if top_txt:
            text = z.read(top_txt[0]).decode("utf-8", "replace")
            names = {ln.strip().replace("/", ".") for ln in text.splitlines() if ln.strip()}
        else:
            for m in members:
                head = m.split("/", 1)[0]
                if head.endswith((".dist-info", ".data")) or head.startswith(("_", ".")):
                    continue
                if "/" in m:
                    names.add(head)
                elif m.endswith(".py"):
                    names.add(m[:-3])
                elif m.endswith(".so") or m.endswith(".pyd"):
                    names.add(m.split(".", 1)[0])
    return sorted(n for n in names if n and n.isidentifier() and not n.startswith("_"))


def _record_line(name: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{name},sha256={digest},{len(data)}"


def write_wheel(directory: "str | os.PathLike[str]", name: str, version: str, *, tag: str = PURE_TAG,
                requires: Sequence[str] = (), files: Mapping[str, "str | bytes"] | None = None,
                requires_python: str | None = None) -> Path:
    """Write a minimal valid wheel (METADATA, WHEEL, RECORD + ``files``); returns its path."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    dist_name = canonicalize_name(name).replace("-", "_")
    dist_info = f"{dist_name}-{version}.dist-info"
    meta = ["Metadata-Version: 2.1", f"Name: {name}", f"Version: {version}"]
    if requires_python:
        meta.append(f"Requires-Python: {requires_python}")
    meta += [f"Requires-Dist: {r}" for r in requires]
    contents: dict[str, bytes] = {}
    for fname, data in (files or {}).items():
        contents[fname] = data.encode() if isinstance(data, str) else data
    contents[f"{dist_info}/METADATA"] = ("\n".join(meta) + "\n").encode()
    contents[f"{dist_info}/WHEEL"] = (f"Wheel-Version: 1.0\nGenerator: kagflow\nRoot-Is-Purelib: true\n"
                                      f"Tag: {tag}\n").encode()
    record = [_record_line(n, d) for n, d in contents.items()] + [f"{dist_info}/RECORD,,"]
    contents[f"{dist_info}/RECORD"] = ("\n".join(record) + "\n").encode()
    path = directory / f"{dist_name}-{version}-{tag}.whl"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for fname, data in contents.items():
            z.writestr(zipfile.ZipInfo(fname, date_time=(2020, 1, 1, 0, 0, 0)), data)
    return path


def write_image_standins(directory: "str | os.PathLike[str]", installed: Mapping[str, str]) -> Path:
    """One empty, dependency-free ``py3-none-any`` wheel per package the image has.

    Given to pip as an extra ``--find-links`` directory, they make pip treat the image's packages
    as available at exactly the image's versions, without any index: what a ``--target`` dry run
    otherwise cannot see. They carry no dependencies because the image already satisfies its own.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    for name, version in installed.items():
        try:
            Version(version)
        except InvalidVersion:
            continue
        write_wheel(directory, name, version)
    return directory

