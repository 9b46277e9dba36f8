"""`kagflow wheels build|push`: the project's offline wheels dataset (which image, which requirements, where).

The hub (the official client) is imported inside the verbs that talk to it: the CLI's start stays fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

from kagflow.project.config import WHEELS, Config
from kagflow.project.lock import locked
from kagflow.project.state import DatasetRecord
from kagflow.workflow.target import LOCAL_KAGGLE_IMAGE


def target_image(config: Config, name: str):
    """The image ``name`` names: "this-machine", the local Kaggle's image, a saved image.json (relative to the
    project) or a snapshot shipped with kagflow."""
    from kagflow.rules.image import current_image, load_image

    if name == "this-machine":
        return current_image()
    if name == LOCAL_KAGGLE_IMAGE:
        from kagflow.local.run.image import kernel_image

        return kernel_image().target()
    path = Path(name)
    if not path.is_absolute() and (config.root / path).is_file():
        name = str(config.root / path)
    return load_image(name)


def build_wheels(session, *, requirements: Optional[Sequence[str]] = None, image: Optional[str] = None,
                 index_url: Optional[str] = None, find_links: Sequence[str] = (), no_index: bool = False):
    """Build the wheels dataset for ``image`` (default: the target's: [wheels] image on Kaggle, the local Kaggle's
    image on the local target)."""
    return build_dataset(session.config, image or session.target.wheels_image, requirements=requirements,
                         index_url=index_url, find_links=find_links, no_index=no_index)


def build_dataset(config: Config, image: str, *, requirements: Optional[Sequence[str]] = None,
                  index_url: Optional[str] = None, find_links: Sequence[str] = (), no_index: bool = False):
    """``requirements`` (default ``[wheels] requirements``) and the classifier wheel, resolved for image ``image``
    into wheels/<slug>/."""
    from kagflow.wheels.build import build_wheels as build
    from kagflow.wheels.classifier import build_classifier_wheel

    layout = config.layout
    classifier, pin = build_classifier_wheel(layout.classifier_wheel)
    return build([*(requirements or config.wheels.requirements), pin], target_image(config, image),
                 config.wheels_dir(), owner=config.username, title=config.wheels.title,
                 license_name=config.wheels.license, cache_dir=layout.wheel_cache,
                 index_url=index_url, find_links=[*find_links, str(classifier.parent)], no_index=no_index)


@locked("push wheels")
def push_wheels(session, *, notes: str = ""):
    """Create the wheels dataset or a new version of it (nothing uploaded when unchanged); recorded in the state."""
    from kagflow.hub.datasets import push_dataset

    result = push_dataset(session.gateway, session.config.wheels_dir(), notes=notes)
    session.target.pin(WHEELS, result.version)
    session.state.record_wheels(DatasetRecord(str(result.handle), result.digest, result.version))
    return result
