"""Lay out a kernel's inputs the way Kaggle mounts them under ``/kaggle/input``.

Both layouts are there (the classic one as relative symlinks into the newer one)::

    input/datasets/<owner>/<slug>/<file>                 input/<slug>            -> datasets/<owner>/<slug>
    input/models/<owner>/<model>/<fw>/<inst>/<version>/  input/<model>/<fw>/<inst>/<version> -> models/...
    input/competitions/<slug>/<public file>               input/<slug>            -> competitions/<slug>
    input/notebooks/<owner>/<slug>/<output file>          input/<slug>            -> notebooks/<owner>/<slug>

Large files are hard links to the read-only blobs (no copy, even for a 5 GB model), small ones
copies, mode 0644 as on Kaggle (the sandbox mounts them read-only): a notebook's ``shutil.copy`` of one,
say ``sample_submission.csv``, stays writable for its unprivileged user. Classic names that collide keep the
first source.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Iterable, Tuple

from kagflow.local.server.names import check_name

LINK_ABOVE = 16 << 20  # smaller files are copied, so a notebook (even as root) cannot alter a stored blob


def place(src: Path, dst: Path) -> None:
    """Put one file into a mount: a copy if small, a hard link to the read-only blob if large."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    if Path(src).stat().st_size > LINK_ABOVE:
        try:
            os.link(src, dst)
            return
        except OSError:
            pass
    shutil.copyfile(src, dst)
    os.chmod(dst, 0o644)


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
