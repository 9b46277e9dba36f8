"""Resolve requirements for a target image with pip's own resolver.

One ``pip install --dry-run --ignore-installed --target T --report R`` run does the resolving, for
the image's tags (``--python-version/--implementation/--abi/--platform``, ``--only-binary=:all:``),
with two extra inputs that stand for the image:

- a constraints file pinning every package the image has, so the resolver keeps the image's
  version whenever it fits; a pin that takes part in a conflict is dropped (pip names it as
  ``The user requested (constraint) X==v``) and the resolution runs again;
- stand-in wheels of the image's packages (:func:`wheelfile.write_image_standins`) as a
  ``--find-links`` directory, so the image's exact versions are always available even when the
  index no longer serves them, and their (already installed) dependency trees are not pulled in.

pip evaluates dependency markers (``python_version >= "3.12"``) against the interpreter running
it, not the target. After each successful run, every resolved package's Requires-Dist is
re-evaluated for the target (:func:`target_environment`); a dependency that applies on the target
but is missing from the resolution is added as a requirement and pip runs again. (The opposite
case, a dependency that applies only here, just adds a harmless wheel.)

A requirement with no wheel for the target is tried once as an sdist: built here with
``pip wheel --no-deps`` and accepted only if the result is ``py3-none-any``; otherwise it is a
:class:`WheelsError` naming the package, the target's tags and pip's reason.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

from packaging.markers import InvalidMarker, UndefinedComparison, UndefinedEnvironmentName
from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from kagflow.errors import WheelsError
from kagflow.rules.image import TargetImage
from kagflow.wheels import piprun
from kagflow.wheels.wheelfile import is_pure_py3

MAX_ROUNDS = 25


@dataclass(frozen=True)
class ResolvedDist:
    name: str                    # canonical
    version: str
    requested: bool
    requires: tuple[str, ...]    # Requires-Dist strings
    url: str
    from_image: bool             # resolved to the image's stand-in

    @property
    def filename(self) -> str:
        return self.url.rsplit("/", 1)[-1]


@dataclass
class Resolution:
    dists: list[ResolvedDist]
    relaxed: dict[str, str] = field(default_factory=dict)   # name -> image version dropped from the pins
    built_dir: Optional[Path] = None                           # wheels built here from sdists
    built: list[str] = field(default_factory=list)             # their file names
    marker_added: list[str] = field(default_factory=list)      # dependencies whose markers apply only on the target

    def by_name(self) -> dict[str, ResolvedDist]:
        return {d.name: d for d in self.dists}


def requirement_name(text: str) -> str:
    try:
        return canonicalize_name(Requirement(text).name)
    except InvalidRequirement as exc:
        raise WheelsError(f"invalid requirement {text!r}: {exc}",
                          hint="write requirements as pip does, e.g. 'peft>=0.13' or 'bitsandbytes==0.45.5'") from exc


def platform_summary(image: TargetImage) -> str:
    return (f"target {image.name}: python {image.python_version} ({image.implementation}), "
            f"abi {', '.join(image.abis)}; platforms {', '.join(image.platforms)}")


def target_environment(image: TargetImage) -> dict[str, str]:
    """PEP 508 marker values on the target (Linux images: the machine comes from the platform tag)."""
    machine = next((p.split("_", 2)[-1] if p.startswith("manylinux_") else p.split("_", 1)[-1]
                    for p in image.platforms if p.startswith(("manylinux", "musllinux", "linux"))), "x86_64")
    full = image.python_full_version or f"{image.python_version}.0"
    impl = {"cp": ("cpython", "CPython"), "pp": ("pypy", "PyPy")}.get(image.implementation, ("cpython", "CPython"))
    return {"python_version": image.python_version, "python_full_version": full,
            "implementation_name": impl[0], "platform_python_implementation": impl[1],
            "implementation_version": full, "sys_platform": "linux", "platform_system": "Linux",
            "os_name": "posix", "platform_machine": machine, "extra": ""}


def marker_gaps(dists: Sequence[ResolvedDist], image: TargetImage) -> list[str]:
    """Dependencies that apply on the target but are absent from the resolution (``name<spec>``)."""
    env = target_environment(image)
    have = {d.name for d in dists}
    gaps = []
    for d in dists:
        for text in d.requires:
            try:
                req = Requirement(text)
            except InvalidRequirement:
                continue
            if req.marker is None or "extra" in str(req.marker) or canonicalize_name(req.name) in have:
                continue
            try:
                applies = req.marker.evaluate(env)
            except (InvalidMarker, UndefinedComparison, UndefinedEnvironmentName):
                continue
            if applies:
                name = f"{req.name}[{','.join(sorted(req.extras))}]" if req.extras else req.name
                gaps.append(f"{name}{req.specifier}")
    return sorted(set(gaps))


def resolve(requirements: Sequence[str], image: TargetImage, work: Path, standins: Path,
            index: piprun.IndexOptions) -> Resolution:
    """Resolve ``requirements`` for ``image``; ``work`` is a scratch folder, ``standins`` the image's stand-ins."""
    user_names = {requirement_name(req) for req in requirements}
    work.mkdir(parents=True, exist_ok=True)
    req_file = work / "requirements.txt"
    marker_added: list[str] = []
    pins = {line.split("==", 1)[0]: line for line in image.constraints()}
    relaxed: dict[str, str] = {}
    built_dir = work / "built"
    built: list[str] = []
    sdist_tried: set[str] = set()
    report = work / "resolution.json"
    for _ in range(MAX_ROUNDS):
        con_file = work / "image-constraints.txt"
        con_file.write_text("\n".join(v for k, v in sorted(pins.items()) if k not in relaxed) + "\n",
                            encoding="utf-8")
        req_file.write_text("\n".join([*requirements, *marker_added]) + "\n", encoding="utf-8")
        extra_links = [standins] + ([built_dir] if built else [])
        result = piprun.run_pip([
            "install", "--dry-run", "--ignore-installed", "--only-binary=:all:",
            "--target", str(work / "target"), "--report", str(report), "--progress-bar", "off",
            *image.pip_target_args(), *index.args(*extra_links),
            "-c", str(con_file), "-r", str(req_file),
        ])
        if result.ok:
            dists = _read_report(report, standins, user_names)
            gaps = [g for g in marker_gaps(dists, image) if g not in marker_added]
            if gaps:
                marker_added += gaps
                continue
            return Resolution(dists, relaxed, built_dir if built else None, built, marker_added)
        conflicts = {canonicalize_name(n) for n in piprun.constraint_conflicts(result.output)}
        new = {n for n in conflicts if n in pins and n not in relaxed}
        if new:
            for name in new:
                relaxed[name] = image.has(name) or pins[name].split("==", 1)[1]
            continue
        missing = piprun.no_matching_distribution(result.output)
        if missing:
            name = requirement_name(missing.split(" (from", 1)[0])
            if name in pins and name not in relaxed:
                relaxed[name] = image.has(name) or ""
                continue
            if name not in sdist_tried:
                sdist_tried.add(name)
                wheel = _wheel_from_sdist(missing.split(" (from", 1)[0], work, built_dir, index)
                if wheel is not None:
                    built.append(wheel.name)
                    continue
            raise WheelsError(
                f"no wheel of {name} installs on {image.name}",
                context=f"{platform_summary(image)}\npip: {result.reason()}",
                hint=f"pick a version of {name} that publishes a manylinux or py3-none-any wheel for "
                     f"cp{image.python_version.replace('.', '')}, or drop it from the requirements",
            )
        raise WheelsError("pip could not resolve the requirements for the target image",
                          context=f"{platform_summary(image)}\npip: {result.reason()}",
                          hint="loosen the failing requirement, or check the index/find-links options")
    raise WheelsError(f"resolution did not settle after {MAX_ROUNDS} rounds",
                      context=f"image pins dropped: {', '.join(sorted(relaxed)) or 'none'}",
                      hint="pin the conflicting packages explicitly in the requirements")


