"""`.kagflow/state.json`: what each step produced (versions, digests), so re-runs resume."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any


class State:
    """A small JSON document, saved atomically after every change."""

    def __init__(self, path: Path):
        self.path = Path(path)
        try:
            self.data: dict = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            self.data = {}
        except ValueError:
            broken = self.path.with_suffix(".json.broken")
            os.replace(self.path, broken)
            self.data = {}

    @classmethod
    def for_project(cls, root: Path, target_kind: str = "") -> "State":
        name = f"state-{target_kind}.json" if target_kind else "state.json"
        return cls(Path(root) / ".kagflow" / name)

    def get(self, *keys: str, default: Any = None) -> Any:
        node = self.data
        for key in keys:
            if not isinstance(node, dict) or key not in node:
                return default
            node = node[key]
        return node

    def set(self, *keys: str, value: Any) -> None:
        node = self.data
        for key in keys[:-1]:
            node = node.setdefault(key, {})
        node[keys[-1]] = value
        self.save()

    def delete(self, *keys: str) -> None:
        node = self.get(*keys[:-1])
        if isinstance(node, dict) and keys[-1] in node:
            del node[keys[-1]]
            self.save()

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".state.", dir=self.path.parent)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(self.data, f, indent=2, sort_keys=True)
        os.replace(tmp, self.path)
