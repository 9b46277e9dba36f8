"""The project's wheels dataset: which image, which requirements, where it goes."""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

from kagflow.config import Config


def wheels_dir(config: Config) -> Path:
    """Where `kagflow wheels build` writes the wheels dataset: wheels/<dataset slug>/."""
    from kagflow.sources import wheels_handle

    return config.root / "wheels" / wheels_handle(config).slug


def project_image(config: Config, image: Optional[str] = None, *, local: Optional[bool] = None):
    """The target image: explicit, else this machine on the local target, else [wheels] image."""
    from kagflow.image import current_image, load_image

    if local is None:
        from kagflow.hub.target import targets_local

        local = targets_local(config)
    name = image or ("this-machine" if local else config.wheels.image)
    if name == "this-machine":
        return current_image()
    path = Path(name)
    if not path.is_absolute() and (config.root / path).is_file():
        name = str(config.root / path)
    return load_image(name)


def build_for_project(config: Config, *, requirements: Optional[Sequence[str]] = None, image: Optional[str] = None,
                      index_url: Optional[str] = None, find_links: Sequence[str] = (), no_index: bool = False,
                      local: Optional[bool] = None):
    from kagflow.wheels.build import build_wheels

    target = project_image(config, image, local=local)
    if target.name == "this-machine" and not index_url and not find_links:
        no_index = True  # this machine already has everything installed: resolve offline
    return build_wheels(list(requirements or config.wheels.requirements), target, wheels_dir(config),
                        owner=config.username, title=config.wheels.title,
                        cache_dir=config.root / ".kagflow" / "wheel-cache", index_url=index_url,
                        find_links=list(find_links), no_index=no_index)
