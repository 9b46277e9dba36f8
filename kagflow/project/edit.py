"""Edit kagflow.toml in place with tomlkit: every comment and the layout kept, written atomically."""

from __future__ import annotations

import os
from pathlib import Path


def edit_config(path: Path, change) -> None:
    """Apply ``change(document)`` to kagflow.toml with tomlkit, keeping every comment and the
    layout, and write it back atomically."""
    import tomlkit

    doc = tomlkit.parse(Path(path).read_text(encoding="utf-8"))
    change(doc)
    tmp = Path(path).with_suffix(".toml.tmp")
    tmp.write_text(tomlkit.dumps(doc), encoding="utf-8")
    os.replace(tmp, path)


def set_value(path: Path, table: str, key: str, value) -> None:
    """Set ``key = value`` in ``[table]`` of kagflow.toml (e.g. the pinned model versions)."""
    import tomlkit

    def change(doc) -> None:
        if table not in doc:
            doc[table] = tomlkit.table()
        doc[table][key] = value

    edit_config(path, change)
