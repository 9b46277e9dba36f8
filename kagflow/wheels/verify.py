"""Prove, before upload, that the dataset installs offline on the target image.

``pip install --dry-run --no-index --only-binary=:all: --target T`` with the target's tags, the
dataset folder and the image's stand-in wheels as the only sources, the shipped versions and the
image's versions as constraints, and the original requirements. Success means: on the image,
with no network, every requirement and every dependency is met by the image or by a wheel in the
dataset, and each shipped wheel's tags fit the image. pip runs without any configuration (a
pip.conf's find-links or index would otherwise slip in), and the report is checked so nothing came
from anywhere else.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Mapping, Sequence

from packaging.utils import canonicalize_name

from kagflow.errors import WheelsError
from kagflow.rules.image import TargetImage
from kagflow.wheels import piprun
from kagflow.wheels.resolve import platform_summary


def verify_offline(dataset_dir: Path, requirements: Sequence[str], image: TargetImage,
                   shipped: Mapping[str, str], standins: Path, work: Path) -> dict:
    """Run the offline dry run; return pip's report, or raise WheelsError with pip's reason."""
    work.mkdir(parents=True, exist_ok=True)
    req_file = work / "verify-requirements.txt"
    req_file.write_text("\n".join(requirements) + "\n", encoding="utf-8")
    pins = [f"{name}=={version}" for name, version in sorted(shipped.items())]
    pins += [line for line in image.constraints() if line.split("==", 1)[0] not in shipped]
    con_file = work / "verify-constraints.txt"
    con_file.write_text("\n".join(pins) + "\n", encoding="utf-8")
    report = work / "verify-report.json"
    result = piprun.run_pip([
        "install", "--dry-run", "--ignore-installed", "--no-index", "--only-binary=:all:",
        "--target", str(work / "verify-target"), "--report", str(report), "--progress-bar", "off",
        *image.pip_target_args(), "--find-links", str(dataset_dir), "--find-links", str(standins),
        "-c", str(con_file), "-r", str(req_file),
    ], isolated=True)
    if not result.ok:
        raise WheelsError(
            f"the wheels dataset would not install offline on {image.name}",
            context=f"{platform_summary(image)}\npip (offline dry run): {result.reason()}",
            hint="add the missing package to the requirements, or rebuild against the real image "
                 "(`kagflow image probe`)",
        )
    data = json.loads(report.read_text(encoding="utf-8"))
    allowed = (dataset_dir.resolve().as_uri() + "/", standins.resolve().as_uri() + "/")
    used = {}
    for item in data.get("install", []):
        url = (item.get("download_info") or {}).get("url", "")
        name = canonicalize_name(item["metadata"]["name"])
        if not url.startswith(allowed):
            raise WheelsError(f"the offline check took {name} from outside the dataset",
                              context=url, hint="unset PIP_FIND_LINKS / pip.conf find-links and rebuild")
        used[name] = str(item["metadata"]["version"])
    unused = sorted(n for n in shipped if n not in used)
    if unused:
        raise WheelsError(f"pip would not pick {', '.join(unused)} from the dataset for {image.name}",
                          context=platform_summary(image),
                          hint="the wheel's tags do not fit the target; rebuild with `kagflow wheels build`")
    return data
