"""The build cache: resolved wheel sets keyed by (requirements, target image), and the wheels.

Layout: ``<cache>/resolutions/<key>.json`` (the manifest entries of one resolution) and
``<cache>/wheels/<file>.whl``. A hit whose wheels are all present with the recorded sha256
means no pip resolution and no download: a rebuild needs no network and no index.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Optional, Sequence

from kagflow.rules.image import TargetImage
from kagflow.wheels.wheelfile import sha256_file

CACHE_FORMAT = 1


def cache_key(requirements: Sequence[str], image: TargetImage) -> str:
    material = {"format": CACHE_FORMAT, "requirements": list(requirements), "image": image.fingerprint()}
    return hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()[:32]


class WheelCache:
    def __init__(self, root: "str | os.PathLike[str]"):
        self.root = Path(root)
        self.wheels = self.root / "wheels"
        self.entries = self.root / "resolutions"

    def load(self, key: str) -> Optional[tuple[list[dict], list[str]]]:
        """(entries, marker-added requirements) for ``key`` if every wheel is still there, intact; else None."""
        path = self.entries / f"{key}.json"
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            entries, marker_added = data["packages"], list(data.get("marker_added", []))
        except (OSError, ValueError, KeyError, TypeError):
            return None
        for entry in entries:
            wheel = self.wheels / entry["filename"]
            if not wheel.is_file() or wheel.stat().st_size != entry["size"] or sha256_file(wheel) != entry["sha256"]:
                return None
        return entries, marker_added

    def store(self, key: str, entries: list[dict], *, marker_added: Sequence[str] = ()) -> None:
        self.entries.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.entries, prefix=f".{key}.")
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump({"format": CACHE_FORMAT, "packages": entries, "marker_added": list(marker_added)}, f, indent=1)
        os.replace(tmp, self.entries / f"{key}.json")

    def add(self, wheel: Path) -> Path:
        """Copy ``wheel`` into the cache (atomically) and return the cached path."""
        self.wheels.mkdir(parents=True, exist_ok=True)
        dest = self.wheels / wheel.name
        fd, tmp = tempfile.mkstemp(dir=self.wheels, prefix=f".{wheel.name}.")
        os.close(fd)
        shutil.copyfile(wheel, tmp)
        os.replace(tmp, dest)
        return dest

    def path(self, filename: str) -> Path:
        return self.wheels / filename
