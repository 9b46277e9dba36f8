"""The train and infer notebooks: Jinja2 templates -> nbformat .ipynb (run by kagflow.local.run.runner).

Rendered notebooks carry a python3 kernelspec, a cell tagged ``parameters`` (papermill's
convention) and an install cell that installs the wheels dataset (peft, bitsandbytes and the
classifier as the ``kagflow-classifier`` wheel) offline; the later cells import ``kagflow_classifier``.
A project's own ``templates/`` files take precedence over the packaged ones.
"""

from __future__ import annotations

import json
from pathlib import Path

import kagflow
from kagflow.classifier.config import InferConfig, TrainConfig, defaults
from kagflow.errors import KagflowError, MissingFileError
from kagflow.project.config import DataConfig
from kagflow.rules.kaggle import KERNELSPEC
from kagflow.wheels.build import INSTALLER_NAME
from kagflow.wheels.classifier import DIST_NAME, IMPORT_NAME

PACKAGE_NAME = IMPORT_NAME  # the classifier's import name inside a kernel

REQUIRED_PACKAGES = ("transformers", "peft", "bitsandbytes", "accelerate", DIST_NAME)
LINE_WIDTH = 110  # a parameter's value is wrapped to lines of this length
MAX_CELL_LINES = 80  # every cell fits on a screen: readable and editable on Kaggle's site

_SHARED = {
    "competition": "llm-classification-finetuning",
    "kernel_title": "",
    "base_model_source": "",  # Kaggle model handle owner/model/framework/instance/version ("": not attached)
    "base_model_hf_id": "unsloth/gemma-2-9b-it-bnb-4bit",  # also searched among the mounts
    "allow_hub": False,  # download an unmounted base from the Hugging Face Hub (needs internet)
    "wheels_dataset": "",  # informational: every mounted wheels dataset is installed
    "data": DataConfig().params(),  # kagflow.toml's [data], whole: the classifier's Task.from_params
}
DEFAULT_PARAMS = {
    "train": {**_SHARED, "adapter_name": "gemma2-adapter", "checkpoint_dir": "checkpoints",
              **defaults(TrainConfig)},
    # adapter_model_sources: an ensemble's adapters (the folds), averaged; empty: adapter_model_source alone
    "infer": {**_SHARED, "adapter_model_source": "", "adapter_model_sources": [], **defaults(InferConfig)},
}


def default_template_dir() -> Path:
    """The templates shipped with kagflow: ``kagflow/notebooks/templates``."""
    return Path(__file__).resolve().parent / "templates"


def notebook_params(kind: str, params: dict) -> dict:
    """The defaults of ``kind`` overridden by ``params``; unknown keys or non-literal values raise."""
    if kind not in DEFAULT_PARAMS:
        raise KagflowError(f"Unknown notebook kind: {kind}", hint=f"use one of {sorted(DEFAULT_PARAMS)}")
    unknown = sorted(set(params) - set(DEFAULT_PARAMS[kind]))
    if unknown:
        raise KagflowError(f"Unknown {kind} notebook parameters: {', '.join(unknown)}",
                           hint=f"known parameters: {', '.join(DEFAULT_PARAMS[kind])}")
    merged = {**DEFAULT_PARAMS[kind], **params}
    for key, value in merged.items():
        if not _is_literal(value):
            raise KagflowError(f"Notebook parameter {key} is not a plain literal: {value!r}",
                               hint="use str, int, float, bool, None, or lists/dicts of them")
    return merged


def _is_literal(value) -> bool:
    if value is None or isinstance(value, (str, int, float, bool)):
        return True
    if isinstance(value, (list, tuple)):
        return all(_is_literal(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _is_literal(v) for k, v in value.items())
    return False


def _pyrepr(value) -> str:
    """A parameter's value as a Python literal, a long one (the ``data`` table) wrapped to readable lines."""
    import pprint

    return pprint.pformat(value, width=LINE_WIDTH, sort_dicts=False)


def render_notebook(kind: str, params: dict, out_path: Path, *, template_dir: Path | None = None) -> Path:
    """Render ``<kind>.ipynb.j2`` with ``params`` into a validated notebook at ``out_path``.

    Templates are looked up in ``template_dir`` first (a project's ``templates/``), then in the
    packaged ones, file by file: a project may override ``train.ipynb.j2`` alone, or ``_cells.j2``."""
    import jinja2
    import nbformat

    params = notebook_params(kind, params)
    search = [str(d) for d in (template_dir, default_template_dir()) if d and Path(d).is_dir()]
    template_path = next((Path(d) / f"{kind}.ipynb.j2" for d in search if (Path(d) / f"{kind}.ipynb.j2").is_file()),
                         default_template_dir() / f"{kind}.ipynb.j2")
    if not template_path.is_file():
        raise MissingFileError(f"No notebook template for {kind!r}", context=str(template_path))
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(search), undefined=jinja2.StrictUndefined,
                             trim_blocks=True, lstrip_blocks=True, autoescape=False)
    env.filters["pyrepr"] = _pyrepr
    text = env.get_template(template_path.name).render(
        kind=kind, params=params, package=PACKAGE_NAME, installer=INSTALLER_NAME, required=list(REQUIRED_PACKAGES),
        kernelspec=KERNELSPEC, version=kagflow.__version__,
    )
    try:
        nb = nbformat.from_dict(json.loads(text))
    except json.JSONDecodeError as exc:
        raise KagflowError(f"Template {template_path.name} did not render to JSON: {exc}",
                           context=str(template_path)) from exc
    for i, cell in enumerate(nb.cells):
        cell["id"] = f"{kind}-{i}"
        lines = len(cell.source.splitlines())
        if lines > MAX_CELL_LINES:
            raise KagflowError(f"cell {i} of the {kind} notebook has {lines} lines (at most {MAX_CELL_LINES})",
                               context=str(template_path), hint="split the cell or move the code into the classifier")
    nbformat.validate(nb)
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, str(out_path))
    return out_path
