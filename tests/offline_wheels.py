"""Offline wheels for tests: the test environment's own installs of peft and bitsandbytes, packed back
into wheels, so a wheels dataset builds with no index (no test uses the network).

``offline_pip_env(folder)`` is the environment that points pip at them (``PIP_NO_INDEX``,
``PIP_FIND_LINKS``: pip merges the latter with a command's own ``--find-links``).
"""

from __future__ import annotations

import base64
import hashlib
import zipfile
from importlib import metadata
from pathlib import Path

OFFLINE_PACKAGES = ("peft", "bitsandbytes")  # kagflow.toml's [wheels] requirements, as installed here


def pack_installed(name: str, out_dir: Path) -> Path:
    """A wheel of the installed distribution ``name`` (its RECORD's files; byte-compiled files left out)."""
    dist = metadata.distribution(name)
    wheel_meta = dist.read_text("WHEEL") or ""
    tag = next(line.split(":", 1)[1].strip() for line in wheel_meta.splitlines() if line.startswith("Tag:"))
    stem = f"{dist.metadata['Name'].replace('-', '_')}-{dist.version}"
    path = Path(out_dir) / f"{stem}-{tag}.whl"
    if path.is_file():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    record = []
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for f in dist.files or []:
            rel = f.as_posix()
            if rel.endswith(".pyc") or "__pycache__" in rel or rel.startswith("..") or rel.endswith("/RECORD"):
                continue
            data = Path(f.locate()).read_bytes()
            z.writestr(rel, data)
            digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
            record.append(f"{rel},sha256={digest},{len(data)}")
        dist_info = next(f.as_posix().split("/")[0] for f in dist.files if ".dist-info/" in f.as_posix())
        record.append(f"{dist_info}/RECORD,,")
        z.writestr(f"{dist_info}/RECORD", "\n".join(record) + "\n")
    return path


def offline_wheelhouse(out_dir: Path) -> Path:
    for name in OFFLINE_PACKAGES:
        pack_installed(name, out_dir)
    return Path(out_dir)


def offline_pip_env(folder: Path) -> dict:
    return {"PIP_NO_INDEX": "1", "PIP_FIND_LINKS": str(folder)}
