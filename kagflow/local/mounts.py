"""Lay out a kernel's inputs the way Kaggle mounts them under ``/kaggle/input``.

Both layouts are there (the classic one as relative symlinks into the newer one)::

    input/datasets/<owner>/<slug>/<file>                 input/<slug>            -> datasets/<owner>/<slug>
    input/models/<owner>/<model>/<fw>/<inst>/<version>/  input/<model>/<fw>/<inst>/<version> -> models/...
    input/competitions/<slug>/<public file>               input/<slug>            -> competitions/<slug>
    input/notebooks/<owner>/<slug>/<output file>          input/<slug>            -> notebooks/<owner>/<slug>

Files are hard links to the read-only blobs (no copy, even for a 5 GB model); where a hard
link is impossible they are copied. Classic names that collide keep the first source.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Iterable, Tuple

from kagflow.local.names import check_name


def place(src: Path, dst: Path) -> None:
    """Hard-link (or copy) one file into a mount."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)


def mount(input_root: Path, new_layout: Tuple[str, ...], classic: Tuple[str, ...],
          files: Iterable[Tuple[str, Path]]) -> Path:
    """Place ``files`` (``(relative name, source)``) at ``input/<new_layout>`` and link ``input/<classic>``."""
    for part in new_layout + classic:
        check_name(part, what="mount path segment")
    target = input_root.joinpath(*new_layout)
    target.mkdir(parents=True, exist_ok=True)
    for name, source in files:
        relative = Path(name)
        if relative.is_absolute() or ".." in relative.parts:
            continue
        place(Path(source), target / relative)
    link = input_root.joinpath(*classic)
    if not os.path.lexists(link):
        link.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(os.path.relpath(target, link.parent), link, target_is_directory=True)
    return target


def output_files(working: Path) -> list[Tuple[str, Path]]:
    """A run's output: regular files under ``working`` (symlinks and anything outside it are skipped)."""
    root = Path(os.path.realpath(working))
    out = []
    if not root.is_dir():
        return out
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not os.path.islink(os.path.join(dirpath, d)))
        for name in sorted(filenames):
            path = Path(dirpath) / name
            if path.is_symlink() or not path.is_file():
                continue
            out.append((path.relative_to(root).as_posix(), path))
    return out
