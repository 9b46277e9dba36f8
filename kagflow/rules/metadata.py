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
from difflib import get_close_matches
from pathlib import Path
from typing import Iterable, Optional, Sequence
from urllib.parse import urlparse

from kagflow.errors import NamingError
from kagflow.rules import kaggle, slugs
from kagflow.rules.kaggle import ACCELERATORS, DEFAULT_ACCELERATOR, GPU_ACCELERATORS, TPU_ACCELERATORS

KERNEL_METADATA = "kernel-metadata.json"
DATASET_METADATA = "dataset-metadata.json"
MODEL_METADATA = "model-metadata.json"
MODEL_INSTANCE_METADATA = "model-instance-metadata.json"


# --------------------------------------------------------------------------- the values Kaggle takes

def _one_of(value: str, allowed: Sequence[str], what: str, field: str, source: str) -> str:
    if value in allowed:
        return value
    close = get_close_matches(value, list(allowed), n=1, cutoff=0.5)
    raise NamingError(f"{what} {value!r} is not one Kaggle accepts", context=f"{field}; the list: {source}",
                      hint=f"did you mean {close[0]!r}?" if close else "one of " + ", ".join(map(repr, allowed)))


def check_model_license(name: str) -> str:
    """A model instance's ``licenseName``: one of Kaggle's (kaggle-cli docs/models_metadata.md)."""
    if not name:
        raise NamingError("no licence: Kaggle refuses a model instance without one (the client: 'Please specify "
                          "a license')", context="model-instance-metadata.json: licenseName",
                          hint=f"name the licence the weights are under, one of: {', '.join(kaggle.MODEL_LICENSES)} "
                               f"(Gemma weights are under Google's Gemma terms, {kaggle.GEMMA_TERMS_URL}, which are "
                               "not on Kaggle's list: read them and pick what they allow)")
    return _one_of(name, kaggle.MODEL_LICENSES, "model licence", "model-instance-metadata.json: licenseName",
                   "kaggle-cli docs/models_metadata.md")


def check_dataset_license(name: str) -> str:
    """A dataset's ``licenses[0].name``: one of Kaggle's (kaggle-cli docs/datasets_metadata.md)."""
    return _one_of(name, kaggle.DATASET_LICENSES, "dataset licence", "dataset-metadata.json: licenses[0].name",
                   "kaggle-cli docs/datasets_metadata.md")


def check_instance_type(name: str) -> str:
    """``modelInstanceType``: one of kagglesdk's ModelInstanceType members ("InternalVariant" is not one: a variant
    of another Kaggle model instance is a "KaggleVariant")."""
    if name == "InternalVariant":  # docs/models_metadata.md's word for it, not the enum's
        raise NamingError("model instance type 'InternalVariant' is not one Kaggle accepts (the client's enum "
                          "lookup fails on it)", context="model-instance-metadata.json: modelInstanceType; the list: "
                          "kagglesdk's ModelInstanceType", hint=f"a variant of another Kaggle model instance is "
                          f"{kaggle.KAGGLE_VARIANT!r}, with its base instance")
    return _one_of(name, kaggle.INSTANCE_TYPES, "model instance type", "model-instance-metadata.json: "
                   "modelInstanceType", "kagglesdk's ModelInstanceType")


def check_image_pinning(value: str) -> str:
    """``docker_image_pinning_type``: "original" (the image the kernel first ran on) or "latest"."""
    return _one_of(value, kaggle.IMAGE_PINNING_TYPES, "docker image pinning type",
                   "kernel-metadata.json: docker_image_pinning_type", "the client's valid_push_pinning_types")


def check_external_url(url: str) -> str:
    """``externalBaseModelUrl``: an http(s) URL of the base model (e.g. its Hugging Face page)."""
    parsed = urlparse(url)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise NamingError(f"external base model URL {url!r} is not an http(s) URL",
                          context="model-instance-metadata.json: externalBaseModelUrl",
                          hint=f"e.g. {kaggle.hugging_face_url('google/gemma-2-9b-it')}")
    return url


# --------------------------------------------------------------------------- the four files

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
    docker_image_pinning_type: str = kaggle.DEFAULT_IMAGE_PINNING,
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
        "docker_image_pinning_type": check_image_pinning(docker_image_pinning_type),
    }
    if accelerator and accelerator != "None":
        data["machine_shape"] = accelerator
    return data


def dataset_metadata(
    owner: str,
    title: str,
    *,
    license_name: str,
    is_private: bool = True,
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
        "licenses": [{"name": check_dataset_license(license_name)}],
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
    license_name: str,
    overview: str = "",
    usage: str = "",
    fine_tunable: bool = False,
    training_data: Sequence[str] = (),
    model_instance_type: str = "Unspecified",
    base_model_instance: str = "",
    external_base_model_url: str = "",
) -> dict:
    """model-instance-metadata.json for an instance (framework in the camelCase enum form). A "KaggleVariant" names
    its ``base_model_instance`` (owner/model/framework/instance), an "ExternalVariant" its
    ``external_base_model_url``; each is refused without it, and written empty for the other types."""
    model_instance_type, base_model_instance, external_base_model_url = model_instance_lineage(
        model_instance_type, base_model_instance, external_base_model_url)
    return {
        "ownerSlug": handle.owner,
        "modelSlug": handle.model,
        "instanceSlug": handle.instance,
        "framework": slugs.framework_metadata_name(handle.framework),
        "overview": overview,
        "usage": usage or "# Model Format\n\nHugging Face `transformers` folder.\n",
        "licenseName": check_model_license(license_name),
        "fineTunable": bool(fine_tunable),
        "trainingData": list(training_data),
        "modelInstanceType": model_instance_type,
        "baseModelInstance": base_model_instance,
        "externalBaseModelUrl": external_base_model_url,
    }


def model_instance_lineage(model_instance_type: str, base_model_instance: str,
                           external_base_model_url: str) -> tuple[str, str, str]:
    """``modelInstanceType`` with what it derives from, checked: a "KaggleVariant" names its base model instance
    (owner/model/framework/instance), an "ExternalVariant" its base model's URL; the other key is emptied."""
    check_instance_type(model_instance_type)
    if model_instance_type == kaggle.KAGGLE_VARIANT:
        if not base_model_instance:
            raise NamingError("a KaggleVariant instance names its base model instance",
                              context="model-instance-metadata.json: baseModelInstance",
                              hint=f"give it as {slugs.ModelInstanceHandle.FORM}")
        base_model_instance = str(slugs.ModelInstanceHandle.parse(base_model_instance))
    else:
        base_model_instance = ""
    if model_instance_type == kaggle.EXTERNAL_VARIANT:
        check_external_url(external_base_model_url)
    else:
        external_base_model_url = ""
    return model_instance_type, base_model_instance, external_base_model_url


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
