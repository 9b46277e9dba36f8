"""The train and infer notebooks: Jinja2 templates -> nbformat .ipynb, and local runs through nbclient.

Rendered notebooks carry a python3 kernelspec, a cell tagged ``parameters`` (papermill's
convention) and the classifier package inlined from its sources, so kernels run kagflow's
tested code offline.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import kagflow
from kagflow.classifier.config import defaults
from kagflow.classifier.infer import InferConfig
from kagflow.classifier.paths import INPUT_ROOT_ENV, WORKING_ROOT_ENV
from kagflow.classifier.train import TrainConfig
from kagflow.errors import KagflowError, MissingFileError

CLASSIFIER_DIR = Path(__file__).parent / "classifier"
PACKAGE_NAME = "kagflow_classifier"  # the inlined package's import name inside a kernel
KERNELSPEC = {"name": "python3", "display_name": "Python 3", "language": "python"}

OFFLINE_INSTALL = Path(__file__).parent / "offline_install.py"  # inlined as the install cell
REQUIRED_PACKAGES = ("transformers", "peft", "bitsandbytes", "accelerate")

_SHARED = {
    "competition": "llm-classification-finetuning",
    "kernel_title": "",
    "base_model_source": "",  # Kaggle model handle owner/model/framework/instance/version ("": not attached)
    "base_model_hf_id": "unsloth/gemma-2-9b-it-bnb-4bit",  # also searched among the mounts
    "allow_hub": False,  # download an unmounted base from the Hugging Face Hub (needs internet)
    "wheels_dataset": "",  # informational: every mounted wheels dataset is installed
}
DEFAULT_PARAMS = {
    "train": {**_SHARED, "adapter_name": "gemma2-adapter", "checkpoint_dir": "checkpoints",
              **defaults(TrainConfig)},
    # adapter_model_sources: an ensemble's adapters (the folds), averaged; empty: adapter_model_source alone
    "infer": {**_SHARED, "adapter_model_source": "", "adapter_model_sources": [], **defaults(InferConfig)},
}


class NotebookExecutionError(KagflowError):
    """A cell of a locally executed notebook raised."""

    def __init__(self, message: str, *, cell_index: int | None, ename: str, evalue: str,
                 context: str | None = None, hint: str | None = None):
        super().__init__(message, context=context, hint=hint)
        self.cell_index = cell_index
        self.ename = ename
        self.evalue = evalue


def default_template_dir() -> Path:
    """The templates shipped with kagflow: ``kagflow/templates`` (a link to the repository's
    ``templates/`` in a checkout, a real folder in an installed wheel)."""
    return Path(kagflow.__file__).parent / "templates"


def classifier_sources() -> dict[str, str]:
    """Relative path -> source of every file of kagflow/classifier (what notebooks inline)."""
    return {p.relative_to(CLASSIFIER_DIR).as_posix(): p.read_text(encoding="utf-8")
            for p in sorted(CLASSIFIER_DIR.rglob("*.py")) if "__pycache__" not in p.parts}


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


def render_notebook(kind: str, params: dict, out_path: Path, *, template_dir: Path | None = None) -> Path:
    """Render ``templates/<kind>.ipynb.j2`` with ``params`` into a validated notebook at ``out_path``."""
    import jinja2
    import nbformat

    params = notebook_params(kind, params)
    template_dir = Path(template_dir) if template_dir else default_template_dir()
    template_path = template_dir / f"{kind}.ipynb.j2"
    if not template_path.is_file():
        raise MissingFileError(f"No notebook template for {kind!r}", context=str(template_path))
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(template_dir)), undefined=jinja2.StrictUndefined,
                             trim_blocks=True, lstrip_blocks=True, autoescape=False)
    env.filters["pyrepr"] = repr
    text = env.get_template(template_path.name).render(
        kind=kind, params=params, package=PACKAGE_NAME, sources=classifier_sources(),
        offline_install=OFFLINE_INSTALL.read_text(encoding="utf-8"), required=list(REQUIRED_PACKAGES),
        kernelspec=KERNELSPEC, version=kagflow.__version__,
    )
    try:
        nb = nbformat.from_dict(json.loads(text))
    except json.JSONDecodeError as exc:
        raise KagflowError(f"Template {template_path.name} did not render to JSON: {exc}",
                           context=str(template_path)) from exc
    for i, cell in enumerate(nb.cells):
        cell["id"] = f"{kind}-{i}"
    nbformat.validate(nb)
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, str(out_path))
    return out_path


def execute_notebook(nb_path, *, input_root, working_root, timeout=None, env=None) -> Path:
    """Run a notebook in a python3 Jupyter kernel as Kaggle would: inputs under ``input_root``,
    cwd and outputs in ``working_root``. Write the executed notebook next to ``nb_path`` as
    ``<stem>.executed.ipynb`` (also when a cell fails) and return its path."""
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    nb_path, working_root = Path(nb_path), Path(working_root)
    working_root.mkdir(parents=True, exist_ok=True)
    nb = nbformat.read(str(nb_path), as_version=4)
    kernel_env = {**os.environ, **(env or {}),
                  INPUT_ROOT_ENV: str(Path(input_root).resolve()), WORKING_ROOT_ENV: str(working_root.resolve())}
    client = NotebookClient(nb, timeout=timeout, kernel_name=KERNELSPEC["name"],
                            resources={"metadata": {"path": str(working_root)}})
    out_path = nb_path.with_name(f"{nb_path.stem}.executed.ipynb")
    try:
        client.execute(env=kernel_env, cwd=str(working_root))
    except CellExecutionError as exc:
        nbformat.write(nb, str(out_path))
        index = _failed_cell(nb)
        raise NotebookExecutionError(
            f"{nb_path.name}: cell {index} raised {exc.ename}: {exc.evalue}",
            cell_index=index, ename=exc.ename, evalue=exc.evalue,
            context=f"executed notebook with the traceback: {out_path}",
        ) from exc
    nbformat.write(nb, str(out_path))
    return out_path


def _failed_cell(nb) -> int | None:
    for i, cell in enumerate(nb.cells):
        if any(o.get("output_type") == "error" for o in cell.get("outputs", [])):
            return i
    return None
