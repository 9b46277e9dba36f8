"""A rendered kernel's parameters cell: every key of its recipe table ([train] or [infer]) passes through."""

from __future__ import annotations

import ast
import dataclasses

import nbformat
import pytest

from kagflow.notebooks.kernel_folder import notebook_params, render_kernel
from kagflow.project.config import DATASET_FILE_KEYS, INFER_KERNEL, TRAIN_KERNEL, load_config
from kagflow.project.sources import resolve_sources


def _other(value):
    """A value of the same kind as ``value`` that is not it."""
    if isinstance(value, bool):
        return not value
    if isinstance(value, (int, float)):
        return value + 3
    if isinstance(value, str):
        return value + "-set"
    if isinstance(value, tuple):
        return (*value, "extra") if value else ("set",)
    if value is None:
        return 7
    raise TypeError(value)


@pytest.mark.parametrize("name", [TRAIN_KERNEL, INFER_KERNEL])
def test_every_key_of_the_recipe_table_reaches_the_parameters_cell(project, name):
    """Each field of [train] / [infer] set to a non-default value is in the rendered notebook's parameters cell
    with that value: a key list in between would drop one (as [infer] attn_implementation once was)."""
    cfg = load_config(project)
    kind = cfg.kernel(name).kind
    table = getattr(cfg, kind)
    changed = {f.name: _other(getattr(table, f.name)) for f in dataclasses.fields(table)}
    changed.update({k: ("someone/some-data/set.csv",) for k in DATASET_FILE_KEYS if k in changed})  # a dataset file
    cfg = dataclasses.replace(cfg, **{kind: dataclasses.replace(table, **changed)})

    params = notebook_params(cfg, name, resolve_sources(cfg, name), tiny=False)
    for key, value in changed.items():
        got = params[key]
        assert (tuple(got) if isinstance(got, list) else got) == value, key

    cell = nbformat.read(render_kernel(cfg, name).notebook, as_version=4).cells[1]
    assert "parameters" in cell.metadata.tags
    assigned = {node.targets[0].id: ast.literal_eval(node.value) for node in ast.parse(cell.source).body
                if isinstance(node, ast.Assign)}  # a long value (the prompt template) is wrapped over lines
    for key in changed:
        assert assigned[key] == params[key], key


def test_an_inference_kernel_gets_a_deadline_inside_its_timeout(project):
    """[infer] deadline_s = 0 renders as the kernel's timeout less INFER_DEADLINE_MARGIN (the guard writes
    submission.csv before Kaggle stops the session); a value set in kagflow.toml stays."""
    from kagflow.classifier.config import INFER_DEADLINE_MARGIN

    cfg = load_config(project)
    timeout = cfg.kernel(INFER_KERNEL).timeout
    params = notebook_params(cfg, INFER_KERNEL, resolve_sources(cfg, INFER_KERNEL), tiny=False)
    assert cfg.infer.deadline_s == 0 and params["deadline_s"] == timeout - INFER_DEADLINE_MARGIN
    cfg = dataclasses.replace(cfg, infer=dataclasses.replace(cfg.infer, deadline_s=1234))
    assert notebook_params(cfg, INFER_KERNEL, resolve_sources(cfg, INFER_KERNEL), tiny=False)["deadline_s"] == 1234


def test_kernel_metadata_pins_the_image_and_the_wheels_version(project):
    """docker_image_pinning_type from [kernels.NAME] (default "original"), and the wheels dataset pinned to its
    version (owner/slug/N) as the models are; unpushed wheels are a pending source, never an unpinned one."""
    from kagflow.project.edit import set_value

    cfg = load_config(project)
    assert "alice/kagflow-offline-wheels" not in " ".join(resolve_sources(cfg, TRAIN_KERNEL).dataset_sources)
    assert ("wheels", "kagflow wheels push") in resolve_sources(cfg, TRAIN_KERNEL).missing
    set_value(project, "wheels", "version", 4)
    text = project.read_text().replace('docker_image_pinning_type = "original"',
                                       'docker_image_pinning_type = "latest"', 1)
    project.write_text(text)
    data = render_kernel(load_config(project), TRAIN_KERNEL).metadata
    assert data["dataset_sources"] == ["alice/kagflow-offline-wheels/4"]
    assert data["docker_image_pinning_type"] == "latest"
    assert render_kernel(load_config(project), INFER_KERNEL).metadata["docker_image_pinning_type"] == "original"
