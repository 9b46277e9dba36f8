"""kagflow.toml → frozen dataclasses, validated on load; the handles and paths the config names.

Every key is declared once, in the dataclasses below, with its type and default; ``defaults.toml`` beside this
module is the file `kagflow init` writes (every table, commented), and a test holds it to these defaults.
Loading reports the first problem as one message naming the file, the key, its value and the fix.

A new table is a dataclass, a field of :class:`Config` and a line in :data:`TABLES` (plus its keys in
``defaults.toml``); its own checks, if any, a function in :data:`CHECKS`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from difflib import get_close_matches
from functools import cache
from pathlib import Path
from typing import Callable, Optional

import tomllib

# [train] and [infer] are the classifier's own run configurations (stdlib-only module): one
# definition of the seed's recipe for kagflow.toml, the notebooks and the classifier
from kagflow.classifier.config import InferConfig, TrainConfig
from kagflow.errors import ConfigError, KagflowError
from kagflow.project.credentials import credentials_username
from kagflow.project.layout import CONFIG_FILE, Layout
from kagflow.project.typed import build, toml_value
from kagflow.rules import kaggle, metadata, slugs

COMPETITION = "llm-classification-finetuning"
DEFAULTS_FILE = Path(__file__).with_name("defaults.toml")

# A kernel's kind: what kagflow renders for it, with the recipe table its parameters cell holds; or an
# imported notebook, pushed as it is.
TRAIN, INFER, IMPORT = "train", "infer", "import"
RECIPE_TABLES = {TRAIN: TrainConfig, INFER: InferConfig}  # kind -> its table ([train], [infer])
KERNEL_KINDS = (*RECIPE_TABLES, IMPORT)
# The kernels the flow renders, pushes and submits, by their name in [kernels] (of kind train and infer)
TRAIN_KERNEL, INFER_KERNEL = "train", "infer"
# The two models a project publishes, by their table's name
BASE_MODEL, ADAPTER_MODEL = "base_model", "adapter_model"
MODELS = (BASE_MODEL, ADAPTER_MODEL)
WHEELS = "wheels"  # the wheels dataset, pinned like the models (Config.with_versions)


@cache
def default_tables() -> dict:
    """``defaults.toml`` read as plain tables (what kagflow init writes; the stand-ins' overrides live there)."""
    return tomllib.loads(DEFAULTS_FILE.read_text(encoding="utf-8"))


def _default(*keys: str):
    """A default_factory reading ``defaults.toml`` at ``keys`` (the dict-valued defaults' one home)."""
    def factory():
        value = default_tables()
        for key in keys:
            value = value[key]
        return dict(value)
    return field(default_factory=factory)


# --------------------------------------------------------------------------- tables

@dataclass(frozen=True)
class ProjectConfig:
    competition: str = COMPETITION
    username: str = ""  # empty: the Kaggle credentials' username (or "kagflow" on the local target)
    target: str = "auto"  # auto | local | kaggle


@dataclass(frozen=True)
class ModelConfig:
    title: str  # Kaggle model title; its slug is the model handle's slug
    instance: str  # instance slug
    framework: str = "transformers"
    private: bool = True
    license: str = ""  # licenseName, one of Kaggle's (rules.kaggle.MODEL_LICENSES); a publish to Kaggle needs one
    # modelInstanceType (rules.kaggle.INSTANCE_TYPES) and what it derives from: a KaggleVariant's base_instance
    # (owner/model/framework/instance), an ExternalVariant's base_url; empty: derived (Config.lineage)
    instance_type: str = "Unspecified"
    base_instance: str = ""
    base_url: str = ""
    training_data: tuple[str, ...] = ()  # trainingData; empty: derived (Config.lineage)
    version: int = 0  # pinned instance version, written by `kagflow model publish` (0: none yet)


@dataclass(frozen=True)
class BaseModelConfig(ModelConfig):
    instance_type: str = kaggle.EXTERNAL_VARIANT  # the Hugging Face checkpoint, re-published
    hf_id: str = "unsloth/gemma-2-9b-it-bnb-4bit"
    local_dir: str = ""  # a Hugging Face snapshot folder; empty: the offline stand-in on the local target
    stand_in: str = "tiny"  # the offline stand-in (STAND_INS): "tiny" (random Gemma-2) or "gemma3-270m"


@dataclass(frozen=True)
class AdapterModelConfig(ModelConfig):
    instance_type: str = kaggle.KAGGLE_VARIANT  # a fine-tune of [base_model]'s instance


@dataclass(frozen=True)
class Lineage:
    """What a model instance's metadata says it derives from: the values model-instance-metadata.json carries."""
    instance_type: str
    base_instance: str  # owner/model/framework/instance, for a KaggleVariant
    base_url: str  # for an ExternalVariant
    training_data: tuple[str, ...]


@dataclass(frozen=True)
class WheelsConfig:
    title: str = "kagflow offline wheels"
    requirements: tuple[str, ...] = ("peft==0.21.2", "bitsandbytes==0.50.2")
    image: str = "kaggle-gpu"  # a snapshot name shipped with kagflow or a path to an image.json
    private: bool = True
    # the dataset's licence (rules.kaggle.DATASET_LICENSES); "other": each wheel keeps its own project's licence,
    # as the dataset's description says
    license: str = "other"
    version: int = 0  # pinned dataset version, written by `kagflow wheels push` on Kaggle (0: none yet)


@dataclass(frozen=True)
class KernelConfig:
    title: str
    kind: str = TRAIN  # KERNEL_KINDS: train | infer | import (a notebook kagflow did not render)
    accelerator: str = kaggle.DEFAULT_ACCELERATOR
    internet: bool = False
    private: bool = True
    timeout: int = kaggle.DEFAULT_TIMEOUT_S  # seconds (Kaggle's session: at most 12 h; a competition's notebooks: 9 h)
    docker_image_pinning_type: str = kaggle.DEFAULT_IMAGE_PINNING  # "original" (the first run's image) or "latest"
    # symbolic sources: "wheels", "base_model", "adapter_model", "competition", "kernel:<name>";
    # or explicit handles: "dataset:owner/slug", "notebook:owner/slug", "competition:slug",
    # "model:owner/model/framework/instance/version"
    sources: tuple[str, ...] = ()
    code_file: str = ""  # import kernels: the notebook file in kernels/<slug>/


@dataclass(frozen=True)
class StandInConfig:
    """The table of an offline stand-in ([gemma3-270m]): its overrides of [train] and [infer] when it is the base.

    The defaults (in defaults.toml) keep `make submit` on a small CPU to minutes."""
    train: dict = _default("gemma3-270m", "train")
    infer: dict = _default("gemma3-270m", "infer")


@dataclass(frozen=True)
class TinyConfig(StandInConfig):
    """[tiny]: the tiny Gemma-2 stand-in (its shape, its overrides) and the synthetic competition."""
    train: dict = _default("tiny", "train")
    infer: dict = _default("tiny", "infer")
    hidden_size: int = 128
    num_layers: int = 2
    vocab_size: int = 512
    n_train: int = 2000
    n_test: int = 300
    seed: int = 0


# [base_model] stand_in values, each with the table of its name: its [train]/[infer] overrides (and, for
# the tiny one, its shape); kagflow.workflow.standins makes each
STAND_INS = {"tiny": TinyConfig, "gemma3-270m": StandInConfig}

# Tables built the same way: [name] -> the Config field of the same name (absent: every default)
TABLES = {"project": ProjectConfig, "wheels": WheelsConfig, "train": TrainConfig, "infer": InferConfig}
REQUIRED = {BASE_MODEL: BaseModelConfig, ADAPTER_MODEL: AdapterModelConfig}  # tables every kagflow.toml has


@dataclass(frozen=True)
class Config:
    project: ProjectConfig
    base_model: BaseModelConfig
    adapter_model: AdapterModelConfig
    wheels: WheelsConfig
    kernels: dict  # name -> KernelConfig
    train: TrainConfig
    infer: InferConfig
    stand_ins: dict  # STAND_INS name -> its table
    path: Path  # the kagflow.toml it came from
    username: str  # resolved: config, then credentials, then "kagflow"

    @property
    def root(self) -> Path:
        return self.path.parent

    @property
    def layout(self) -> Layout:
        return Layout(self.root)

    @property
    def tiny(self) -> TinyConfig:
        """[tiny]: the tiny stand-in, and the synthetic competition's sizes and seed."""
        return self.stand_ins["tiny"]

    def stand_in(self) -> StandInConfig:
        """The table of the stand-in [base_model] stand_in selects."""
        return self.stand_ins[self.base_model.stand_in]

    def kernel(self, name: str) -> KernelConfig:
        if name not in self.kernels:
            raise ConfigError(f"no kernel named {name!r} in {self.path.name}",
                              context="kernels: " + ", ".join(sorted(self.kernels)),
                              hint=f"add a [kernels.{name}] table or use one of the names above")
        return self.kernels[name]

    def model(self, which: str) -> ModelConfig:
        """[base_model] or [adapter_model] (``which``: one of MODELS)."""
        if which not in MODELS:
            raise KagflowError(f"no model table {which!r}", hint="one of " + ", ".join(MODELS))
        return getattr(self, which)

    def recipe(self, kind: str, *, stand_in: bool) -> dict:
        """The recipe table of kernel kind ``kind`` ([train] or [infer], RECIPE_TABLES) as a notebook's parameters:
        every key, with the overrides of the stand-in [base_model] stand_in selects when ``stand_in``."""
        params = dataclasses.asdict(getattr(self, kind))
        if stand_in:
            params.update(getattr(self.stand_in(), kind))
        if "target_modules" in params:  # a list, as the notebooks have always been rendered (unchanged: not pushed)
            params["target_modules"] = list(params["target_modules"])
        return params

    # ------------------------------------------------------------------ handles

    def kernel_handle(self, name: str) -> slugs.KernelHandle:
        return slugs.KernelHandle(self.username, slugs.kernel_slug(self.kernel(name).title))

    def wheels_handle(self) -> slugs.DatasetHandle:
        return slugs.DatasetHandle(self.username, slugs.dataset_slug(self.wheels.title))

    def model_handle(self, which: str) -> slugs.ModelHandle:
        return slugs.ModelHandle(self.username, slugs.model_slug(self.model(which).title))

    def instance_handle(self, which: str) -> slugs.ModelInstanceHandle:
        model = self.model(which)
        return self.model_handle(which).instance(model.framework, model.instance)

    def lineage(self, which: str) -> Lineage:
        """``which``'s instance type and what it derives from, with the empty keys derived: a KaggleVariant's base is
        [base_model]'s instance, an ExternalVariant's URL is [base_model] hf_id's Hugging Face page, the adapter's
        training data is the competition."""
        model = self.model(which)
        kind = model.instance_type
        base_instance = model.base_instance or (str(self.instance_handle(BASE_MODEL))
                                                if kind == kaggle.KAGGLE_VARIANT and which != BASE_MODEL else "")
        base_url = model.base_url or (kaggle.hugging_face_url(self.base_model.hf_id)
                                      if kind == kaggle.EXTERNAL_VARIANT and self.base_model.hf_id else "")
        training = model.training_data or ((kaggle.competition_url(self.project.competition),)
                                           if which == ADAPTER_MODEL else ())
        return Lineage(kind, base_instance, base_url, tuple(training))

    def wheels_source(self) -> Optional[str]:
        """``owner/slug/version`` of the pinned wheels dataset version, or None if not pushed."""
        version = self.wheels.version
        return str(slugs.DatasetHandle(self.username, self.wheels_handle().slug, version)) if version > 0 else None

    def model_source(self, which: str) -> Optional[str]:
        """``owner/model/framework/instance/version`` of the pinned version, or None if unpublished."""
        version = self.model(which).version
        return slugs.model_source(self.instance_handle(which).version(version)) if version > 0 else None

    def with_versions(self, versions: dict) -> "Config":
        """This config with versions ``{which: version}`` of the models (MODELS) and the wheels dataset (WHEELS)
        pinned (a target's own record of them)."""
        tables = {which: self.wheels if which == WHEELS else self.model(which) for which in versions}
        changes = {which: dataclasses.replace(tables[which], version=v) for which, v in versions.items() if v}
        return dataclasses.replace(self, **changes) if changes else self

    # ------------------------------------------------------------------ paths

    def kernel_dir(self, name: str) -> Path:
        return self.layout.kernel_dir(self.kernel_handle(name).slug)

    def wheels_dir(self) -> Path:
        return self.layout.wheels_dir(self.wheels_handle().slug)

    def model_dirs(self, which: str) -> tuple[Path, Path]:
        """``models/<model slug>/`` and its ``<instance slug>/`` sub-folder (their metadata files)."""
        model_dir = self.layout.model_dir(self.model_handle(which).model)
        return model_dir, model_dir / self.model(which).instance


# --------------------------------------------------------------------------- checks per table

def _check_named(path: Path, where: str, key: str, value: str, rule) -> None:
    try:
        rule(value)
    except KagflowError as e:
        raise ConfigError(f"{path.name}: [{where}] {key} = {toml_value(value)}: {e.message}",
                          context=f"file {path}, table [{where}], key {key}" + (f"; {e.context}" if e.context else ""),
                          hint=e.hint) from None


def _check_project(path: Path, project: ProjectConfig) -> None:
    if project.target not in ("auto", "local", "kaggle"):
        raise ConfigError(f"{path.name}: [project] target = {project.target!r} is not auto, local or kaggle",
                          context=f"file {path}", hint='write target = "auto"')
    _check_named(path, "project", "competition", project.competition, slugs.check_competition)
    if project.username:
        _check_named(path, "project", "username", project.username, slugs.check_owner)


def _check_model(path: Path, where: str, model: ModelConfig) -> None:
    _check_named(path, where, "title", model.title, slugs.model_slug)
    _check_named(path, where, "instance", model.instance, lambda s: slugs.check_slug(s, what="model instance slug"))
    _check_named(path, where, "framework", model.framework, slugs.framework_enum)
    if model.version < 0:
        raise ConfigError(f"{path.name}: [{where}] version = {model.version} is negative",
                          context=f"file {path}", hint="use 0 (unpublished) or the published version")
    _check_lineage(path, where, model)
    stand_in = getattr(model, "stand_in", None)
    if stand_in is not None and stand_in not in STAND_INS:
        close = get_close_matches(stand_in, list(STAND_INS), n=1, cutoff=0.4)
        raise ConfigError(f"{path.name}: [base_model] stand_in = {toml_value(stand_in)} is not a known stand-in",
                          context=f"file {path}, table [base_model], key stand_in; known: {', '.join(STAND_INS)}",
                          hint=f"did you mean stand_in = {toml_value(close[0])}?" if close
                          else 'write stand_in = "tiny" (or "gemma3-270m": Gemma 3 270M from PyPI)')


def _check_lineage(path: Path, where: str, model: ModelConfig) -> None:
    """The licence (empty is allowed here: a publish to Kaggle refuses it) and what the instance derives from."""
    if model.license:
        _check_named(path, where, "license", model.license, metadata.check_model_license)
    _check_named(path, where, "instance_type", model.instance_type, metadata.check_instance_type)
    if model.base_instance:
        _check_named(path, where, "base_instance", model.base_instance, slugs.ModelInstanceHandle.parse)
    if model.base_url:
        _check_named(path, where, "base_url", model.base_url, metadata.check_external_url)
    if where == BASE_MODEL and model.instance_type == kaggle.KAGGLE_VARIANT and not model.base_instance:
        raise ConfigError(f'{path.name}: [{where}] instance_type = "{kaggle.KAGGLE_VARIANT}" names no base_instance',
                          context=f"file {path}, table [{where}]; a KaggleVariant is a variant of another Kaggle "
                                  "model instance", hint=f'add base_instance = "{slugs.ModelInstanceHandle.FORM}", '
                                                         f'or instance_type = "{kaggle.EXTERNAL_VARIANT}"')


def _check_wheels(path: Path, wheels: WheelsConfig) -> None:
    _check_named(path, "wheels", "title", wheels.title, slugs.dataset_slug)
    _check_named(path, "wheels", "license", wheels.license, metadata.check_dataset_license)
    if wheels.version < 0:
        raise ConfigError(f"{path.name}: [wheels] version = {wheels.version} is negative",
                          context=f"file {path}", hint="use 0 (not pushed) or the pushed version")


def _check_kernel(path: Path, name: str, kernel: KernelConfig) -> None:
    _check_named(path, f"kernels.{name}", "title", kernel.title, slugs.kernel_slug)
    if kernel.kind not in KERNEL_KINDS:
        raise ConfigError(f"{path.name}: [kernels.{name}] kind = {kernel.kind!r} is not train, infer or import",
                          context=f"file {path}", hint='write kind = "train" or kind = "infer"')
    if kernel.timeout <= 0:
        raise ConfigError(f"{path.name}: [kernels.{name}] timeout = {kernel.timeout} must be positive",
                          context=f"file {path}", hint=f"timeout = {kaggle.DEFAULT_TIMEOUT_S}  # 9 hours, in seconds")
    _check_named(path, f"kernels.{name}", "docker_image_pinning_type", kernel.docker_image_pinning_type,
                 metadata.check_image_pinning)


def _check_stand_in(path: Path, name: str, table: StandInConfig) -> None:
    """Overrides must name real keys of [train] / [infer] with the right types."""
    for kind, cls in RECIPE_TABLES.items():
        build(cls, getattr(table, kind), f"{name}.{kind}", path)


# table name -> its check (after it is built); kernels and stand-ins are checked per entry
CHECKS: dict[str, Callable] = {"project": _check_project, "wheels": _check_wheels}


# --------------------------------------------------------------------------- loading

def _read(path: Path) -> dict:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path} not found", hint="run `kagflow init` to write one") from None
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path.name} is not UTF-8 text (byte {e.start}: {e.object[e.start:e.start + 1]!r})",
                          context=f"file {path}", hint="save it as UTF-8 (TOML files are UTF-8)") from None
    except OSError as e:
        raise ConfigError(f"cannot read {path}: {e.strerror}", context=f"file {path}",
                          hint="check that it is a file you can read") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path.name} is not valid TOML: {e}", context=f"file {path}",
                          hint="fix the syntax at the line shown") from None


