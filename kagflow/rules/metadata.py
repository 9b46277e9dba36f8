"""Writers for Kaggle's four metadata files.

Each builder is a pure function returning the dict; ``write_metadata`` writes it. Ids derive
from the title through :mod:`kagflow.rules.slugs`, so ``slugify(title) == slug`` holds by
construction, and every flag Kaggle would otherwise default (``enable_internet`` defaults to
True on push!) is written explicitly.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Iterable, Optional, Sequence

from kagflow.errors import NamingError
from kagflow.rules import slugs
from kagflow.rules.kaggle import ACCELERATORS, DEFAULT_ACCELERATOR, GPU_ACCELERATORS, TPU_ACCELERATORS

KERNEL_METADATA = "kernel-metadata.json"
DATASET_METADATA = "dataset-metadata.json"
MODEL_METADATA = "model-metadata.json"
MODEL_INSTANCE_METADATA = "model-instance-metadata.json"



def kernel_metadata(
    owner: str,
    title: str,
    code_file: str,
    *,
    is_private: bool = True,
    accelerator: Optional[str] = DEFAULT_ACCELERATOR,
    enable_internet: bool = False,
    dataset_sources: Sequence[str] = (),
    competition_sources: Sequence[str] = (),
    kernel_sources: Sequence[str] = (),
    model_sources: Sequence[str] = (),
    keywords: Sequence[str] = (),
    docker_image_pinning_type: Optional[str] = None,
    kernel_type: str = "notebook",
) -> dict:
    """kernel-metadata.json for ``owner``'s kernel titled ``title`` (id = owner/slugify(title))."""
    slug = slugs.kernel_slug(title)
    handle = slugs.KernelHandle(slugs.check_owner(owner), slug)
    if accelerator is not None and accelerator not in ACCELERATORS:
        raise NamingError(f"unknown accelerator {accelerator!r}", context="kernel-metadata.json: machine_shape",
                          hint="one of " + ", ".join(ACCELERATORS))
    gpu = accelerator in GPU_ACCELERATORS
    tpu = accelerator in TPU_ACCELERATORS
    data = {
        "id": str(handle),
        "title": title,
        "code_file": code_file,
        "language": "python",
        "kernel_type": kernel_type,
        "is_private": bool(is_private),
        "enable_gpu": gpu,
        "enable_tpu": tpu,
        "enable_internet": bool(enable_internet),
        "keywords": list(keywords),
        "dataset_sources": [str(slugs.DatasetHandle.parse(s)) for s in dataset_sources],
        "kernel_sources": [str(slugs.KernelHandle.parse(s)) for s in kernel_sources],
        "competition_sources": [slugs.check_competition(s) for s in competition_sources],
        "model_sources": [slugs.model_source(s) for s in model_sources],
    }
    if accelerator and accelerator != "None":
        data["machine_shape"] = accelerator
    if docker_image_pinning_type is not None:
        if docker_image_pinning_type not in ("original", "latest"):
            raise NamingError(f"invalid docker_image_pinning_type {docker_image_pinning_type!r}",
                              hint="use 'original' or 'latest'")
        data["docker_image_pinning_type"] = docker_image_pinning_type
    return data


def dataset_metadata(
    owner: str,
    title: str,
    *,
    is_private: bool = True,
    license_name: str = "CC0-1.0",
    subtitle: Optional[str] = None,
    description: Optional[str] = None,
    keywords: Iterable[str] = (),
) -> dict:
    """dataset-metadata.json for ``owner``'s dataset titled ``title`` (id = owner/slugify(title))."""
    slug = slugs.dataset_slug(title)
    handle = slugs.DatasetHandle(slugs.check_owner(owner), slug)
    data = {
        "title": title,
        "id": str(handle),
        "licenses": [{"name": license_name}],
        "isPrivate": bool(is_private),
        "keywords": list(keywords),
    }
    if subtitle:
        if not 20 <= len(subtitle) <= 80:
            raise NamingError(f"dataset subtitle is {len(subtitle)} characters; Kaggle accepts 20..80",
                              context=f"subtitle {subtitle!r}", hint="lengthen or shorten it, or drop it")
        data["subtitle"] = subtitle
    if description:
        data["description"] = description
    return data


def model_metadata(owner: str, title: str, *, is_private: bool = True, description: str = "",
                   subtitle: str = "") -> dict:
    """model-metadata.json for ``owner``'s model titled ``title`` (slug = slugify(title))."""
    slug = slugs.model_slug(title)
    return {
        "ownerSlug": slugs.check_owner(owner),
        "title": title,
        "slug": slug,
        "subtitle": subtitle,
        "isPrivate": bool(is_private),
        "description": description or f"# {title}\n\nPublished with kagflow.\n",
        "publishTime": "",
        "provenanceSources": "",
    }


def model_instance_metadata(
    handle: slugs.ModelInstanceHandle,
    *,
    license_name: str = "Apache 2.0",
    overview: str = "",
    usage: str = "",
    fine_tunable: bool = False,
    training_data: Sequence[str] = (),
    model_instance_type: str = "Unspecified",
    base_model_instance: str = "",
    external_base_model_url: str = "",
) -> dict:
    """model-instance-metadata.json for an instance (framework in the camelCase enum form)."""
    return {
        "ownerSlug": handle.owner,
        "modelSlug": handle.model,
        "instanceSlug": handle.instance,
        "framework": slugs.framework_metadata_name(handle.framework),
        "overview": overview,
        "usage": usage or "# Model Format\n\nHugging Face `transformers` folder.\n",
        "licenseName": license_name,
        "fineTunable": bool(fine_tunable),
        "trainingData": list(training_data),
        "modelInstanceType": model_instance_type,
        "baseModelInstance": base_model_instance,
        "externalBaseModelUrl": external_base_model_url,
    }


def write_metadata(folder: Path, filename: str, data: dict) -> Path:
    """Write ``data`` as ``folder/filename`` atomically (temp file + rename), pretty-printed."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / filename
    fd, tmp = tempfile.mkstemp(prefix=f".{filename}.", dir=folder)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=2, ensure_ascii=False)
        f.write("\n")
    os.replace(tmp, target)
    return target


def read_metadata(path: Path) -> dict:
    with open(path, encoding="utf-8") as f:
        return json.load(f)
