"""The local Kaggle's image: the Python environment its kernels run in, shaped like Kaggle's GPU image.

Built from the shipped snapshot of Kaggle's GPU image (``kagflow/rules/data/kaggle-gpu-image.json``): the
versions the image has for what kagflow's notebooks and public text-classification notebooks import
(:data:`KERNEL_PACKAGES`, their dependencies constrained to the image's versions too), torch's CPU build
where there is no NVIDIA GPU, and nothing more. What Kaggle's image lacks (bitsandbytes, the classifier) is
not there, so a kernel gets it only from its wheels dataset, as on Kaggle. The rest of Kaggle's image is
left out by :data:`LEFT_OUT` (each group with its reason); :func:`compare` tells, for each of the snapshot's
packages, whether the local image has it or why not (recorded in the image's record and printed on a build).

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
# What kagflow's notebooks import, the Jupyter kernel nbclient starts and the pip the install cell runs; then what
# public text-classification notebooks (LMSYS arena, LLM - Detect AI Generated Text, Jigsaw, Eedi) import from
# Kaggle's image besides: a rehearsal must not fail a notebook Kaggle runs (the 4th-place LMSYS inference does
# `from datasets import Dataset`). Each is pinned to the snapshot's version; their dependencies follow.
KERNEL_PACKAGES = ("torch", "transformers", "accelerate", "peft", "numpy", "pandas", "scikit-learn",
                   "matplotlib", "ipykernel", "pip",
                   "datasets", "tokenizers", "sentencepiece", "safetensors", "huggingface-hub", "scipy", "tqdm",
                   "seaborn", "polars", "pyarrow", "lightgbm", "nltk", "sentence-transformers", "tiktoken", "einops",
                   "protobuf", "regex")
# Kaggle's packages the local image leaves out, by group (first match wins), and why: the build stays a few
# minutes and a few GB smaller, and a kernel that imports one fails here with ModuleNotFoundError (say so).
LEFT_OUT = (
    (re.compile(r"tensorflow.*|tf-.*|keras.*|jax.*|flax|optax|orbax.*|chex|dm-.*|tensorstore|grain|array-record|"
                r"tensorboard.*|tf2jax|ml-dtypes|etils|treescope|wrapt|opt-einsum|gast|astunparse|google-pasta|"
                r"libclang|flatbuffers|h5py|namex|optree"),
     "TensorFlow, Keras and JAX: GBs, and a PyTorch text classifier does not import them"),
    (re.compile(r".*-cu12|cupy.*|cuda-.*|numba-cuda|nvidia-.*|pynvjitlink.*|ucx.*|rapids.*|dask-cuda|"
                r"distributed-ucxx.*|jax-cuda.*|cuquantum.*|triton"),
     "CUDA-only libraries (RAPIDS, CuPy, NVIDIA runtimes): they need a GPU, which the local image has not"),
    (re.compile(r"torchvision|torchaudio|torchao|torchdata|torchsummary|timm|kornia|opencv.*|albu.*|imageio.*|"
                r"scikit-image|pillow-.*|moviepy|librosa|soundfile|audioread|soxr|pydub|music21|dlib|"
                r"easyocr|segment-anything|pytesseract"),
     "vision and audio: torchvision/torchaudio would need the CPU torch build's own wheels; text notebooks do not "
     "import them"),
    (re.compile(r"google-.*|googleapis-.*|grpc.*|gcsfs|bigframes|bigquery-.*|db-dtypes|pandas-gbq|pydata-google-.*|"
                r"earthengine-api|geemap|firebase-.*|gspread.*|gcloud.*|dataproc-.*|pydrive.*|oauth2client|"
                r"httplib2|uritemplate|proto-plus|protobuf3-.*|opentelemetry-.*|sqlalchemy-bigquery|vertexai"),
     "Google Cloud and Colab clients: kernels run with the internet off, and these need credentials"),
    (re.compile(r"xgboost|catboost|spacy.*|thinc|en-core-web-.*|gensim|fasttext|langchain.*|langgraph.*|"
                r"langsmith|openai|anthropic|vllm|optuna|ray|wandb|mlflow|tensorflow-.*"),
     "heavier extras text notebooks seldom import: xgboost (pulls nvidia-nccl, 200+ MB), catboost and optuna "
     "(unversioned in the snapshot), spaCy and its models, LLM-service clients (no internet), trackers"),
)
OTHER = "the rest: geo, plotting, web and notebook tooling a text classifier does not import"
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


def compare(target: TargetImage, installed) -> dict:
    """Kaggle's image against the local one: ``{"kaggle": n, "installed": n, "missing": {reason: [names]}}`` for
    every package of ``target`` (the snapshot) the local image lacks (``installed``: its canonical names)."""
    have = {canonicalize_name(n) for n in installed}
    missing: dict = {}
    for name in sorted(target.installed):
        if name in have:
            continue
        reason = next((why for pattern, why in LEFT_OUT if pattern.fullmatch(name)), OTHER)
        missing.setdefault(reason, []).append(name)
    return {"kaggle": len(target.installed), "installed": len(set(target.installed) & have), "missing": missing}


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
    comparison = compare(target, image_from_probe_output(probe, name="local-kaggle").installed)
    notes.append(f"{comparison['installed']} of Kaggle's {comparison['kaggle']} packages; left out: "
                 + "; ".join(f"{len(names)} ({why.split(':')[0]})" for why, names in comparison["missing"].items())
                 + f" (the list: {path / RECORD})")
    record = {"format": FORMAT, "spec": asdict(spec), "pins": pins, "notes": notes, "build_seconds": seconds,
              "compared_with_kaggle": comparison}
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
