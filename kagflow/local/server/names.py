"""Safe names: what a request may call a file or an account, and joining such names under a root.

Names come from requests (blob names, dataset file names, output names) and later become
paths in mounts, zips and downloads. A name is one path segment: no separators (including
unicode look-alikes such as U+2215 DIVISION SLASH or U+FF0F FULLWIDTH SOLIDUS), no NUL or
other control characters, not ``.``/``..``, at most 255 bytes in UTF-8 (what ext4 and most
filesystems allow per component). A path (:func:`check_relpath`: a file in a folder, an archive
member) is such names joined by ``/``: never absolute, no drive letter, at most 1024 bytes.

Account and resource names (usernames, owners, dataset/kernel/model/instance slugs, competition
names) are checked once, at the edge (:func:`check_request_names`, and the server's auth), by
:func:`check_ident`: ASCII letters, digits, ``-``, ``_`` and ``.``, starting with a letter or digit (Kaggle's
model slugs hold dots: ``qwen-lm/qwen2.5``; a name that starts with a letter or digit is never ``.`` or ``..``).
Numbers from the wire (page tokens, version labels, header values) go through :func:`parse_count`.
"""

from __future__ import annotations

import os
import re
import unicodedata
from pathlib import Path

from kagflow.local.server.protocol import ApiError

MAX_NAME_BYTES = 255    # one path component, in UTF-8 bytes
MAX_PATH_BYTES = 1024   # a whole relative path (folders and name), in UTF-8 bytes
# Slash and backslash look-alikes a filesystem, a zip tool or a later NFKC pass may treat as separators.
_SEPARATORS = set("/\\\u2215\u2044\u29f8\u29f5\u29f9\u2216\uff0f\uff3c\ufe68\u2571\u2572\u244a\u1735")


def check_name(name: object, *, what: str = "file name") -> str:
    """Return ``name`` if it is a safe single path segment, else raise a 400 :class:`ApiError`."""
    if not isinstance(name, str) or not name:
        raise ApiError(400, f"Invalid {what}: empty")
    problem = _too_long(name, MAX_NAME_BYTES) or _problem(name)
    if problem is None:
        folded = unicodedata.normalize("NFKC", name)
        problem = _problem(folded) if folded != name else None
    if problem:
        raise ApiError(400, f"Invalid {what} {name!r}: {problem}")
    return name


def _too_long(text: str, limit: int) -> str | None:
    size = len(text.encode("utf-8", "surrogatepass"))
    return f"{size} bytes in UTF-8, more than {limit}" if size > limit else None


def _problem(name: str) -> str | None:
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
    """A relative path of safe segments (``a/b.txt``); refuse absolute paths, a drive letter (``C:/x``), ``.``,
    ``..`` and empty segments, backslashes and a path over :data:`MAX_PATH_BYTES`."""
    if not isinstance(path, str) or not path:
        raise ApiError(400, f"Invalid {what}: empty")
    first = path.split("/", 1)[0]
    problem = ("absolute paths are refused" if path.startswith(("/", "\\")) else
               "a drive letter is refused" if len(first) == 2 and first[1] == ":" and first[0].isascii()
               and first[0].isalpha() else _too_long(path, MAX_PATH_BYTES))
    if problem:
        raise ApiError(400, f"Invalid {what} {path!r}: {problem}")
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


IDENT_MAX = 100
_IDENT_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,%d}" % (IDENT_MAX - 1))
# kagglesdk request fields that name one account or one resource (each becomes a path segment somewhere).
IDENT_FIELDS = ("owner_slug", "user_name", "kernel_owner", "owner", "user", "dataset_slug", "kernel_slug",
                "model_slug", "instance_slug", "competition_name", "competition")
MAX_DIGITS = 18  # every count the server takes fits in a signed 64-bit integer


def check_ident(value: object, *, what: str = "name", code: int = 400) -> str:
    """``value`` if it is a safe account/slug name (letters, digits, ``-``, ``_``, ``.``), else an ApiError."""
    if not isinstance(value, str) or not _IDENT_RE.fullmatch(value):
        shown = repr(value)[:80] if isinstance(value, str) else type(value).__name__
        raise ApiError(code, f"Invalid {what} {shown}: use up to {IDENT_MAX} letters, digits, '-', '_' or '.', "
                             "starting with a letter or digit")
    return value


def check_request_names(request) -> None:
    """Refuse a parsed request whose account or slug fields are not :func:`check_ident` names (empty is fine)."""
    for field in IDENT_FIELDS:
        value = getattr(request, field, None) if hasattr(type(request), field) else None
        if isinstance(value, str) and value:
            check_ident(value, what=field.replace("_", " "))


def parse_count(text: object, *, what: str) -> int:
    """A non-negative decimal number from the wire (ASCII digits, at most 18), else a 400 ApiError."""
    if not isinstance(text, str) or not re.fullmatch(r"[0-9]{1,%d}" % MAX_DIGITS, text):
        shown = repr(text)[:40] + ("..." if isinstance(text, str) and len(text) > 30 else "")
        raise ApiError(400, f"Invalid {what} {shown}: expected a number of at most {MAX_DIGITS} digits")
    return int(text)


def inside(root: Path, *segments: str) -> Path:
    """``root/seg1/seg2/...`` for single-segment names only, checked to stay inside ``root``."""
    for segment in segments:
        check_name(segment, what="path segment")
    root_real = Path(os.path.realpath(root))
    target = Path(os.path.realpath(root_real.joinpath(*segments)))
    if root_real not in target.parents:
        raise ApiError(400, f"Invalid path {'/'.join(segments)!r}: outside {root_real.name}/")
    return root_real.joinpath(*segments)
