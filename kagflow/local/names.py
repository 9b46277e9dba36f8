"""Safe names: what a request may call a file, and joining such names under a root.

Names come from requests (blob names, dataset file names, output names) and later become
paths in mounts, zips and downloads. A name is one path segment: no separators (including
unicode look-alikes such as U+2215 DIVISION SLASH or U+FF0F FULLWIDTH SOLIDUS), no NUL or
other control characters, not ``.``/``..``, not absolute.
"""

from __future__ import annotations

import os
import unicodedata
from pathlib import Path

from kagflow.local.protocol import ApiError

MAX_NAME = 255
# Slash and backslash look-alikes a filesystem, a zip tool or a later NFKC pass may treat as separators.
_SEPARATORS = set("/\\\u2215\u2044\u29f8\u29f5\u29f9\u2216\uff0f\uff3c\ufe68\u2571\u2572\u244a\u1735")


def check_name(name: object, *, what: str = "file name") -> str:
    """Return ``name`` if it is a safe single path segment, else raise a 400 :class:`ApiError`."""
    if not isinstance(name, str) or not name:
        raise ApiError(400, f"Invalid {what}: empty")
    problem = _problem(name)
    if problem is None:
        folded = unicodedata.normalize("NFKC", name)
        problem = _problem(folded) if folded != name else None
    if problem:
        raise ApiError(400, f"Invalid {what} {name!r}: {problem}")
    return name


def _problem(name: str) -> str | None:
    if len(name) > MAX_NAME:
        return f"longer than {MAX_NAME} characters"
    if name in (".", ".."):
        return "not a file name"
    for ch in name:
        if ch in _SEPARATORS:
            return "contains a path separator"
        if unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Co", "Cn"):
            return "contains a control or unassigned character"
    if name != name.strip():
        return "has leading or trailing whitespace"
    return None


def check_relpath(path: str, *, what: str = "file path") -> str:
    """A relative path of safe segments (``a/b.txt``); refuse absolute, ``..`` and empty segments."""
    if not isinstance(path, str) or not path or path.startswith("/"):
        raise ApiError(400, f"Invalid {what} {path!r}")
    for part in path.split("/"):
        check_name(part, what=what)
    return path


def within(root: Path, relative: str) -> Path:
    """``root/relative`` after checking it cannot leave ``root`` (symlinks resolved)."""
    check_relpath(relative)
    root_real = Path(os.path.realpath(root))
    target = Path(os.path.realpath(root_real / relative))
    if target != root_real and root_real not in target.parents:
        raise ApiError(400, f"Invalid file path {relative!r}: outside its folder")
    return target