def _read_report(report: Path, standins: Path, user_names: set[str]) -> list[ResolvedDist]:
    data = json.loads(report.read_text(encoding="utf-8"))
    standin_prefix = standins.resolve().as_uri()
    out = []
    for item in data.get("install", []):
        meta = item.get("metadata", {})
        url = (item.get("download_info") or {}).get("url", "")
        out.append(ResolvedDist(
            name=canonicalize_name(meta["name"]),
            version=str(meta["version"]),
            requested=bool(item.get("requested")) and canonicalize_name(meta["name"]) in user_names,
            requires=tuple(meta.get("requires_dist") or ()),
            url=url,
            from_image=url.startswith(standin_prefix),
        ))
    return out


def _wheel_from_sdist(requirement: str, work: Path, built_dir: Path, index: piprun.IndexOptions) -> Optional[Path]:
    """Build ``requirement``'s sdist into a wheel here; the wheel if it is pure Python, else None."""
    sdists = work / "sdists"
    if sdists.exists():
        shutil.rmtree(sdists)
    got = piprun.run_pip(["download", "--no-deps", "--no-binary=:all:", "--progress-bar", "off",
                          "-d", str(sdists), *index.args(), requirement])
    files = sorted(sdists.glob("*")) if sdists.exists() else []
    if not got.ok or not files:
        return None
    scratch = work / "sdist-build"
    if scratch.exists():
        shutil.rmtree(scratch)
    made = piprun.run_pip(["wheel", "--no-deps", "--progress-bar", "off", "-w", str(scratch),
                           *index.args(), str(files[0])])
    wheels = sorted(scratch.glob("*.whl")) if scratch.exists() else []
    if not made.ok or not wheels:
        raise WheelsError(f"{requirement} has no wheel and its sdist {files[0].name} did not build",
                          context=f"pip: {made.reason()}",
                          hint="pin a version that publishes a wheel, or drop the requirement")
    wheel = wheels[0]
    if not is_pure_py3(wheel.name):
        raise WheelsError(f"{requirement} has no wheel for the target and its sdist builds {wheel.name}",
                          context="a wheel built on this machine is kept only if it is py3-none-any",
                          hint="pin a version that publishes a manylinux wheel, or build it in a Kaggle kernel")
    built_dir.mkdir(parents=True, exist_ok=True)
    dest = built_dir / wheel.name
    shutil.move(str(wheel), dest)
    return dest
