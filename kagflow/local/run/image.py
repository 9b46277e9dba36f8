"""The local Kaggle's image: the Python environment its kernels run in, shaped like Kaggle's GPU image.

Built from the shipped snapshot of Kaggle's GPU image (``kagflow/rules/data/kaggle-gpu-image.json``): the
versions the image has for what kagflow's notebooks import (:data:`KERNEL_PACKAGES`, their
dependencies constrained to the image's versions too), torch's CPU build where there is no NVIDIA
GPU, and nothing more. What Kaggle's image lacks (bitsandbytes, the classifier) is not there, so a
kernel gets it only from its wheels dataset, as on Kaggle.

It is a virtualenv of this machine's Python, built once per spec into
``<cache>/<digest>/`` (``$KAGFLOW_IMAGE_CACHE``, else ``~/.cache/kagflow/images``) and reused after.
Where a pinned version cannot be had here, the nearest available one is used; every difference from
Kaggle's image (Python, torch build, substituted versions) is recorded in the image's
``kagflow-local-image.json`` and printed when it is built. The build shows its progress on stderr (a
``kagflow.progress.Watch``: its phase, pip's packages collected, then installed).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Optional

from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from kagflow.errors import WheelsError
from kagflow.progress import Watch
from kagflow.rules.image import DEFAULT_IMAGE, TargetImage, image_from_probe_output, load_image, probe_notebook_source

FORMAT = "kagflow-local-image/1"
RECORD = "kagflow-local-image.json"
PROBE = "image-probe.json"
CACHE_ENV = "KAGFLOW_IMAGE_CACHE"
# What the notebooks import, the Jupyter kernel nbclient starts, and the pip the install cell runs.
KERNEL_PACKAGES = ("torch", "transformers", "accelerate", "peft", "numpy", "pandas", "scikit-learn",
                   "matplotlib", "ipykernel", "pip")
CPU_TORCH = "2.13.0"  # the CPU build (Makefile's TORCH pin): an unpinned torch is a multi-GB CUDA download
# Left free when constraining dependencies to the image's versions: the torch build differs from the
# image's (its own pins), and packaging tools are not what a notebook imports.
UNCONSTRAINED = re.compile(r"torch|torchvision|torchaudio|triton|nvidia-.*|setuptools|wheel|pip")


@dataclass(frozen=True)
class ImageSpec:
    """What the image is built from; its digest names the cache folder."""

    target: str                    # the snapshot's name ("kaggle-gpu")
    python: str                    # this interpreter's "3.11" (the snapshot's may differ: see notes)
    pins: tuple[str, ...]          # "name==version" of KERNEL_PACKAGES
    constraints: tuple[str, ...]   # "name==version" of the snapshot's other packages

    def digest(self) -> str:
        return hashlib.sha256(json.dumps({"format": FORMAT, **asdict(self)}, sort_keys=True).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class KernelImage:
    path: Path
    spec: ImageSpec
    notes: tuple[str, ...]         # how it differs from the snapshot
    build_seconds: float           # 0.0 when it was already built

    @property
    def python(self) -> str:
        return str(self.path / "bin" / "python")

    def target(self) -> TargetImage:
        """This image as a wheels target: its tags and installed versions, as recorded in it."""
        return image_from_probe_output(self.path / PROBE, name="local-kaggle")


def has_gpu() -> bool:
    return shutil.which("nvidia-smi") is not None


def spec_for(target: TargetImage, *, gpu: Optional[bool] = None) -> ImageSpec:
    gpu = has_gpu() if gpu is None else gpu
    pins = []
    for name in KERNEL_PACKAGES:
        version = target.has(name)
        if name == "torch" and not gpu:
            version = CPU_TORCH
        if version:
            pins.append(f"{name}=={_public(version)}")
    pinned = {canonicalize_name(p.split("==")[0]) for p in pins}
    constraints = tuple(line for line in target.constraints()
                        if line.split("==")[0] not in pinned and not UNCONSTRAINED.fullmatch(line.split("==")[0]))
    return ImageSpec(target.name, f"{sys.version_info.major}.{sys.version_info.minor}", tuple(pins), constraints)


def cache_root() -> Path:
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "kagflow" / "images"


def kernel_image(target: Optional[TargetImage] = None, *, say: Callable[[str], None] = print) -> KernelImage:
    """The built image for ``target`` (default: the shipped snapshot of Kaggle's GPU image), built if missing."""
    target = target or load_image(DEFAULT_IMAGE)
    spec = spec_for(target)
    root = cache_root()
    root.mkdir(parents=True, exist_ok=True)
    path = root / spec.digest()
    with open(root / f"{spec.digest()}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one build per spec, even across processes
        if (path / RECORD).is_file():
            record = json.loads((path / RECORD).read_text())
            return KernelImage(path, spec, tuple(record.get("notes", ())), 0.0)
        return _build(path, spec, target, say)


def kernel_python() -> str:
    """The interpreter local kernels run on."""
    return kernel_image().python


class PipProgress:
    """``pip install``'s output read as progress on a Watch: each package collected (downloaded or from pip's
    cache), then the install of all of them, then how many were installed."""

    COLLECTING = re.compile(r"Collecting (\S+)")
    INSTALLING = re.compile(r"Installing collected packages: (.+)")
    INSTALLED = re.compile(r"Successfully installed (.+)")

    def __init__(self, watch: Watch):
        self.watch, self.collected = watch, 0

    def __call__(self, line: str) -> None:
        line = line.strip()
        if found := self.COLLECTING.match(line):
            self.collected += 1
            self.watch.figures(self.collected, None, f"{self.collected} package(s) collected, the last {found[1]}")
        elif found := self.INSTALLING.match(line):
            count = len(found[1].split(", "))
            self.watch.figures(0, count, f"installing {count} package(s)")
        elif found := self.INSTALLED.match(line):
            count = len(found[1].split())
            self.watch.figures(count, count, f"{count} package(s) installed")


def _build(path: Path, spec: ImageSpec, target: TargetImage, say: Callable[[str], None]) -> KernelImage:
    say(f"kagflow: building the local Kaggle image {path.name} ({len(spec.pins)} packages pinned to "
        f"{spec.target}'s versions; once, then reused)")
    watch = Watch("local Kaggle image")
    try:
        with watch.beating():
            return _build_steps(path, spec, target, say, watch)
    finally:
        watch.close()


def _build_steps(path: Path, spec: ImageSpec, target: TargetImage, say: Callable[[str], None],
                 watch: Watch) -> KernelImage:
    t0 = time.monotonic()
    watch.state("virtualenv")
    shutil.rmtree(path, ignore_errors=True)
    base = getattr(sys, "_base_executable", sys.executable)
    _run([base, "-m", "venv", str(path)], "create the image's virtualenv")
    python = str(path / "bin" / "python")
    notes = [f"Python {spec.python} (Kaggle's: {target.python_full_version or target.python_version})"]
    if not has_gpu():
        notes.append(f"torch {CPU_TORCH} CPU build (Kaggle's: {target.has('torch')}, CUDA {target.cuda}): "
                     "no NVIDIA GPU here")
    pins = list(spec.pins)
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as f:
        f.write("\n".join(spec.constraints) + "\n")
        constraints = f.name
    try:
        install = [python, "-m", "pip", "install", "--progress-bar", "off", "--disable-pip-version-check",
                   "--no-warn-script-location"]
        watch.state("pip install")
        progress = PipProgress(watch)
        if _pip(install + ["-c", constraints] + pins, progress).returncode != 0:
            notes.append("dependencies not held to the image's versions (they conflict with the pins here)")
            failed = _pip(install + pins, progress)
            if failed.returncode != 0:
                pins, substituted = _nearest_pins(python, pins)
                notes += substituted
                failed = _pip(install + pins, progress)
                if failed.returncode != 0:
                    raise WheelsError("pip could not build the local Kaggle image: " + _tail(failed.stdout),
                                      context=f"pins: {' '.join(pins)}",
                                      hint="check the network or pip's index settings, then re-run")
    finally:
        os.unlink(constraints)
    probe = path / PROBE
    watch.state("probe")
    _run([python, "-c", probe_notebook_source(str(probe))], "record the image's tags and packages")
    seconds = round(time.monotonic() - t0, 1)
    record = {"format": FORMAT, "spec": asdict(spec), "pins": pins, "notes": notes, "build_seconds": seconds}
    (path / RECORD).write_text(json.dumps(record, indent=1) + "\n")
    say(f"kagflow: local Kaggle image built in {seconds:.0f} s at {path}; differences from Kaggle's: "
        + "; ".join(notes))
    return KernelImage(path, spec, tuple(notes), seconds)


def _nearest_pins(python: str, pins: list[str]) -> tuple[list[str], list[str]]:
    """Each pin whose version this machine's indexes lack, moved to the nearest available version."""
    out, notes = [], []
    for pin in pins:
        name, version = pin.split("==")
        available = _available(python, name)
        if not available or version in available:
            out.append(pin)
            continue
        wanted = Version(version)
        nearest = min(available, key=lambda v: (abs(_ordinal(Version(v)) - _ordinal(wanted)), Version(v) > wanted))
        out.append(f"{name}=={nearest}")
        notes.append(f"{name} {nearest} (Kaggle's {version} is not available here)")
    return out, notes


def _available(python: str, name: str) -> list[str]:
    proc = _pip([python, "-m", "pip", "index", "versions", name, "--disable-pip-version-check"])
    match = re.search(r"Available versions:\s*(.+)", proc.stdout)
    return [v.strip() for v in match.group(1).split(",")] if match else []


def _ordinal(v: Version) -> float:
    major, minor, micro = (list(v.release) + [0, 0, 0])[:3]
    return major * 1e6 + minor * 1e3 + micro


def _public(version: str) -> str:
    try:
        return Version(version).public
    except InvalidVersion:
        return version


def _pip(cmd: list[str], on_line: Optional[Callable[[str], None]] = None) -> subprocess.CompletedProcess:
    """Run ``cmd`` (stderr into stdout), each line of its output to ``on_line`` as it comes; its whole output
    is the result's stdout."""
    lines = []
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as proc:
        for line in proc.stdout:
            lines.append(line)
            if on_line is not None:
                on_line(line)
    return subprocess.CompletedProcess(cmd, proc.returncode, "".join(lines))


def _run(cmd: list[str], what: str) -> None:
    proc = _pip(cmd)
    if proc.returncode != 0:
        raise WheelsError(f"could not {what}: {_tail(proc.stdout)}", context=" ".join(cmd[:4]))


def _tail(text: str) -> str:
    return "\n".join(line for line in text.strip().splitlines() if "is ignored" not in line)[-1500:]
