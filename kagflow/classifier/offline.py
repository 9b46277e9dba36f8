"""Installing the offline wheels dataset inside a kernel without internet. Stdlib only."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
from pathlib import Path

from .paths import input_root

# import name -> distribution name, for the error message's pip hint
RUNTIME_MODULES = {
    "torch": "torch", "transformers": "transformers", "peft": "peft", "bitsandbytes": "bitsandbytes",
    "accelerate": "accelerate", "sklearn": "scikit-learn", "pandas": "pandas", "numpy": "numpy",
    "matplotlib": "matplotlib",
}


def find_wheel_dirs(root: Path | None = None) -> list[Path]:
    """Folders under the input root that hold *.whl files."""
    root = Path(root) if root else input_root()
    if not root.is_dir():
        return []
    found = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        dirnames.sort()
        if any(f.endswith(".whl") for f in filenames):
            found.append(Path(dirpath))
    return found


def wheel_names(folder: Path) -> list[str]:
    """Distribution names of the wheels in ``folder`` (pip picks the file that fits this interpreter)."""
    return sorted({f.name.split("-")[0] for f in folder.glob("*.whl")})


def install_wheels(root: Path | None = None, *, run=subprocess.check_call) -> list[Path]:
    """``pip install --no-index --find-links DIR --no-deps`` every wheel of every mounted wheels folder."""
    folders = find_wheel_dirs(root)
    if not folders:
        print(f"no wheels dataset mounted under {Path(root) if root else input_root()}; skipping offline install")
        return []
    for folder in folders:
        cmd = [sys.executable, "-m", "pip", "install", "--no-index", f"--find-links={folder}", "--no-deps",
               *wheel_names(folder)]
        print(">>>", " ".join(cmd), flush=True)
        run(cmd)
    importlib.invalidate_caches()
    return folders


def require(modules=tuple(RUNTIME_MODULES)) -> None:
    """Import each module; raise ImportError naming the package to add to the wheels dataset."""
    for name in modules:
        try:
            importlib.import_module(name)
        except ImportError as exc:
            package = RUNTIME_MODULES.get(name, name)
            raise ImportError(
                f"{name} cannot be imported ({exc}): add the {package} wheel to the wheels dataset "
                f"(e.g. `pip download {package} -d wheels`) and attach it to the kernel"
            ) from exc
