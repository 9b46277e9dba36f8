"""Build a wheels dataset folder: resolve → fetch → verify offline → write manifest + metadata.

``build_wheels`` reads straight down; each step lives in its own module (``resolve``,
``verify``, ``cache``). The folder it writes is what ``kaggle datasets create/version -p`` uploads:
the wheels (flat, so ``pip --find-links`` works on the mounted folder), ``dataset-metadata.json``
and ``kagflow-wheels-manifest.json``, which the install cell reads on Kaggle.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence
from urllib.parse import unquote, urlparse

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from kagflow.errors import MissingFileError, WheelsError
from kagflow.rules import metadata, slugs
from kagflow.rules.image import TargetImage
from kagflow.wheels import piprun
from kagflow.wheels.cache import WheelCache, cache_key
from kagflow.wheels.resolve import Resolution, ResolvedDist, requirement_name, resolve, target_environment
from kagflow.wheels.verify import verify_offline
from kagflow.wheels.wheelfile import sha256_file, top_level_names, wheel_name_version, write_image_standins

MANIFEST_NAME = "kagflow-wheels-manifest.json"
# The install cell's code ships in the dataset (kagflow/wheels/offline_install.py, standard library only):
# the notebook imports it from the mounted folder instead of carrying it inline.
INSTALLER_NAME = "kagflow_offline_install.py"
INSTALLER_SOURCE = Path(__file__).resolve().with_name("offline_install.py")
MANIFEST_FORMAT = "kagflow-wheels-manifest/1"

# Kaggle publishes no per-dataset byte limit in its API client; the binding limit for a private
# dataset is the account's private quota: "Each Kaggler has a limited private quota ... currently,
# it is over 100 GB" (Banachewicz & Massaron, "Developing Kaggle Notebooks", Packt 2023, ch. 1,
# https://packtpub.com/en-ie/product/developing-kaggle-notebooks-9781805128519/chapter/introducing-kaggle-and-its-basic-functions-1/section/kaggle-datasets-ch01lvl1sec04).
KAGGLE_PRIVATE_QUOTA_BYTES = 100 * 10**9
# Kernels write to /kaggle/working (about 20 GB, KAGGLE-FACTS.md); pip unpacks the wheels there or in
# site-packages, so a set this large leaves no room for the model outputs (guess: half of it).
KAGGLE_WORKING_WARN_BYTES = 10 * 10**9


@dataclass(frozen=True)
class WheelEntry:
    name: str
    version: str
    filename: str
    sha256: str
    size: int
    why: str
    requested: bool
    import_names: tuple[str, ...] = ()
    replaces: Optional[str] = None        # the image's version this wheel replaces

    def to_dict(self) -> dict:
        return {"name": self.name, "version": self.version, "filename": self.filename, "sha256": self.sha256,
                "size": self.size, "why": self.why, "requested": self.requested,
                "import_names": list(self.import_names), "replaces": self.replaces}

    @classmethod
    def from_dict(cls, d: dict) -> "WheelEntry":
        return cls(d["name"], d["version"], d["filename"], d["sha256"], int(d["size"]), d["why"],
                   bool(d["requested"]), tuple(d.get("import_names") or ()), d.get("replaces"))


@dataclass(frozen=True)
class BuildResult:
    out_dir: Path
    dataset_id: str
    image_name: str
    wheels: tuple[WheelEntry, ...]
    from_image: tuple[str, ...]            # "name==version" the image already provides (not shipped)
    total_size: int                        # bytes of the wheels
    manifest_path: Path
    digest: str                            # manifest_digest(out_dir)
    cached: bool                           # True: no resolution or download ran (cache hit)
    warnings: tuple[str, ...] = field(default=())

    def summary_lines(self) -> list[str]:
        """What ``kagflow wheels build`` prints (``warnings`` are printed apart, as warnings)."""
        lines = [f"{w.filename}  {format_size(w.size)}  ({w.why})" for w in self.wheels]
        if self.from_image:
            lines.append(f"from the image ({self.image_name}): {', '.join(self.from_image)}")
        lines.append(f"{self.dataset_id}: {len(self.wheels)} wheels, {format_size(self.total_size)} "
                     f"in {self.out_dir}{' (cached)' if self.cached else ''}")
        return lines


def format_size(n: int) -> str:
    size = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{n} B"


def dataset_dir(root: "str | os.PathLike[str]", title: str) -> Path:
    """``<root>/<slug>``: where the CLI puts the dataset titled ``title`` (``wheels/<slug>``)."""
    return Path(root) / slugs.dataset_slug(title)


def build_wheels(requirements: Sequence[str], image: TargetImage, out_dir: Path, *, owner: str, title: str,
                 license_name: str, cache_dir: Path, index_url: Optional[str] = None,
                 find_links: Sequence["str | os.PathLike[str]"] = (),
                 no_index: bool = False) -> BuildResult:
    """Write the wheels dataset for ``requirements`` on ``image`` into ``out_dir`` (the dataset folder), under the
    dataset licence ``license_name`` (one of Kaggle's: rules.kaggle.DATASET_LICENSES)."""
    requirements = [r.strip() for r in requirements if r and r.strip() and not r.strip().startswith("#")]
    if not requirements:
        raise WheelsError("no requirements to build a wheels dataset from",
                          hint="list packages, e.g. `kagflow wheels build peft bitsandbytes`")
    for req in requirements:
        requirement_name(req)
    # validated before any work; "other" is "specified in the description" (docs/datasets_metadata.md)
    meta = metadata.dataset_metadata(owner, title, license_name=license_name, description=(
        f"# {title}\n\nOffline pip wheels built by kagflow for {image.name} (Python {image.python_version}), for "
        f"notebooks without internet: {', '.join(requirements)}.\n\n## Licence\n\nEach wheel keeps the licence of "
        "its own project, as its METADATA file (inside the wheel) says; this dataset adds none.\n"))
    out_dir = Path(out_dir)
    index = piprun.IndexOptions.make(index_url, find_links, no_index)
    cache = WheelCache(cache_dir)
    key = cache_key(requirements, image)

    with tempfile.TemporaryDirectory(prefix="kagflow-wheels-") as tmp:
        work = Path(tmp)
        standins = write_image_standins(work / "image", image.installed)
        hit = cache.load(key)
        cached = hit is not None
        if hit is None:
            resolution = resolve(requirements, image, work / "resolve", standins, index)
            entries_raw = _fetch(resolution, requirements, image, work / "fetch", index, cache)
            marker_added = list(resolution.marker_added)
            cache.store(key, entries_raw, marker_added=marker_added)
        else:
            entries_raw, marker_added = hit
        entries = tuple(WheelEntry.from_dict(e) for e in entries_raw)
        _sync_folder(out_dir, entries, cache)
        report = verify_offline(out_dir, [*requirements, *marker_added], image,
                                {e.name: e.version for e in entries}, standins, work / "verify")
        from_image = _from_image(report, standins)

    metadata.write_metadata(out_dir, metadata.DATASET_METADATA, meta)
    shutil.copyfile(INSTALLER_SOURCE, out_dir / INSTALLER_NAME)
    manifest = {
        "format": MANIFEST_FORMAT,
        "dataset": meta["id"],
        "requirements": list(requirements),
        "added_for_target_markers": list(marker_added),
        "target_image": {"name": image.name, "python_version": image.python_version, "abis": list(image.abis),
                         "platforms": list(image.platforms), "cuda": image.cuda, "exact": image.exact},
        "complete": True,
        "packages": [e.to_dict() for e in entries],
        "from_image": list(from_image),
        "total_size": sum(e.size for e in entries),
        "installer": {"filename": INSTALLER_NAME, "sha256": sha256_file(out_dir / INSTALLER_NAME)},
    }
    manifest_path = metadata.write_metadata(out_dir, MANIFEST_NAME, manifest)
    total = manifest["total_size"]
    return BuildResult(out_dir=out_dir, dataset_id=meta["id"], image_name=image.name, wheels=entries,
                       from_image=tuple(from_image), total_size=total, manifest_path=manifest_path,
                       digest=manifest_digest(out_dir), cached=cached,
                       warnings=tuple(size_warnings(total) + image_breakage(entries, image)))


def size_warnings(total: int) -> list[str]:
    out = []
    if total > KAGGLE_PRIVATE_QUOTA_BYTES:
        out.append(f"the dataset is {format_size(total)}, above Kaggle's private dataset quota "
                   f"(about {format_size(KAGGLE_PRIVATE_QUOTA_BYTES)}): the upload will be refused")
    elif total > KAGGLE_WORKING_WARN_BYTES:
        out.append(f"the dataset is {format_size(total)}: installing it uses much of the kernel's ~20 GB disk")
    return out


def image_breakage(entries: Sequence[WheelEntry], image: TargetImage) -> list[str]:
    """Image packages whose own requirements exclude a version this dataset installs over theirs.

    Needs the image's Requires-Dist, which only a probed image records (``kagflow image probe``).
    """
    replaced = {e.name: e.version for e in entries if e.replaces is not None}
    out = []
    for owner, reqs in sorted(image.requires.items()):
        if owner in replaced:
            continue
        for text in reqs:
            req = _req(text)
            if req is None or (req.marker is not None and "extra" in str(req.marker)):
                continue
            name = canonicalize_name(req.name)
            if name in replaced and not _allows(f"{name}{req.specifier}", replaced[name]):
                out.append(f"installing {name} {replaced[name]} over the image's {image.has(name)} breaks "
                           f"{owner}=={image.has(owner)} (requires {text}); import it only if you also ship "
                           f"a compatible {owner}")
    return out


# --------------------------------------------------------------------------- steps

def _same_version(a: Optional[str], b: str) -> bool:
    if a is None:
        return False
    try:
        return Version(a).public == Version(b).public
    except InvalidVersion:
        return a == b


def _fetch(resolution: Resolution, requirements: Sequence[str], image: TargetImage, work: Path,
           index: piprun.IndexOptions, cache: WheelCache) -> list[dict]:
    """Put the wheels the image lacks into the cache; return their manifest entries."""
    ship = [d for d in resolution.dists if not d.from_image and not _same_version(image.has(d.name), d.version)]
    files: dict[str, Path] = {}
    remote: list[ResolvedDist] = []
    for d in ship:
        local = _local_path(d.url)
        if local is not None and local.is_file():
            files[d.name] = cache.add(local)
        else:
            remote.append(d)
    if remote:
        dl = work / "download"
        extra = [resolution.built_dir] if resolution.built_dir else []
        from kagflow.progress import watch_folder

        with watch_folder(dl, f"fetch {len(remote)} wheel(s)"):
            got = piprun.run_pip(["download", "--no-deps", "--only-binary=:all:", "--progress-bar", "off",
                                  "-d", str(dl), *image.pip_target_args(), *index.args(*extra),
                                  *[f"{d.name}=={d.version}" for d in remote]])
        if not got.ok:
            raise WheelsError("pip could not download the resolved wheels", context=f"pip: {got.reason()}",
                              hint="check the network or index options and retry; finished wheels are cached")
        for wheel in dl.glob("*.whl"):
            name, _version = wheel_name_version(wheel.name)
            files[name] = cache.add(wheel)
        lacking = [d.name for d in remote if d.name not in files]
        if lacking:
            raise WheelsError(f"pip downloaded no wheel for {', '.join(lacking)}", context=f"pip: {got.reason()}")
    entries = []
    for d in ship:
        path = files[d.name]
        entries.append(WheelEntry(
            name=d.name, version=d.version, filename=path.name, sha256=sha256_file(path), size=path.stat().st_size,
            why=_why(d, resolution.dists, requirements, image), requested=d.requested,
            import_names=tuple(top_level_names(path)), replaces=image.has(d.name),
        ).to_dict())
    return sorted(entries, key=lambda e: e["name"])


def _local_path(url: str) -> Optional[Path]:
    parsed = urlparse(url)
    return Path(unquote(parsed.path)) if parsed.scheme == "file" else None


def _req(text: str) -> Optional[Requirement]:
    try:
        return Requirement(text)
    except InvalidRequirement:
        return None


def _why(d: ResolvedDist, dists: Sequence[ResolvedDist], requirements: Sequence[str], image: TargetImage) -> str:
    """"required" / "dependency of alpha" / "image has beta==1.0, need beta>=2 (alpha)"."""
    specs: list[tuple[str, str]] = []           # (spec, who asks)
    for r in requirements:
        req = _req(r)
        if req and canonicalize_name(req.name) == d.name:
            specs.append((str(req).split(";")[0].strip(), "required"))
    parents = []
    env = target_environment(image)
    for p in dists:
        for r in p.requires:
            req = _req(r)
            if req and canonicalize_name(req.name) == d.name and _applies(req, env):
                parents.append(p.name)
                specs.append((f"{req.name}{req.specifier}" if str(req.specifier) else req.name, p.name))
                break
    have = image.has(d.name)
    if have is not None:
        against = [(s, who) for s, who in specs if not _allows(s, have)] or specs
        need = ", ".join(f"{s} ({who})" if who != "required" else s for s, who in against) or f"{d.name}=={d.version}"
        return f"image has {d.name}=={have}, need {need}"
    if d.requested:
        return "required"
    return "dependency of " + ", ".join(sorted(set(parents))) if parents else "dependency"


def _applies(req: Requirement, env: dict) -> bool:
    """Does this Requires-Dist apply on the target (extras-only ones do not)?"""
    if req.marker is None:
        return True
    if "extra" in str(req.marker):
        return False
    try:
        return bool(req.marker.evaluate(env))
    except Exception:                      # undefined comparisons: count it, as pip would try
        return True


def _allows(spec: str, version: str) -> bool:
    req = _req(spec)
    if req is None:
        return True
    try:
        return req.specifier.contains(Version(version).public, prereleases=True)
    except InvalidVersion:
        return True


def _sync_folder(out_dir: Path, entries: Sequence[WheelEntry], cache: WheelCache) -> None:
    """Make ``out_dir``'s wheels exactly ``entries`` (stale wheels removed, unchanged ones kept)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    wanted = {e.filename: e for e in entries}
    for existing in out_dir.glob("*.whl"):
        if existing.name not in wanted:
            existing.unlink()
    for e in entries:
        dest = out_dir / e.filename
        if dest.is_file() and dest.stat().st_size == e.size and sha256_file(dest) == e.sha256:
            continue
        src = cache.path(e.filename)
        tmp = out_dir / f".{e.filename}.part"
        shutil.copyfile(src, tmp)
        os.replace(tmp, dest)


def _from_image(report: dict, standins: Path) -> list[str]:
    """The image's packages the offline check used (``name==version``)."""
    prefix = standins.resolve().as_uri() + "/"
    out = []
    for item in report.get("install", []):
        if (item.get("download_info") or {}).get("url", "").startswith(prefix):
            out.append(f"{canonicalize_name(item['metadata']['name'])}=={item['metadata']['version']}")
    return sorted(out)


# --------------------------------------------------------------------------- reading a built folder

def read_manifest(out_dir: "str | os.PathLike[str]") -> dict:
    path = Path(out_dir) / MANIFEST_NAME
    if not path.is_file():
        raise MissingFileError(f"no {MANIFEST_NAME} in {out_dir}", context=str(out_dir),
                               hint="build the dataset first: `kagflow wheels build`")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise WheelsError(f"{path} is not JSON: {exc}", hint="rebuild with `kagflow wheels build`") from exc
    if data.get("format") != MANIFEST_FORMAT:
        raise WheelsError(f"{path} has format {data.get('format')!r}, expected {MANIFEST_FORMAT}",
                          hint="rebuild with `kagflow wheels build`")
    return data


def manifest_digest(out_dir: "str | os.PathLike[str]") -> str:
    """A stable hash of the dataset's content: the manifest's (filename, sha256) pairs and requirements.

    Equal digests mean the same wheels for the same requirements: the gateway skips the push.
    """
    data = read_manifest(out_dir)
    material = {"wheels": sorted([p["filename"], p["sha256"]] for p in data["packages"]),
                "requirements": list(data["requirements"])}
    if data.get("installer"):
        material["installer"] = data["installer"]["sha256"]
    return hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()


def check_dataset(out_dir: "str | os.PathLike[str]") -> list[str]:
    """Problems with a built folder (missing/altered wheels, metadata absent); empty when ready to push."""
    out_dir = Path(out_dir)
    problems = []
    data = read_manifest(out_dir)
    for p in data["packages"]:
        wheel = out_dir / p["filename"]
        if not wheel.is_file():
            problems.append(f"{p['filename']} is missing")
        elif sha256_file(wheel) != p["sha256"]:
            problems.append(f"{p['filename']} does not match its sha256 in the manifest")
    if not (out_dir / metadata.DATASET_METADATA).is_file():
        problems.append(f"{metadata.DATASET_METADATA} is missing")
    installer = data.get("installer")
    if installer and not (out_dir / installer["filename"]).is_file():
        problems.append(f"{installer['filename']} (the install cell's code) is missing")
    elif installer and sha256_file(out_dir / installer["filename"]) != installer["sha256"]:
        problems.append(f"{installer['filename']} does not match its sha256 in the manifest")
    listed = {p["filename"] for p in data["packages"]}
    problems += [f"{w.name} is not in the manifest" for w in out_dir.glob("*.whl") if w.name not in listed]
    return problems
