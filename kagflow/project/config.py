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
from kagflow.rules import metrics as metric_rules

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
    # seconds (Kaggle's session: at most 12 h; a competition's notebooks: 9 h); a table without one gets its
    # kind's (kaggle.default_timeout: train 12 h, infer 9 h)
    timeout: int = kaggle.DEFAULT_TIMEOUT_S
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


# [data] submission values: what the submission file holds per test row
PROBABILITIES, LABEL, POSITIVE_PROBABILITY = "probabilities", "label", "positive_probability"
SUBMISSIONS = {PROBABILITIES: "one probability column per label", LABEL: "the predicted label in label_column",
               POSITIVE_PROBABILITY: "label_column = the probability of the last label (binary tasks)"}
# what each submission gives a metric (kagflow.rules.metrics' reads)
SUBMISSION_READS = {PROBABILITIES: (metric_rules.PROBABILITIES,), POSITIVE_PROBABILITY: (metric_rules.PROBABILITIES,),
                    LABEL: (metric_rules.LABELS, metric_rules.TOP3)}


@dataclass(frozen=True)
class DataConfig:
    """[data]: the competition's task: its files, columns, labels, submission format and metric (LMSYS's by default).

    The whole table is the ``data`` parameter of both notebooks (the classifier's ``Task.from_params``)."""
    train_file: str = "train.csv"
    test_file: str = "test.csv"
    id_column: str = "id"
    text_columns: tuple[str, ...] = ("prompt", "response_a", "response_b")  # what the model reads, in this order
    swap_columns: tuple[str, ...] = ("response_a", "response_b")  # () = none; a pairwise task: swap TTA
    label_columns: tuple[str, ...] = ("winner_model_a", "winner_model_b", "winner_tie")  # one-hot columns, or
    label_column: str = ""  # one column holding a value of ``labels``
    labels: tuple[str, ...] = ()
    submission: str = PROBABILITIES  # SUBMISSIONS
    metric: str = "log_loss"  # kagflow.rules.metrics CLASSIFICATION

    @property
    def classes(self) -> tuple[str, ...]:
        """The class names, in the head's order: the one-hot columns, else the labels."""
        return self.label_columns or self.labels

    @property
    def facts(self) -> metric_rules.MetricFacts:
        return metric_rules.METRICS[self.metric]

    @property
    def train_columns(self) -> tuple[str, ...]:
        """The columns the training file must have."""
        return (self.id_column, *self.text_columns, *(self.label_columns or (self.label_column,)))

    @property
    def test_columns(self) -> tuple[str, ...]:
        return (self.id_column, *self.text_columns)

    @property
    def submission_columns(self) -> tuple[str, ...]:
        """The header of a submission file (and of sample_submission.csv)."""
        if self.submission == PROBABILITIES:
            return (self.id_column, *self.classes)
        return (self.id_column, self.label_column)

    def params(self) -> dict:
        """The table as the notebooks' ``data`` parameter (lists, not tuples)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    def task(self):
        """The classifier's ``Task`` of this table: what the notebooks build from their ``data`` parameter."""
        from kagflow.classifier.task import Task

        return Task.from_params(self.params())


DATASET_FILE_KEYS = ("extra_train_files", "pseudo_label_files")  # [train] keys naming files of Kaggle datasets
DATASET_METADATA = "dataset-metadata.json"


@dataclass(frozen=True)
class DatasetFile:
    """A file of a Kaggle dataset the train kernel mounts: ``handle`` owner/slug, ``path`` inside the dataset;
    ``local``: the file on disk when the entry named one in a local dataset folder (its headers are checked)."""
    handle: str
    path: str
    local: Optional[Path] = None

    @property
    def ref(self) -> str:
        """What the notebook's parameter holds: ``owner/slug/path`` (``classifier.paths.find_dataset_file``)."""
        return f"{self.handle}/{self.path}"


