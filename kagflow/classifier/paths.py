"""Locating inputs under Kaggle's input root by search, whatever the mount layout.

Layouts handled: classic ``<root>/<slug>/...`` and ``<root>/<model>/<framework>/<instance>/<version>``,
and newer ``<root>/datasets/<owner>/<slug>``, ``<root>/models/<owner>/<model>/<framework>/<instance>/<version>``,
``<root>/competitions/<slug>``. Stdlib only: usable before any wheel is installed.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

INPUT_ROOT_ENV = "KAGFLOW_INPUT_ROOT"
WORKING_ROOT_ENV = "KAGFLOW_WORKING_ROOT"
BASE_MARKER = "config.json"
ADAPTER_MARKER = "adapter_config.json"


class InputNotFoundError(FileNotFoundError):
    """Nothing under the input root matched; the message names what was searched."""


def input_root() -> Path:
    """``$KAGFLOW_INPUT_ROOT`` or /kaggle/input."""
    return Path(os.environ.get(INPUT_ROOT_ENV, "/kaggle/input"))


def working_root() -> Path:
    """``$KAGFLOW_WORKING_ROOT`` or /kaggle/working."""
    return Path(os.environ.get(WORKING_ROOT_ENV, "/kaggle/working"))


def _child(parent: Path, name: str) -> Path | None:
    """``parent/name``, matching the name case-insensitively (mounts lowercase framework names)."""
    exact = parent / name
    if exact.is_dir():
        return exact
    if parent.is_dir():
        for child in parent.iterdir():
            if child.is_dir() and child.name.lower() == name.lower():
                return child
    return None


def _descend(start: Path, parts) -> Path | None:
    here = start
    for part in parts:
        here = _child(here, part)
        if here is None:
            return None
    return here


def _natural_key(path: Path):
    return [(0, int(t), "") if t.isdigit() else (1, 0, t) for t in re.split(r"(\d+)", str(path))]


def _walk_for(start: Path, marker: str, exclude: str | None = None) -> list[Path]:
    found = []
    for dirpath, dirnames, filenames in os.walk(start, followlinks=True):
        dirnames.sort()
        if marker in filenames and not (exclude and exclude in filenames):
            found.append(Path(dirpath))
    return found


def _latest(found: list[Path]) -> Path:
    """The shallowest match; among equals, the highest version number."""
    depth = min(len(p.parts) for p in found)
    return max((p for p in found if len(p.parts) == depth), key=_natural_key)


def find_competition_dir(slug: str, root: Path | None = None) -> Path:
    """The folder holding the competition's test.csv."""
    root = Path(root) if root else input_root()
    searched = [root / "competitions" / slug, root / slug]
    for mount in searched:
        found = _walk_for(mount, "test.csv") if mount.is_dir() else []
        if found:
            return _latest(found)
    anywhere = [p for p in _walk_for(root, "test.csv") if slug in p.parts]
    if anywhere:
        return _latest(anywhere)
    raise InputNotFoundError(
        f"competition {slug!r}: no test.csv found; searched {', '.join(map(str, searched))} "
        f"and every folder named {slug!r} under {root} (set ${INPUT_ROOT_ENV} to change the root)"
    )


def model_mounts(ref: str, root: Path) -> list[Path]:
    """Candidate mount folders for a model reference: a handle ``owner/model[/framework/instance/version]``,
    an HF-style id ``owner/model``, or a bare model or dataset slug."""
    parts = [p for p in str(ref).strip("/").split("/") if p]
    owner, rest = (parts[0], parts[1:]) if len(parts) > 1 else (None, parts)
    candidates = []
    if owner:
        candidates += [root / "models" / owner, root / "datasets" / owner]
    candidates += [root]
    candidates += sorted((root / "models").glob("*")) + sorted((root / "datasets").glob("*"))
    mounts, seen = [], set()
    for start in candidates:
        for depth in range(len(rest), 0, -1):  # the deepest existing folder of the handle
            hit = _descend(start, rest[:depth])
            if hit is not None and hit not in seen:
                seen.add(hit)
                mounts.append(hit)
                break
    return mounts


def find_model_dir(ref, *, marker: str = BASE_MARKER, root: Path | None = None) -> Path:
    """The folder with ``marker`` (config.json: base; adapter_config.json: adapter) for ``ref``.

    ``ref`` may be an existing folder, or a Kaggle model handle / slug searched under the input root;
    an empty ``ref`` searches the whole input root.
    """
    exclude = ADAPTER_MARKER if marker == BASE_MARKER else None
    if ref and Path(str(ref)).is_dir():
        found = _walk_for(Path(str(ref)), marker, exclude)
        if found:
            return _latest(found)
        raise InputNotFoundError(f"{ref}: no {marker} in it or below it")
    root = Path(root) if root else input_root()
    mounts = model_mounts(ref, root) if ref else [root]
    for mount in mounts:
        found = _walk_for(mount, marker, exclude)
        if found:
            return _latest(found)
    searched = ", ".join(map(str, mounts)) or f"nothing under {root} matched the name"
    raise InputNotFoundError(
        f"model {ref!r}: no folder with {marker} found; searched {searched} "
        f"(attach the model to the kernel, or set ${INPUT_ROOT_ENV} to change the root {root})"
    )


def resolve_base_model(source: str, hf_id: str, *, root: Path | None = None, allow_hub: bool = False):
    """The base model's folder: the mounted Kaggle model ``source``, else a mount matching ``hf_id``;
    with ``allow_hub``, else ``hf_id`` itself for ``from_pretrained`` to download."""
    errors = []
    for ref in (source, hf_id):
        if not ref:
            continue
        try:
            return find_model_dir(ref, marker=BASE_MARKER, root=root)
        except InputNotFoundError as exc:
            errors.append(str(exc))
    if allow_hub and re.fullmatch(r"[\w.-]+/[\w.-]+", hf_id or ""):
        print(f"{hf_id}: not mounted; loading it from the Hugging Face Hub")
        return hf_id
    raise InputNotFoundError("base model not found: " + "; ".join(errors or ["no source or HF id given"])
                             + "; attach the base model to the kernel, or set allow_hub = True with internet on")


def find_dataset_file(ref, root: Path | None = None) -> Path:
    """A file of a mounted dataset, ``owner/slug/path/in/dataset.csv`` (``[train] extra_train_files``), under
    ``<root>/datasets/owner/slug`` or ``<root>/slug``; a path that exists as given is itself."""
    if Path(ref).is_file():
        return Path(ref)
    root = Path(root) if root else input_root()
    parts = [p for p in str(ref).strip("/").split("/") if p]
    if len(parts) < 3:
        raise InputNotFoundError(f"{ref!r}: write a dataset file as owner/slug/file.csv")
    owner, slug, rest = parts[0], parts[1], parts[2:]
    searched = [root / "datasets" / owner / slug, root / slug]
    for mount in searched:
        if mount.joinpath(*rest).is_file():
            return mount.joinpath(*rest)
    raise InputNotFoundError(f"dataset file {ref!r}: not found in {', '.join(map(str, searched))}: add dataset "
                             f"{owner}/{slug} to the train kernel's sources (kagflow does for [train] "
                             "extra_train_files) and check the file's path in it")
