"""The target image: the Python, wheel tags, CUDA and packages of the machine a kernel runs on.

Wheels datasets are resolved *for* a :class:`TargetImage`, never for this machine. kagflow ships a
snapshot of Kaggle's GPU image (``kagflow/rules/data/kaggle-gpu-image.json``, sources recorded inside);
``kagflow image probe`` replaces it with the real thing: :func:`probe_notebook_source` is the code
of a tiny kernel that writes ``/kaggle/working/image.json``, :func:`image_from_probe_output` reads
that file back and :func:`save_image` stores it where :func:`load_image` finds it.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import tempfile
from dataclasses import dataclass, field
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Iterable, Mapping, Optional

from packaging import tags as packaging_tags
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from kagflow.errors import MissingFileError, WheelsError

FORMAT = "kagflow-target-image/1"
DATA_DIR = Path(__file__).parent / "data"
BUILTIN_IMAGES = {"kaggle-gpu": DATA_DIR / "kaggle-gpu-image.json"}
DEFAULT_IMAGE = "kaggle-gpu"
PROBE_OUTPUT_NAME = "image.json"
PROBE_OUTPUT = f"/kaggle/working/{PROBE_OUTPUT_NAME}"
PROBE_TAG_COUNT = 400  # enough for every manylinux_2_N of a recent glibc, times the abis


@dataclass(frozen=True)
class TargetImage:
    """What pip must assume about the machine that installs the wheels.

    ``abis`` and ``platforms`` are passed to ``pip --abi/--platform`` as they are: pip compares
    ``manylinux_2_N`` tags exactly, so ``platforms`` lists every compatible N (newest first) and
    the legacy aliases. ``installed`` maps canonical distribution names to versions.
    """

    name: str
    python_version: str                      # "3.12"
    abis: tuple[str, ...]                    # ("cp312", "abi3", "none")
    platforms: tuple[str, ...]               # ("manylinux_2_35_x86_64", ..., "manylinux1_x86_64")
    implementation: str = "cp"
    cuda: Optional[str] = None
    installed: Mapping[str, str] = field(default_factory=dict, hash=False)
    python_full_version: Optional[str] = None
    exact: bool = False                      # True when recorded on the image itself (probe)
    source: Mapping[str, str] = field(default_factory=dict, hash=False, compare=False)
    recorded: str = ""
    # Requires-Dist of the image's packages (probe only): lets a build warn when a wheel it ships
    # replaces a package that another image package pins below the new version.
    requires: Mapping[str, tuple[str, ...]] = field(default_factory=dict, hash=False, compare=False)

    def __post_init__(self) -> None:
        # canonical names ("Torch", "typing_extensions" → "torch", "typing-extensions"), tuples for tags
        object.__setattr__(self, "installed", {canonicalize_name(k): str(v) for k, v in dict(self.installed).items()})
        object.__setattr__(self, "abis", tuple(self.abis))
        object.__setattr__(self, "platforms", tuple(self.platforms))
        object.__setattr__(self, "requires", {canonicalize_name(k): tuple(v) for k, v in dict(self.requires).items()})

    @property
    def abi(self) -> str:
        return self.abis[0]

    def has(self, name: str) -> Optional[str]:
        """The version of ``name`` the image has, or None."""
        return self.installed.get(canonicalize_name(name))

    def pip_target_args(self) -> list[str]:
        """``pip download/install`` options that make pip pick wheels for this image, not this machine."""
        args = ["--python-version", self.python_version, "--implementation", self.implementation]
        for abi in self.abis:
            args += ["--abi", abi]
        for plat in self.platforms:
            args += ["--platform", plat]
        return args

    def constraints(self) -> list[str]:
        """``name==version`` lines pinning the image's packages (local labels such as ``+cu128`` dropped:
        ``==2.11.0`` still matches the image's ``2.11.0+cu128``, while the index only has ``2.11.0``)."""
        lines = []
        for name, version in sorted(self.installed.items()):
            try:
                public = Version(version).public
            except InvalidVersion:
                continue
            lines.append(f"{name}=={public}")
        return lines

    def fingerprint(self) -> dict:
        """What resolution depends on (cache key material)."""
        return {"python": self.python_version, "implementation": self.implementation,
                "abis": list(self.abis), "platforms": list(self.platforms),
                "installed": dict(sorted(self.installed.items()))}

    def to_dict(self) -> dict:
        return {
            "format": FORMAT,
            "name": self.name,
            "python_version": self.python_version,
            "python_full_version": self.python_full_version,
            "implementation": self.implementation,
            "abis": list(self.abis),
            "platforms": list(self.platforms),
            "cuda": self.cuda,
            "exact": self.exact,
            "recorded": self.recorded,
            "source": dict(self.source),
            "installed": dict(sorted(self.installed.items())),
            **({"requires": {k: list(v) for k, v in sorted(self.requires.items())}} if self.requires else {}),
        }

    @classmethod
    def from_dict(cls, data: Mapping, *, where: str = "image file") -> "TargetImage":
        try:
            installed = {canonicalize_name(k): str(v) for k, v in dict(data.get("installed", {})).items()}
            source = data.get("source") or {}
            if isinstance(source, str):
                source = {"summary": source}
            image = cls(
                name=str(data["name"]),
                python_version=_major_minor(str(data["python_version"])),
                abis=tuple(data["abis"]),
                platforms=tuple(data["platforms"]),
                implementation=str(data.get("implementation", "cp")),
                cuda=data.get("cuda"),
                installed=installed,
                python_full_version=data.get("python_full_version"),
                exact=bool(data.get("exact", False)),
                source={str(k): str(v) for k, v in dict(source).items()},
                recorded=str(data.get("recorded", "")),
                requires={str(k): tuple(v) for k, v in dict(data.get("requires") or {}).items()},
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise WheelsError(f"not a kagflow target image: {exc}", context=where,
                              hint="re-create it with `kagflow image probe`") from exc
        if not image.abis or not image.platforms:
            raise WheelsError("target image lists no abi or platform tags", context=where,
                              hint="re-create it with `kagflow image probe`")
        return image


def _major_minor(version: str) -> str:
    parts = version.strip().split(".")
    if len(parts) < 2 or not all(p.isdigit() for p in parts[:2]):
        raise ValueError(f"python_version {version!r} is not like '3.12'")
    return ".".join(parts[:2])


# --------------------------------------------------------------------------- load / save

def load_image(path_or_name: "str | os.PathLike[str]" = DEFAULT_IMAGE) -> TargetImage:
    """A built-in image by name (``"kaggle-gpu"``) or an image JSON file (snapshot or probe output)."""
    key = str(path_or_name)
    path = BUILTIN_IMAGES.get(key, Path(key))
    if not path.is_file():
        raise MissingFileError(
            f"no target image {key!r}",
            context=f"built-in images: {', '.join(sorted(BUILTIN_IMAGES))}; or a path to an image JSON",
            hint="run `kagflow image probe` to record Kaggle's image, or pass --image kaggle-gpu",
        )
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise WheelsError(f"cannot read target image {path}: {exc}", context=str(path),
                          hint="re-create it with `kagflow image probe`") from exc
    fmt = str(data.get("format", FORMAT)) if isinstance(data, dict) else ""
    if fmt.startswith("kagflow-image-probe/"):
        return image_from_probe_dict(data, where=str(path))
    if fmt != FORMAT:
        raise WheelsError(f"unknown image format {fmt!r}", context=str(path),
                          hint="re-create it with `kagflow image probe`")
    return TargetImage.from_dict(data, where=str(path))


def save_image(image: TargetImage, path: "str | os.PathLike[str]") -> Path:
    """Write ``image`` as JSON (atomically) so ``load_image(path)`` reads it back equal."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(image.to_dict(), f, indent=1)
        f.write("\n")
    os.replace(tmp, path)
    return path


def current_image(name: str = "this-machine", *, installed: Optional[Mapping[str, str]] = None) -> TargetImage:
    """This interpreter as a target (the local runner, tests).

    ``installed`` defaults to this environment's distributions (everything here counts as "the
    image has it"); pass ``{}`` to target a fresh virtualenv of this Python.
    """
    tags = list(packaging_tags.sys_tags())
    if installed is None:
        installed = _distributions()
    return TargetImage(
        name=name,
        python_version=f"{sys.version_info.major}.{sys.version_info.minor}",
        abis=_unique(t.abi for t in tags),
        platforms=_unique(t.platform for t in tags if t.platform != "any"),
        implementation=packaging_tags.interpreter_name(),
        cuda=None,
        installed={canonicalize_name(k): v for k, v in installed.items()},
        python_full_version=platform.python_version(),
        exact=True,
        source={"summary": f"sys_tags() and metadata of {sys.executable}"},
    )


def _unique(items: Iterable[str]) -> tuple[str, ...]:
    seen: dict[str, None] = {}
    for item in items:
        seen.setdefault(item, None)
    return tuple(seen)


def _distributions() -> dict[str, str]:
    out = {}
    for dist in importlib_metadata.distributions():
        name = dist.metadata.get("Name")
        if name:
            out[canonicalize_name(name)] = dist.version
    return out


# --------------------------------------------------------------------------- probe

_PROBE_SOURCE = r'''
# kagflow image probe: records this image so wheels datasets are resolved for it.
import datetime, json, os, platform, re, subprocess, sys
from importlib import metadata

OUT = {out!r}
N_TAGS = {n_tags}

def tags():
    try:
        from packaging import tags as t
    except ImportError:
        from pip._vendor.packaging import tags as t
    return [str(tag) for tag in list(t.sys_tags())[:N_TAGS]]

def cuda():
    try:
        import torch
        if torch.version.cuda:
            return str(torch.version.cuda), "torch.version.cuda"
    except Exception:
        pass
    try:
        text = subprocess.run(["nvidia-smi"], capture_output=True, text=True, timeout=60).stdout
        m = re.search(r"CUDA Version:\s*([0-9.]+)", text)
        if m:
            return m.group(1), "nvidia-smi"
    except Exception:
        pass
    return None, "none"

def read(path):
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return None

dists, requires = {{}}, {{}}
for d in metadata.distributions():
    name = d.metadata.get("Name")
    if name:
        dists[name] = d.version
        requires[name] = list(d.requires or [])
cuda_version, cuda_from = cuda()
data = {{
    "format": "kagflow-image-probe/1",
    "recorded": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    "python_version": "%d.%d" % sys.version_info[:2],
    "python_full_version": platform.python_version(),
    "implementation": sys.implementation.name,
    "tags": tags(),
    "cuda": cuda_version,
    "cuda_from": cuda_from,
    "machine": platform.machine(),
    "libc": list(platform.libc_ver()),
    "git_commit": read("/etc/git_commit"),
    "build_date": read("/etc/build_date"),
    "installed": dists,
    "requires": requires,
}}
os.makedirs(os.path.dirname(OUT), exist_ok=True)
with open(OUT, "w") as f:
    json.dump(data, f, indent=1, sort_keys=True)
print("kagflow image probe: python %s, %d tags, cuda %s, %d packages -> %s"
      % (data["python_full_version"], len(data["tags"]), cuda_version, len(dists), OUT))
'''


def probe_notebook_source(out_path: str = PROBE_OUTPUT, *, n_tags: int = PROBE_TAG_COUNT) -> str:
    """Python code for a one-cell kernel that records the image it runs on into ``out_path``.

    Records the Python version, the first ``n_tags`` of ``packaging.tags.sys_tags()``, the CUDA
    version (``torch.version.cuda``, else ``nvidia-smi``), every installed distribution (version
    and Requires-Dist) and
    Kaggle's ``/etc/git_commit`` / ``/etc/build_date``. Standard library only (``packaging``
    falls back to pip's vendored copy).
    """
    return _PROBE_SOURCE.format(out=str(out_path), n_tags=int(n_tags)).lstrip()


def image_from_probe_output(path: "str | os.PathLike[str]", *, name: Optional[str] = None,
                            portable_only: bool = True) -> TargetImage:
    """Read the JSON the probe kernel wrote (pulled from the kernel's output) into a TargetImage."""
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"probe output {path} not found", context=str(path),
                               hint="pull the probe kernel's output (it writes image.json) and retry")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise WheelsError(f"probe output {path} is not JSON: {exc}", context=str(path)) from exc
    return image_from_probe_dict(data, where=str(path), name=name, portable_only=portable_only)


def image_from_probe_dict(data: Mapping, *, where: str = "probe output", name: Optional[str] = None,
                          portable_only: bool = True) -> TargetImage:
    """TargetImage from the probe's dict. ``portable_only`` drops ``linux_*`` platforms: no index
    publishes them and a locally built ``linux_x86_64`` wheel is not known to run on the image."""
    try:
        tags = [packaging_tags.parse_tag(t) for t in data["tags"]]
        flat = [tag for group in tags for tag in group]
        implementation = "cp" if data.get("implementation", "cpython") in ("cpython", "cp") else "pp"
        platforms = _unique(t.platform for t in flat if t.platform != "any")
        if portable_only:
            platforms = tuple(p for p in platforms if not p.startswith("linux_")) or platforms
        stamp = data.get("build_date") or data.get("git_commit") or str(data.get("recorded", ""))[:10]
        return TargetImage(
            name=name or ("kaggle-gpu-probed" + (f"-{stamp}" if stamp else "")),
            python_version=_major_minor(str(data["python_version"])),
            abis=_unique(t.abi for t in flat),
            platforms=platforms,
            implementation=implementation,
            cuda=data.get("cuda"),
            installed={canonicalize_name(k): str(v) for k, v in dict(data["installed"]).items()},
            python_full_version=data.get("python_full_version"),
            exact=True,
            source={"summary": "recorded on the image by `kagflow image probe`",
                    "git_commit": str(data.get("git_commit")), "build_date": str(data.get("build_date")),
                    "cuda_from": str(data.get("cuda_from"))},
            recorded=str(data.get("recorded", "")),
            requires={str(k): tuple(v) for k, v in dict(data.get("requires") or {}).items()},
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise WheelsError(f"probe output is incomplete: {exc}", context=where,
                          hint="re-run `kagflow image probe` with this kagflow version") from exc