def dataset_file(config: "Config", entry: str, key: str) -> DatasetFile:
    """[train] ``key``'s ``entry``: ``owner/slug/file.csv`` (a file of a Kaggle dataset), or a path (from the
    project folder) to a file inside a local dataset folder, the one with the dataset-metadata.json whose id
    ``kaggle datasets create -p FOLDER`` uploads (the local Kaggle's too)."""
    import json

    where = f"{config.path.name}: [train] {key}"
    local = config.root / entry
    if local.is_file():
        for folder in local.resolve().parents:
            meta = folder / DATASET_METADATA
            if meta.is_file():
                try:
                    handle = slugs.DatasetHandle.parse(str(json.loads(meta.read_text()).get("id", "")))
                except (ValueError, AttributeError, KagflowError) as e:
                    raise ConfigError(f"{where}: {entry!r} is in dataset folder {folder} whose {DATASET_METADATA} "
                                      f"has no usable id ({e})", hint='write "id": "owner/slug" there') from None
                return DatasetFile(f"{handle.owner}/{handle.slug}", local.resolve().relative_to(folder).as_posix(),
                                   local)
            if folder == config.root.resolve():
                break
        raise ConfigError(f"{where}: {entry!r} is a local file outside any dataset folder (no {DATASET_METADATA} "
                          "above it), so no kernel can mount it",
                          hint="put it in a folder you upload as a dataset (kaggle datasets init -p FOLDER, then "
                               "kaggle datasets create -p FOLDER), or write owner/slug/file.csv")
    parts = [p for p in str(entry).strip("/").split("/") if p]
    if len(parts) < 3 or not parts[-1].lower().endswith(".csv"):
        raise ConfigError(f"{where}: {entry!r} is neither a local file nor owner/slug/file.csv",
                          hint="write owner/slug/file.csv (a CSV of a Kaggle dataset) or the path of a CSV in a "
                               "local dataset folder")
    try:
        handle = slugs.DatasetHandle.parse("/".join(parts[:2]))
    except KagflowError as e:
        raise ConfigError(f"{where}: {entry!r}: {e.message}", hint=e.hint or "write owner/slug/file.csv") from None
    return DatasetFile(f"{handle.owner}/{handle.slug}", "/".join(parts[2:]))


def data_table(raw: dict) -> dict:
    """[data] as written, with the defaults that follow from it: a table naming ``label_column`` drops the default
    one-hot ``label_columns``, and one naming its own ``text_columns`` drops the default ``swap_columns`` (each
    unless it names them too)."""
    table = dict(raw)
    if table.get("label_column") and "label_columns" not in table:
        table["label_columns"] = []
    if "text_columns" in table and "swap_columns" not in table:
        table["swap_columns"] = []
    return table


# [base_model] stand_in values, each with the table of its name: its [train]/[infer] overrides (and, for
# the tiny one, its shape); kagflow.workflow.standins makes each
STAND_INS = {"tiny": TinyConfig, "gemma3-270m": StandInConfig}

# Tables built the same way: [name] -> the Config field of the same name (absent: every default)
TABLES = {"project": ProjectConfig, "wheels": WheelsConfig, "train": TrainConfig, "infer": InferConfig,
          "data": DataConfig}
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
    data: DataConfig
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
        for key in DATASET_FILE_KEYS if kind == TRAIN else ():  # the kernel reads owner/slug/path under its input
            if params.get(key):
                params[key] = [f.ref for f in self.dataset_files(key)]
        return params

    def dataset_files(self, key: str) -> list["DatasetFile"]:
        """The files [train] ``key`` (extra_train_files, pseudo_label_files) names, each resolved
        (``dataset_file``)."""
        return [dataset_file(self, entry, key) for entry in getattr(self.train, key)]

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


def _data_error(path: Path, key: str, value, problem: str, fix: str) -> ConfigError:
    return ConfigError(f"{path.name}: [data] {key} = {toml_value(value)}: {problem}",
                       context=f"file {path}, table [data], key {key}", hint=fix)


