"""Resolve a kernel's symbolic sources into the handles its kernel-metadata.json lists.

One place decides what "wheels", "base_model", "adapter_model", "competition" and
"kernel:<name>" mean, so the metadata, the check and the gateway always agree on slugs.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from kagflow.errors import ConfigError, NamingError
from kagflow.project.config import ADAPTER_MODEL, DATASET_FILE_KEYS, INFER, MODELS, TRAIN, WHEELS, Config
from kagflow.rules import slugs


@dataclass(frozen=True)
class KernelSources:
    dataset_sources: tuple[str, ...] = ()
    model_sources: tuple[str, ...] = ()
    competition_sources: tuple[str, ...] = ()
    kernel_sources: tuple[str, ...] = ()
    # symbolic sources that cannot be resolved yet, with the command that produces them
    missing: tuple[tuple[str, str], ...] = field(default=())


def resolve_sources(config: Config, kernel_name: str, adapters: tuple[str, ...] = ()) -> KernelSources:
    """The kernel's sources from kagflow.toml; ``adapters`` (an inference kernel's ensemble, e.g. the
    folds' adapter versions) replace the pinned adapter version among its model sources."""
    sources = _resolve_sources(config, kernel_name)
    if not adapters or config.kernel(kernel_name).kind != INFER:
        return sources
    pinned = config.model_source(ADAPTER_MODEL)
    models = [s for s in sources.model_sources if s != pinned]
    models += [s for s in dict.fromkeys(adapters) if s not in models]
    return dataclasses.replace(sources, model_sources=tuple(models),
                               missing=tuple(m for m in sources.missing if m[0] != ADAPTER_MODEL))


def _resolve_sources(config: Config, kernel_name: str) -> KernelSources:
    kernel = config.kernel(kernel_name)
    datasets, models, competitions, kernels, missing = [], [], [], [], []
    for source in kernel.sources:
        where = f"[kernels.{kernel_name}] sources"
        kind, _, value = source.partition(":")
        if source == WHEELS:  # pinned to a version, as the models are
            pinned = config.wheels_source()
            if pinned is None:
                missing.append((source, "kagflow wheels push"))
            else:
                datasets.append(pinned)
        elif source in MODELS:
            handle = config.model_source(source)
            if handle is None:
                which = source.split("_")[0]
                missing.append((source, f"kagflow model publish {which}"))
            else:
                models.append(handle)
        elif source == "competition":
            competitions.append(config.project.competition)
        elif kind == "kernel":
            if value not in config.kernels:
                raise ConfigError(f"{config.path.name}: {where} names kernel {value!r}, which is not configured",
                                  context="kernels: " + ", ".join(sorted(config.kernels)),
                                  hint=f"add [kernels.{value}] or remove {source!r}")
            kernels.append(str(config.kernel_handle(value)))
        elif kind == "notebook":
            kernels.append(str(_parse(slugs.KernelHandle, value, config, where)))
        elif kind == "dataset":
            datasets.append(str(_parse(slugs.DatasetHandle, value, config, where)))
        elif kind == "model":
            models.append(str(_parse(slugs.ModelInstanceVersionHandle, value, config, where)))
        elif kind == "competition":
            competitions.append(slugs.check_competition(value))
        else:
            raise ConfigError(
                f"{config.path.name}: {where} has unknown source {source!r}",
                context=f"file {config.path}",
                hint='use "wheels", "base_model", "adapter_model", "competition", "kernel:NAME", '
                     '"dataset:owner/slug", "notebook:owner/slug" or "model:owner/model/framework/instance/version"')
    if kernel.kind == TRAIN:  # the datasets of [train] extra_train_files and pseudo_label_files
        for key in DATASET_FILE_KEYS:
            datasets += [f.handle for f in config.dataset_files(key) if f.handle not in datasets]
    return KernelSources(tuple(datasets), tuple(models), tuple(competitions), tuple(kernels), tuple(missing))


def _parse(cls, value: str, config: Config, where: str):
    try:
        return cls.parse(value)
    except NamingError as e:
        raise ConfigError(f"{config.path.name}: {where}: {e.message}", context=e.context, hint=e.hint) from None