def load_config(path: Optional[Path] = None) -> Config:
    """Load and validate ``kagflow.toml`` (default: search from the current folder upwards)."""
    path = Path(path) if path else find_config()
    raw = _read(path)
    known = {*TABLES, *REQUIRED, "kernels", *STAND_INS}
    for key in raw:
        if key not in known:
            raise ConfigError(f"{path.name}: unknown table [{key}]", context=f"file {path}",
                              hint="known tables: " + ", ".join(sorted(known)))
    for required in REQUIRED:
        if required not in raw:
            raise ConfigError(f"{path.name}: missing table [{required}]", context=f"file {path}",
                              hint="run `kagflow init --force` in a scratch folder and copy the table")
    tables = {}
    for name, cls in TABLES.items():
        tables[name] = build(cls, raw.get(name, {}), name, path)
        if name in CHECKS:
            CHECKS[name](path, tables[name])
    for name, cls in REQUIRED.items():
        tables[name] = build(cls, raw[name], name, path)
        _check_model(path, name, tables[name])
    kernels_raw = raw.get("kernels", default_tables()["kernels"])
    if not isinstance(kernels_raw, dict) or not kernels_raw:
        raise ConfigError(f"{path.name}: [kernels] must hold at least one [kernels.NAME] table",
                          context=f"file {path}", hint="add [kernels.train] and [kernels.infer]")
    kernels = {}
    for name, table in kernels_raw.items():
        kernels[name] = build(KernelConfig, table, f"kernels.{name}", path)
        _check_kernel(path, name, kernels[name])
    stand_ins = {}
    for name, cls in STAND_INS.items():
        stand_ins[name] = build(cls, raw.get(name, {}), name, path)
        _check_stand_in(path, name, stand_ins[name])
    project = tables["project"]
    return Config(**tables, kernels=kernels, stand_ins=stand_ins, path=path.resolve(),
                  username=project.username or credentials_username() or "kagflow")


def find_config(start: Optional[Path] = None) -> Path:
    here = Path(start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / CONFIG_FILE).is_file():
            return folder / CONFIG_FILE
    raise ConfigError(f"no {CONFIG_FILE} in {here} or its parents",
                      hint="run `kagflow init` here, or cd into a kagflow project")
