"""The Kaggle-shaped sandbox of a local kernel run, made with bubblewrap (``bwrap``).

Inside, a run sees the machine's system folders read-only, and Kaggle's folders::

    /kaggle/input     read-only: the run's inputs (see kagflow.local.mounts)
    /kaggle/working   its cwd; what it writes there is the run's output
    /kaggle/temp      scratch, kept with the run
    /kagflow          the runner's internals (notebook, result, kernelspec, the run's own site-packages)

``/tmp`` is empty, the folders in ``hide`` (the server's data folder, the project's ``.kagflow``) and
the Kaggle credentials are empty, and nothing outside those folders is writable. With
``enable_internet=False`` the run gets its own network namespace with loopback only, so no process
inside has a route out. ``--die-with-parent``: the sandbox ends with the runner.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
from pathlib import Path
from typing import Iterable, Optional

BWRAP = "bwrap"
KAGGLE_ROOT = Path("/kaggle")
INTERNAL = Path("/kagflow")
# Left out of the read-only view of "/": the sandbox makes its own /proc, /dev and /tmp; /kaggle and
# /kagflow are the sandbox's own.
OWN = {"proc", "dev", "tmp", "kaggle", "kagflow"}


@functools.lru_cache(maxsize=None)
def unavailable_reason() -> Optional[str]:
    """None when bubblewrap can make a sandbox here, else why not (one line)."""
    exe = shutil.which(BWRAP)
    if exe is None:
        return "bubblewrap (bwrap) is not installed; on Debian/Ubuntu: apt-get install bubblewrap"
    try:
        proc = subprocess.run([exe, "--die-with-parent", "--unshare-net", "--unshare-pid", "--ro-bind", "/", "/",
                               "--proc", "/proc", "--dev", "/dev", "true"],
                              stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError) as exc:
        return f"bubblewrap could not start: {exc}"
    if proc.returncode != 0:
        return f"bubblewrap cannot make a sandbox here: {proc.stderr.strip().splitlines()[-1:] or proc.returncode}"
    return None


def credential_paths() -> list[Path]:
    """Where the official client keeps credentials: never visible to a kernel."""
    home = Path.home()
    paths = [home / ".kaggle", home / ".config" / "kaggle"]
    if os.environ.get("KAGGLE_CONFIG_DIR"):
        paths.append(Path(os.environ["KAGGLE_CONFIG_DIR"]))
    return paths


def command(argv: list[str], *, input_dir: Path, working_dir: Path, temp_dir: Path, internal_dir: Path,
            log_file: Path, enable_internet: bool, hide: Iterable[Path] = (),
            expose: Iterable[Path] = ()) -> list[str]:
    """``argv`` wrapped in bwrap: run it with ``/kaggle/{input,working,temp}`` and ``/kagflow`` bound to
    the given host folders (``log_file`` at ``/kagflow/log.json``), everything else read-only or hidden.

    ``expose``: host folders the run needs read-only even where they lie under ``/tmp`` (the
    interpreters' environments and the code they import: a clone or a cache under ``/tmp``)."""
    args = [BWRAP, "--die-with-parent", "--unshare-pid", "--unshare-ipc"]
    if not enable_internet:
        args.append("--unshare-net")
    for entry in sorted(Path("/").iterdir()):
        if entry.name in OWN:
            continue
        if entry.is_symlink():
            args += ["--symlink", os.readlink(entry), str(entry)]
        elif entry.is_dir():
            args += ["--ro-bind", str(entry), str(entry)]
    args += ["--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp"]
    for path in sorted({Path(os.path.realpath(p)) for p in expose}):
        if path.is_dir() and Path("/tmp") in path.parents:
            args += ["--ro-bind", str(path), str(path)]
    for device in sorted(Path("/dev").glob("nvidia*")):  # GPUs, where there are some
        args += ["--dev-bind", str(device), str(device)]
    if not enable_internet and Path("/sys/class/net").is_dir():
        args += ["--tmpfs", "/sys/class/net"]  # the host's interfaces, listed by the read-only /sys
    for path in [*hide, *credential_paths()]:
        path = Path(os.path.realpath(path))
        if path.is_dir() and path != Path("/"):
            args += ["--tmpfs", str(path)]
        elif path.is_file():
            args += ["--ro-bind", "/dev/null", str(path)]
    args += ["--perms", "0755", "--dir", str(KAGGLE_ROOT),
             "--ro-bind", str(input_dir), str(KAGGLE_ROOT / "input"),
             "--bind", str(working_dir), str(KAGGLE_ROOT / "working"),
             "--bind", str(temp_dir), str(KAGGLE_ROOT / "temp"),
             "--bind", str(internal_dir), str(INTERNAL),
             "--bind", str(log_file), str(INTERNAL / "log.json"),
             "--remount-ro", "/", "--chdir", str(KAGGLE_ROOT / "working"), "--"]
    return args + list(argv)
