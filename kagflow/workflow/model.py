"""`kagflow model publish base|adapter`: the base model or a trained adapter as a new model instance version.

The metadata files are written from kagflow.toml into ``models/<slug>/``, the files published through the hub
(nothing uploaded when unchanged), the version pinned where the target keeps it and recorded in the state.

The hub (the official client) is imported inside the verbs that talk to it: the CLI's start stays fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from kagflow.errors import KagflowError
from kagflow.project.config import ADAPTER_MODEL, BASE_MODEL, TRAIN_KERNEL, Config
from kagflow.project.lock import locked
from kagflow.project.state import ModelRecord
from kagflow.rules import metadata

COMPETITION_NOTE = "for the {} competition"  # in a model's description: the competition it was made for
ADAPTER_HINT = (f"run `kagflow kernel push {TRAIN_KERNEL} --wait` and `kagflow kernel pull {TRAIN_KERNEL}`, "
                "or publish a folder: kagflow model publish adapter --from DIR")


def write_model_metadata(config: Config, which: str, license_name: str) -> tuple[Path, Path]:
    """models/<slug>/model-metadata.json and models/<slug>/<instance>/model-instance-metadata.json (the instance's
    lineage from ``Config.lineage``, its licence ``license_name``)."""
    model = config.model(which)
    model_dir, instance_dir = config.model_dirs(which)
    metadata.write_metadata(model_dir, metadata.MODEL_METADATA, metadata.model_metadata(
        config.username, model.title, is_private=model.private,
        description=f"# {model.title}\n\n{'Base model' if which == BASE_MODEL else 'LoRA adapter'} "
                    f"{COMPETITION_NOTE.format(config.project.competition)}, published with kagflow.\n"))
    lineage = config.lineage(which)
    metadata.write_metadata(instance_dir, metadata.MODEL_INSTANCE_METADATA, metadata.model_instance_metadata(
        config.instance_handle(which), license_name=license_name, fine_tunable=which == BASE_MODEL,
        training_data=lineage.training_data, model_instance_type=lineage.instance_type,
        base_model_instance=lineage.base_instance, external_base_model_url=lineage.base_url))
    return model_dir, instance_dir


def guard_competition(gw, config: Config, which: str) -> None:
    """Refuse to add a version to an adapter model made for another competition (its description names it):
    one project's adapter would silently replace another's."""
    import re

    from kagflow.hub.models import model_description

    if which != ADAPTER_MODEL:
        return  # the base model is the same weights for any competition: shared on purpose
    found = re.search(COMPETITION_NOTE.format(r"(\S+)"), model_description(gw, config.model_handle(which)) or "")
    if found and found.group(1) != config.project.competition:
        raise KagflowError(f"model {config.model_handle(which)} is the adapter of competition {found.group(1)}, not "
                           f"this project's {config.project.competition}: not published",
                           context=f"file {config.path}, [{which}] title = {config.model(which).title!r}",
                           hint=f"give this project its own title, e.g. title = \"{config.project.competition} "
                                "adapter\" (kagflow init --competition writes such titles), then publish again")


def publish_files(gw, config: Config, which: str, source: Path, *, license_name: str, notes: str = ""):
    """Publish ``source`` as the next version of ``which``'s instance (its metadata written first)."""
    from kagflow.hub.models import publish_model

    guard_competition(gw, config, which)
    model_dir, instance_dir = write_model_metadata(config, which, license_name)
    return publish_model(gw, config.instance_handle(which), model_dir, instance_dir, source, notes=notes)


def adapter_dir(session, output: Optional[str] = None) -> Path:
    """The adapter folder (holding adapter_config.json) of ``output``, by default the last pulled training output."""
    from kagflow.notebooks.kernel_folder import adapter_dir as find

    return find(output or session.state.kernel(TRAIN_KERNEL).output, state_file=session.state.path, hint=ADAPTER_HINT)


@locked("publish {which}")
def publish(session, which: str, *, source: Optional[Path] = None, notes: str = ""):
    """Publish the base model or the adapter as a new instance version, unless unchanged; ``source``: a folder (for
    the adapter a training output is searched for its final adapter, never a kept checkpoint)."""
    from kagflow.notebooks.kernel_folder import adapter_dir as find

    if source is None:
        source = session.target.base_model_dir() if which == BASE_MODEL else adapter_dir(session)
    elif which == ADAPTER_MODEL:  # a whole training output given: its final adapter, not kept checkpoints too
        source = find(str(source), state_file=session.state.path, context=f"--from {source}",
                      hint="pass the training output or the folder holding adapter_config.json")
    result = publish_files(session.gateway, session.target.config, which, source,
                           license_name=session.target.model_license(which), notes=notes)
    session.target.pin(which, result.handle.version)
    session.state.record_model(which, ModelRecord(result.source, result.handle.version, result.digest,
                                                  result.uploaded))
    return result
