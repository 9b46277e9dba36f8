"""What one kernel run may use, with Kaggle's figures by default: session time, memory, processes, file size and
the disk of ``/kaggle/working``.

:class:`Limits` is the setting (``Settings.kernel_limits`` of a local server; ``kagflow kernel run --local`` uses
the defaults). :meth:`Limits.enforce` applies them to one run (:class:`Enforced`):

- memory and processes (threads count) through a cgroup of the run's own where the server may make one (root, with
  cgroup v1 ``memory``/``pids`` controllers, or cgroup v2 with both delegated); elsewhere as rlimits of each process
  (``RLIMIT_DATA``, and ``RLIMIT_NPROC``, which counts the kernel user's processes machine-wide);
- file size as ``RLIMIT_FSIZE`` (a write past it fails with ``OSError: [Errno 27] File too large``);
- ``/kaggle/working`` by a watcher (:func:`disk_usage`, polled by the runner) that ends the run when it holds more;
- the session by the runner's clock: a requested time limit above ``session_s`` is capped (:meth:`Limits.session`).

The run's log starts with one line saying which were applied and how (:meth:`Enforced.describe`).
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

CGROUP_ROOT = Path("/sys/fs/cgroup")
_RUNS = itertools.count(1)
# Runs first in the run's process (as the server's user, before any privilege drop): enter the cgroups, lower
# the rlimits, then exec the sandbox. argv: the JSON plan, then the command.
ENTER = ("import json, os, resource, sys\n"
         "plan = json.loads(sys.argv[1])\n"
         "for group in plan['cgroups']:\n"
         "    with open(os.path.join(group, 'cgroup.procs'), 'w') as f:\n"
         "        f.write(str(os.getpid()))\n"
         "for name, value in plan['rlimits'].items():\n"
         "    resource.setrlimit(getattr(resource, name), (value, value))\n"
         "os.execvp(sys.argv[2], sys.argv[2:])\n")


@dataclass(frozen=True)
class Limits:
    """One kernel run's limits (None: unlimited)."""

    session_s: float = 12 * 3600              # Kaggle's session limit: a longer sessionTimeoutSeconds is capped
    memory_bytes: Optional[int] = 30 << 30    # Kaggle: about 30 GB of RAM
    pids: Optional[int] = 4096                # processes and threads of the run
    file_bytes: Optional[int] = 20 << 30      # the largest file the run may write
    working_bytes: Optional[int] = 20 << 30   # /kaggle/working (Kaggle: 20 GB of output)

    def session(self, requested: float) -> tuple[float, str]:
        """The time limit a run gets for ``requested`` seconds, and the log line when it was capped."""
        if requested <= self.session_s:
            return requested, ""
        return self.session_s, (f"kagflow: the requested session timeout of {requested:g} s is above the session "
                                f"limit of {_hours(self.session_s)}; this run is capped at {self.session_s:g} s\n")

    def enforce(self) -> "Enforced":
        """Set up the cgroups of one run (where this machine allows) and the rlimits of its processes."""
        groups = _cgroups(f"kagflow-{os.getpid()}-{next(_RUNS)}", self)
        rlimits = {}
        if self.file_bytes:
            rlimits["RLIMIT_FSIZE"] = self.file_bytes
        if self.memory_bytes and "memory" not in groups:
            rlimits["RLIMIT_DATA"] = self.memory_bytes
        if self.pids and "pids" not in groups:
            rlimits["RLIMIT_NPROC"] = self.pids
        return Enforced(self, groups, rlimits)


@dataclass
class Enforced:
    """The limits of one run: its cgroups (controller -> folder) and the rlimits its processes start with."""

    limits: Limits
    groups: dict
    rlimits: dict

    def prefix(self) -> list[str]:
        """The command that enters the cgroups and sets the rlimits before exec'ing the run."""
        plan = {"cgroups": sorted({str(g) for g in self.groups.values()}), "rlimits": self.rlimits}
        return [sys.executable, "-I", "-S", "-c", ENTER, json.dumps(plan)]

    def describe(self, timeout: float) -> str:
        """One log line: each limit and how it is applied."""
        lim = self.limits

        def how(value, controller, rlimit):
            if not value:
                return "unlimited"
            return f"{_size(value) if controller == 'memory' else value} (" + (
                "cgroup" if controller in self.groups else f"{rlimit}, per process") + ")"
        parts = [f"memory {how(lim.memory_bytes, 'memory', 'RLIMIT_DATA')}",
                 f"processes {how(lim.pids, 'pids', 'RLIMIT_NPROC')}",
                 f"file size {_size(lim.file_bytes) if lim.file_bytes else 'unlimited'}",
                 f"/kaggle/working {_size(lim.working_bytes) if lim.working_bytes else 'unlimited'}",
                 f"session {_hours(timeout)}"]
        return "kagflow: this run's limits: " + ", ".join(parts) + "\n"

    def reason(self, failure: str) -> str:
        """The failure of an ERROR run, with the limit that ended it where one did (Kaggle-like words)."""
        lim = self.limits
        if _count(self.groups.get("memory"), "memory.events", "oom_kill") or \
                _count(self.groups.get("memory"), "memory.oom_control", "oom_kill") or "MemoryError" in failure:
            return (f"Your notebook tried to allocate more memory than is available: the kernel's limit is "
                    f"{_size(lim.memory_bytes)} ({failure})")
        if _count(self.groups.get("pids"), "pids.events", "max") or (
                "pids" not in self.groups and "Resource temporarily unavailable" in failure):
            return f"The kernel reached its limit of {lim.pids} processes and threads ({failure})"
        if "File too large" in failure and lim.file_bytes:
            return f"A file exceeded the kernel's file size limit of {_size(lim.file_bytes)} ({failure})"
        return failure

    def close(self) -> None:
        """Kill what is left in the run's cgroups, then remove them."""
        for group in self.groups.values():
            for _ in range(50):
                pids = _procs(group)
                if not pids:
                    break
                for pid in pids:
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                time.sleep(0.05)
            try:
                os.rmdir(group)
            except OSError:
                pass
        self.groups = {}


