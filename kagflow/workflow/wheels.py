"""The project's wheels dataset: which image, which requirements, where it goes."""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

from kagflow.project.config import Config

LOCAL_KAGGLE_IMAGE = "local-kaggle"   # the image the local Kaggle's kernels run on (kagflow.local.run.image)


def wheels_dir(config: Config) -> Path:
    """Where `kagflow wheels build` writes the wheels dataset: wheels/<dataset slug>/."""
    from kagflow.project.sources import wheels_handle

    return config.root / "wheels" / wheels_handle(config).slug


def project_image(config: Config, image: Optional[str] = None, *, local: Optional[bool] = None):
    """The target image: explicit, else the local Kaggle's image on the local target, else [wheels] image."""
    from kagflow.rules.image import current_image, load_image

    if local is None:
        from kagflow.hub.target import targets_local

        local = targets_local(config)
    name = image or (LOCAL_KAGGLE_IMAGE if local else config.wheels.image)
    if name == "this-machine":
        return current_image()
    if name == LOCAL_KAGGLE_IMAGE:
        from kagflow.local.run.image import kernel_image

        return kernel_image().target()
    path = Path(name)
    if not path.is_absolute() and (config.root / path).is_file():
        name = str(config.root / path)
    return load_image(name)


def build_for_project(config: Config, *, requirements: Optional[Sequence[str]] = None, image: Optional[str] = None,
                      index_url: Optional[str] = None, find_links: Sequence[str] = (), no_index: bool = False,
                      local: Optional[bool] = None):
    """Build the wheels dataset: ``requirements`` (default ``[wheels] requirements``) and the classifier wheel."""
    from kagflow.wheels.build import build_wheels
    from kagflow.wheels.classifier import build_classifier_wheel

    target = project_image(config, image, local=local)
    classifier, pin = build_classifier_wheel(config.root / ".kagflow" / "classifier-wheel")
    return build_wheels([*(requirements or config.wheels.requirements), pin], target, wheels_dir(config),
                        owner=config.username, title=config.wheels.title,
                        cache_dir=config.root / ".kagflow" / "wheel-cache", index_url=index_url,
                        find_links=[*find_links, str(classifier.parent)], no_index=no_index)