def _check_data(path: Path, data: DataConfig) -> None:
    """[data]'s rules, each refused with the key and the fix (the contract with the classifier's Task)."""
    for key in ("train_file", "test_file", "id_column"):
        value = getattr(data, key)
        if not value.strip() or "/" in value:
            raise _data_error(path, key, value, "must be a file or column name", f"write {key} = "
                              f"{toml_value(getattr(DataConfig, key))}")
    if not data.text_columns or len(set(data.text_columns)) != len(data.text_columns):
        raise _data_error(path, "text_columns", list(data.text_columns), "must name one or more distinct columns",
                          'write text_columns = ["text"] (the columns the model reads, in order)')
    if data.swap_columns and (len(data.swap_columns) != 2 or len(set(data.swap_columns)) != 2
                              or not set(data.swap_columns) <= set(data.text_columns)):
        raise _data_error(path, "swap_columns", list(data.swap_columns), "must be 2 of text_columns "
                          f"({', '.join(data.text_columns)})", "write swap_columns = [] (no pairwise swap), or the "
                          "two responses, e.g. [\"response_a\", \"response_b\"]")
    if bool(data.label_columns) == bool(data.label_column):
        both = "both are set" if data.label_columns else "neither is set"
        raise _data_error(path, "label_column", data.label_column, f"give exactly one of label_columns and "
                          f"label_column ({both})", 'one-hot columns: label_columns = ["a", "b"] and label_column = '
                          '""; or one column: label_column = "winner", labels = ["model_a", "model_b"], '
                          'label_columns = []')
    if data.label_columns and (len(data.label_columns) < 2 or len(set(data.label_columns)) != len(data.label_columns)):
        raise _data_error(path, "label_columns", list(data.label_columns), "must name 2 or more distinct columns",
                          'write label_columns = ["winner_model_a", "winner_model_b", "winner_tie"]')
    if data.label_column and (len(data.labels) < 2 or len(set(data.labels)) != len(data.labels)):
        raise _data_error(path, "labels", list(data.labels), f"label_column = {toml_value(data.label_column)} "
                          "needs 2 or more distinct label values", 'write labels = ["model_a", "model_b"] (the '
                          'values of label_column, in the order of the submission\'s columns)')
    if data.labels and not data.label_column:
        raise _data_error(path, "labels", list(data.labels), "needs label_column (the column holding them)",
                          'write label_column = "winner", or labels = [] with one-hot label_columns')
    overlap = sorted({data.id_column, *data.text_columns} & set(data.label_columns or (data.label_column,)))
    if overlap or data.id_column in data.text_columns:
        raise _data_error(path, "text_columns", list(data.text_columns), "the id, text and label columns must be "
                          f"different columns ({', '.join(overlap or [data.id_column])} is two of them)",
                          "name each column once")
    if data.submission not in SUBMISSIONS:
        close = get_close_matches(data.submission, list(SUBMISSIONS), n=1, cutoff=0.5)
        raise _data_error(path, "submission", data.submission, "is not a submission format (" + "; ".join(
                          f"{k}: {v}" for k, v in SUBMISSIONS.items()) + ")",
                          f"did you mean submission = {toml_value(close[0])}?" if close
                          else 'write submission = "probabilities"')
    if data.submission != PROBABILITIES and not data.label_column:
        raise _data_error(path, "submission", data.submission, "writes label_column, which is not set",
                          'write label_column = "..." and labels = [...], or submission = "probabilities"')
    if data.submission == POSITIVE_PROBABILITY and len(data.classes) != 2:
        raise _data_error(path, "submission", data.submission, f"is for 2 labels; there are {len(data.classes)}",
                          'write submission = "probabilities" (one column per label)')
    try:
        facts = metric_rules.metric(data.metric, known=metric_rules.CLASSIFICATION)
    except KagflowError as e:
        raise _data_error(path, "metric", data.metric, e.message.removeprefix(f"unknown metric {data.metric!r}")
                          .strip() or "is not a metric kagflow scores", e.hint or "") from None
    if facts.binary_only and len(data.classes) != 2:
        raise _data_error(path, "metric", data.metric, f"{facts.display} is for 2 labels; there are "
                          f"{len(data.classes)}", 'write metric = "log_loss" (or "macro_f1", "accuracy")')
    if len(data.classes) < facts.min_labels:
        raise _data_error(path, "metric", data.metric, f"{facts.display} needs {facts.min_labels} or more labels; "
                          f"there are {len(data.classes)}", 'write metric = "accuracy"')
    if facts.reads not in SUBMISSION_READS[data.submission]:
        wanted = [k for k, reads in SUBMISSION_READS.items() if facts.reads in reads]
        raise _data_error(path, "submission", data.submission, f"{facts.display} scores {facts.reads}, which a "
                          f"{data.submission!r} submission does not give",
                          f"write submission = {toml_value(wanted[0])}" + (
                              " (the top 3 labels, space-separated)" if facts.reads == metric_rules.TOP3 else ""))


def _check_stand_in(path: Path, name: str, table: StandInConfig) -> None:
    """Overrides must name real keys of [train] / [infer] with the right types."""
    for kind, cls in RECIPE_TABLES.items():
        build(cls, getattr(table, kind), f"{name}.{kind}", path)


# table name -> its check (after it is built); kernels and stand-ins are checked per entry
def _check_encoding(path: Path, train: TrainConfig, data: DataConfig) -> None:
    """[train]'s model-input keys against [data]'s text columns (classifier/text.py ``Encoding.problems``)."""
    from kagflow.classifier.text import Encoding

    for key, problem, fix in Encoding.of(train).problems(data.task()):
        raise ConfigError(f"{path.name}: [train] {key} = {toml_value(getattr(train, key))}: {problem}",
                          context=f"file {path}, table [train], key {key}", hint=fix)


CHECKS: dict[str, Callable] = {"project": _check_project, "wheels": _check_wheels, "data": _check_data}


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
        table = raw.get(name, {})
        tables[name] = build(cls, data_table(table) if name == "data" and isinstance(table, dict) else table,
                             name, path)
        if name in CHECKS:
            CHECKS[name](path, tables[name])
    _check_encoding(path, tables["train"], tables["data"])
    for name, cls in REQUIRED.items():
        tables[name] = build(cls, raw[name], name, path)
        _check_model(path, name, tables[name])
    kernels_raw = raw.get("kernels", default_tables()["kernels"])
    if not isinstance(kernels_raw, dict) or not kernels_raw:
        raise ConfigError(f"{path.name}: [kernels] must hold at least one [kernels.NAME] table",
                          context=f"file {path}", hint="add [kernels.train] and [kernels.infer]")
    kernels = {}
    for name, table in kernels_raw.items():
        if isinstance(table, dict) and "timeout" not in table:  # the kind's: train 12 h, infer 9 h
            table = {**table, "timeout": kaggle.default_timeout(table.get("kind", TRAIN))}
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