def working_exceeded(working: Path, limit: Optional[int]) -> str:
    """The ERROR message when ``working`` holds more than ``limit`` bytes, else ``""``."""
    if not limit:
        return ""
    used = disk_usage(working)
    if used <= limit:
        return ""
    return (f"Disk limit exceeded: /kaggle/working holds {_size(used)}, more than its limit of {_size(limit)} "
            "(Kaggle keeps at most 20 GB of a notebook's output)")


def disk_usage(folder: Path) -> int:
    """Bytes of disk the files under ``folder`` use (symlinks not followed)."""
    total = 0
    for dirpath, dirnames, filenames in os.walk(folder):
        for name in filenames:
            try:
                total += os.lstat(os.path.join(dirpath, name)).st_blocks * 512
            except OSError:
                pass
    return total


# ---------------------------------------------------------------------- cgroups


def _cgroups(name: str, limits: Limits) -> dict:
    """``{"memory": folder, "pids": folder}`` made for one run where this machine lets the server (root) do it."""
    wanted = {c: v for c, v in (("memory", limits.memory_bytes), ("pids", limits.pids)) if v}
    if not wanted or os.geteuid() != 0:
        return {}
    made = {}
    v2 = _v2_parent()
    for controller, value in wanted.items():
        parent = _v1_parent(controller) or v2
        if parent is None:
            continue
        group = parent / name
        try:
            group.mkdir(exist_ok=True)
            if controller == "memory":
                limit_file = "memory.max" if parent == v2 else "memory.limit_in_bytes"
                (group / limit_file).write_text(str(value))
                for swap in ("memory.swap.max", "memory.memsw.limit_in_bytes"):  # no swapping past it
                    if (group / swap).exists():
                        (group / swap).write_text("0" if swap == "memory.swap.max" else str(value))
            else:
                (group / "pids.max").write_text(str(value))
        except OSError:
            try:
                group.rmdir()
            except OSError:
                pass
            continue
        made[controller] = group
    return made


def _own_paths() -> dict:
    """This process's cgroup path per controller (``""``: the cgroup v2 one)."""
    out = {}
    try:
        for line in Path("/proc/self/cgroup").read_text().splitlines():
            _, controllers, path = line.split(":", 2)
            for c in controllers.split(","):
                out[c] = path
    except (OSError, ValueError):
        pass
    return out


def _v1_parent(controller: str) -> Optional[Path]:
    mount = CGROUP_ROOT / controller
    path = _own_paths().get(controller)
    if path is None or not (mount / "cgroup.procs").is_file():
        return None
    parent = mount / path.lstrip("/")
    return parent if os.access(parent, os.W_OK) else None


def _v2_parent() -> Optional[Path]:
    """The nearest cgroup v2 ancestor of this process with memory and pids delegated to its children."""
    mount = next((m for m in (CGROUP_ROOT, CGROUP_ROOT / "unified") if (m / "cgroup.controllers").is_file()), None)
    path = _own_paths().get("")
    if mount is None or path is None:
        return None
    own = mount / path.lstrip("/")
    for candidate in [*own.parents]:
        if mount not in (candidate, *candidate.parents):
            break
        if _delegated(candidate):
            return candidate
    try:  # the hierarchy's root may delegate them on request (it is exempt from the no-internal-process rule)
        (mount / "cgroup.subtree_control").write_text("+memory +pids")
    except OSError:
        return None
    return mount if _delegated(mount) else None


def _delegated(group: Path) -> bool:
    try:
        return {"memory", "pids"} <= set((group / "cgroup.subtree_control").read_text().split()) and \
            os.access(group, os.W_OK)
    except OSError:
        return False


def _count(group: Optional[Path], file: str, key: str) -> int:
    if group is None:
        return 0
    try:
        for line in (group / file).read_text().splitlines():
            name, _, value = line.partition(" ")
            if name == key:
                return int(value)
    except (OSError, ValueError):
        pass
    return 0


def _procs(group: Path) -> list[int]:
    try:
        return [int(p) for p in (group / "cgroup.procs").read_text().split()]
    except (OSError, ValueError):
        return []


def _size(n: Optional[int]) -> str:
    if n is None:
        return "unlimited"
    for unit, shift in (("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if n >= 1 << shift:
            return f"{n / (1 << shift):.3g} {unit}"
    return f"{n} bytes"


def _hours(seconds: float) -> str:
    return f"{seconds / 3600:g} h" if seconds >= 3600 else f"{seconds:g} s"

