"""Resolve a kernel's symbolic sources into the handles its kernel-metadata.json lists.

One place decides what "wheels", "base_model", "adapter_model", "competition" and
"kernel:<name>" mean, so the metadata, the check and the gateway always agree on slugs.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from kagflow.rules import slugs
from kagflow.project.config import Config, ModelConfig
from kagflow.errors import ConfigError, NamingError


@dataclass(frozen=True)
class KernelSources:
    dataset_sources: tuple[str, ...] = ()
    model_sources: tuple[str, ...] = ()
    competition_sources: tuple[str, ...] = ()
    kernel_sources: tuple[str, ...] = ()
    # symbolic sources that cannot be resolved yet, with the command that produces them
    missing: tuple[tuple[str, str], ...] = field(default=())


def wheels_handle(config: Config) -> slugs.DatasetHandle:
    return slugs.DatasetHandle(config.username, slugs.dataset_slug(config.wheels.title))


def model_handle(config: Config, model: ModelConfig) -> slugs.ModelHandle:
    return slugs.ModelHandle(config.username, slugs.model_slug(model.title))


def instance_handle(config: Config, model: ModelConfig) -> slugs.ModelInstanceHandle:
    return model_handle(config, model).instance(model.framework, model.instance)


def kernel_handle(config: Config, name: str) -> slugs.KernelHandle:
    return slugs.KernelHandle(config.username, slugs.kernel_slug(config.kernel(name).title))


def model_version_source(config: Config, which: str) -> str | None:
    """``owner/model/framework/instance/version`` of the pinned version, or None if unpublished."""
    model = getattr(config, which)
    if model.version <= 0:
        return None
    return slugs.model_source(instance_handle(config, model).version(model.version))


def resolve_sources(config: Config, kernel_name: str, adapters: tuple[str, ...] = ()) -> KernelSources:
    """The kernel's sources from kagflow.toml; ``adapters`` (an inference kernel's ensemble, e.g. the
    folds' adapter versions) replace the pinned adapter version among its model sources."""
    import dataclasses

    sources = _resolve_sources(config, kernel_name)
    if not adapters or config.kernel(kernel_name).kind != "infer":
        return sources
    pinned = model_version_source(config, "adapter_model")
    models = [s for s in sources.model_sources if s != pinned]
    models += [s for s in dict.fromkeys(adapters) if s not in models]
    return dataclasses.replace(sources, model_sources=tuple(models),
                               missing=tuple(m for m in sources.missing if m[0] != "adapter_model"))


def _resolve_sources(config: Config, kernel_name: str) -> KernelSources:
    kernel = config.kernel(kernel_name)
    datasets, models, competitions, kernels, missing = [], [], [], [], []
    for source in kernel.sources:
        where = f"[kernels.{kernel_name}] sources"
        kind, _, value = source.partition(":")
        if source == "wheels":
            datasets.append(str(wheels_handle(config)))
        elif source in ("base_model", "adapter_model"):
            handle = model_version_source(config, source)
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
            kernels.append(str(kernel_handle(config, value)))
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
    return KernelSources(tuple(datasets), tuple(models), tuple(competitions), tuple(kernels), tuple(missing))


def _parse(cls, value: str, config: Config, where: str):
    try:
        return cls.parse(value)
    except NamingError as e:
        raise ConfigError(f"{config.path.name}: {where}: {e.message}", context=e.context, hint=e.hint) from None
