"""Render a configured kernel into ``kernels/<slug>/``: its notebook and kernel-metadata.json."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from kagflow.classifier.config import INFER_DEADLINE_MARGIN, TIME_BUDGET_MARGIN
from kagflow.classifier.paths import ADAPTER_MARKER, InputNotFoundError, find_model_dir
from kagflow.errors import MissingFileError
from kagflow.project.config import IMPORT, INFER, MODELS, TRAIN, Config
from kagflow.project.sources import KernelSources, resolve_sources
from kagflow.rules import metadata, slugs


@dataclass(frozen=True)
class RenderedKernel:
    name: str
    handle: slugs.KernelHandle
    folder: Path
    notebook: Path
    metadata: dict
    sources: KernelSources


def notebook_params(config: Config, name: str, sources: KernelSources, *, tiny: bool,
                    overrides: dict | None = None) -> dict:
    """The values a rendered notebook's ``parameters`` cell holds: what every notebook needs, then the kernel kind's
    whole recipe table ([train] or [infer], with the stand-in's overrides when ``tiny``), then ``overrides``
    (``-p``, checked by kagflow.project.params)."""
    kernel = config.kernel(name)
    base_src, adapter_src = (config.model_source(which) or "" if which in kernel.sources else "" for which in MODELS)
    params = {
        "competition": config.project.competition,
        "base_model_hf_id": config.base_model.hf_id,
        "base_model_source": base_src,
        "wheels_dataset": sources.dataset_sources[0] if sources.dataset_sources else "",
        "kernel_title": kernel.title,
        "data": config.data.params(),
    }
    if kernel.kind == INFER:
        params["adapter_model_source"] = adapter_src
    params.update(config.recipe(kernel.kind, stand_in=tiny))
    if kernel.kind == TRAIN and not params["time_budget"]:  # stop, evaluate and save before Kaggle ends the session
        params["time_budget"] = max(kernel.timeout - TIME_BUDGET_MARGIN, kernel.timeout // 2)
    if kernel.kind == INFER and not params["deadline_s"]:  # a scored submission.csv before Kaggle ends the session
        params["deadline_s"] = max(kernel.timeout - INFER_DEADLINE_MARGIN, kernel.timeout // 2)
    params.update(overrides or {})
    return params


def render_kernel(config: Config, name: str, *, tiny: bool = False, overrides: dict | None = None,
                  adapters: tuple[str, ...] = ()) -> RenderedKernel:
    """Write ``kernels/<slug>/`` for kernel ``name``: notebook (train/infer from the templates;
    an imported kernel keeps its own notebook) and kernel-metadata.json from the config.

    ``adapters`` (an inference kernel's ensemble: the folds' adapter versions) replace the pinned
    adapter among its model sources, and its notebook averages them."""
    kernel = config.kernel(name)
    from kagflow.notebooks.render import render_notebook  # jinja/nbformat only when rendering

    handle = config.kernel_handle(name)
    folder = config.kernel_dir(name)
    sources = resolve_sources(config, name, adapters)
    if adapters and kernel.kind == INFER:
        overrides = {**(overrides or {}), "adapter_model_sources": list(adapters), "adapter_model_source": adapters[-1]}
    if kernel.kind == IMPORT:
        code_file = kernel.code_file or f"{handle.slug}.ipynb"
        nb_path = folder / code_file
        if not nb_path.is_file():
            raise MissingFileError(f"imported kernel {name!r} has no notebook at {nb_path}",
                                   hint=f"run `kagflow kernel import OWNER/SLUG --as {name}` again")
    else:
        code_file = f"{handle.slug}.ipynb"
        nb_path = folder / code_file
        render_notebook(kernel.kind, notebook_params(config, name, sources, tiny=tiny, overrides=overrides),
                        nb_path, template_dir=config.layout.templates)
    data = metadata.kernel_metadata(
        config.username, kernel.title, code_file,
        is_private=kernel.private,
        accelerator=kernel.accelerator,
        enable_internet=kernel.internet,
        dataset_sources=sources.dataset_sources,
        model_sources=sources.model_sources,
        competition_sources=sources.competition_sources,
        kernel_sources=sources.kernel_sources,
        docker_image_pinning_type=kernel.docker_image_pinning_type,
    )
    metadata.write_metadata(folder, metadata.KERNEL_METADATA, data)
    return RenderedKernel(name, handle, folder, nb_path, data, sources)


@dataclass(frozen=True)
class OutputSummary:
    files: list[tuple[str, int]]
    metrics: dict


def summarize_output(output: Path) -> OutputSummary:
    """The files of a pulled kernel output (relative path, size) and its metrics.json, if any."""
    output = Path(output)
    files = sorted((str(p.relative_to(output)), p.stat().st_size) for p in output.rglob("*")
                   if p.is_file() and p.name != ".complete")
    metrics = {}
    found = sorted(output.rglob("metrics.json"))
    if found:
        try:
            metrics = json.loads(found[0].read_text())
        except ValueError:
            metrics = {}
    return OutputSummary(files, metrics)


def adapter_dir(output: Optional[str], *, state_file: Path, hint: str, context: Optional[str] = None) -> Path:
    """The adapter folder of a training run's ``output`` (as recorded in ``state_file``): the shallowest
    folder holding adapter_config.json, the rule the inference notebook applies to a mounted adapter
    (:func:`kagflow.classifier.paths.find_model_dir`), so a ``checkpoints/checkpoint-N/`` the run kept
    (a stopped run, ``keep_checkpoints``) is never taken for the adapter. ``hint``: the command that
    makes a training output where the caller looks for one; ``context``: where ``output`` came from, when
    not from ``state_file`` (e.g. a folder given on the command line)."""
    if not output:
        raise MissingFileError("no training output to take the adapter from",
                               context=f"file {state_file}: no output recorded for kernel train", hint=hint)
    folder = Path(output)
    context = context or f"the training output recorded in {state_file}"
    if not folder.is_dir():
        raise MissingFileError(f"training output {folder} does not exist", context=context, hint=hint)
    try:
        found = find_model_dir(folder, marker=ADAPTER_MARKER)
    except InputNotFoundError:
        raise MissingFileError(f"no adapter ({ADAPTER_MARKER}) in {folder} or below it", context=context,
                               hint=hint) from None
    nested = sorted(p.parent.relative_to(found) for p in found.rglob(ADAPTER_MARKER) if p.parent != found)
    if nested:  # its sub-folders are published with it (as Kaggle unpacks them): never a checkpoint's adapter
        raise MissingFileError(f"the adapter folder {found} holds {len(nested)} other adapter(s) below it "
                               f"({', '.join(map(str, nested[:3]))}): they would be published with it",
                               context=context, hint="move the checkpoints out, or publish a folder holding "
                                                     "only the final adapter: kagflow model publish adapter --from DIR")
    return found
