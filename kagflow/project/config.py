"""kagflow.toml → frozen dataclasses, validated on load; Kaggle credential lookup.

Every key is declared once, in the dataclasses below, with its type and default. Loading
reports the first problem as one message naming the file, the key, its value and the fix.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from kagflow.rules import slugs
# [train] and [infer] are the classifier's own run configurations (stdlib-only module): one
# definition of the seed's recipe for kagflow.toml, the notebooks and the classifier
from kagflow.classifier.config import InferConfig, TrainConfig
from kagflow.errors import ConfigError, KagflowError

CONFIG_FILE = "kagflow.toml"
COMPETITION = "llm-classification-finetuning"


# --------------------------------------------------------------------------- sections

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
    license: str = "Apache 2.0"
    version: int = 0  # pinned instance version, written by `kagflow model publish` (0: none yet)


@dataclass(frozen=True)
class BaseModelConfig(ModelConfig):
    hf_id: str = "unsloth/gemma-2-9b-it-bnb-4bit"
    local_dir: str = ""  # a Hugging Face snapshot folder; empty: the offline stand-in on the local target
    stand_in: str = "tiny"  # the offline stand-in (STAND_INS): "tiny" (random Gemma-2) or "gemma3-270m"


@dataclass(frozen=True)
class WheelsConfig:
    title: str = "kagflow offline wheels"
    requirements: tuple[str, ...] = ("peft==0.21.2", "bitsandbytes==0.50.2")
    image: str = "kaggle-gpu"  # a snapshot name shipped with kagflow or a path to an image.json
    private: bool = True


@dataclass(frozen=True)
class KernelConfig:
    title: str
    kind: str = "train"  # train | infer | import (a notebook kagflow did not render)
    accelerator: str = "NvidiaTeslaT4"
    internet: bool = False
    private: bool = True
    timeout: int = 32400  # seconds (Kaggle's GPU limit is 9 h for competition notebooks)
    # symbolic sources: "wheels", "base_model", "adapter_model", "competition", "kernel:<name>";
    # or explicit handles: "dataset:owner/slug", "notebook:owner/slug", "competition:slug",
    # "model:owner/model/framework/instance/version"
    sources: tuple[str, ...] = ()
    code_file: str = ""  # import kernels: the notebook file in kernels/<slug>/


@dataclass(frozen=True)
class TinyConfig:
    """Offline stand-ins: a tiny Gemma-2 checkpoint and a synthetic competition."""
    hidden_size: int = 128
    num_layers: int = 2
    vocab_size: int = 512
    n_train: int = 2000
    n_test: int = 300
    seed: int = 0
    # overrides of [train] when the base model is the tiny checkpoint
    train: dict = field(default_factory=lambda: {
        "n_epochs": 5.0, "lr": 1e-3, "freeze_layers": 0, "max_length": 128,
        "per_device_train_batch_size": 16, "gradient_accumulation_steps": 1,
        "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
        "gradient_checkpointing": False, "warmup_steps": 10,
    })
    infer: dict = field(default_factory=lambda: {"max_length": 128, "batch_size": 16})


@dataclass(frozen=True)
class StandInConfig:
    """[gemma3-270m]: overrides of [train] and [infer] when the Gemma 3 270M stand-in is the base.

    The defaults keep `make submit` on a small CPU to minutes: 320 rows, one epoch, 128 tokens."""
    train: dict = field(default_factory=lambda: {
        "max_train_rows": 320, "n_epochs": 1.0, "lr": 5e-4, "freeze_layers": 0, "max_length": 128,
        "per_device_train_batch_size": 8, "gradient_accumulation_steps": 1,
        "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
        "gradient_checkpointing": False, "warmup_steps": 4, "eval_strategy": "no",
    })
    infer: dict = field(default_factory=lambda: {"max_length": 128, "batch_size": 16})


# [base_model] stand_in values; each one's [train]/[infer] overrides live in the table of its name
# ([tiny], [gemma3-270m]); kagflow.workflow.standins makes them
STAND_INS = ("tiny", "gemma3-270m")

DEFAULT_KERNELS = {
    "train": {"title": "Gemma2 QLoRA arena train", "kind": "train",
              "sources": ["wheels", "base_model", "competition"]},
    "infer": {"title": "Gemma2 QLoRA arena infer", "kind": "infer",
              "sources": ["wheels", "base_model", "adapter_model", "competition"]},
}


@dataclass(frozen=True)
class Config:
    project: ProjectConfig
    base_model: BaseModelConfig
    adapter_model: ModelConfig
    wheels: WheelsConfig
    kernels: dict  # name -> KernelConfig
    train: TrainConfig
    infer: InferConfig
    tiny: TinyConfig
    gemma3_270m: StandInConfig
    path: Path  # the kagflow.toml it came from
    username: str  # resolved: config, then credentials, then "kagflow"

    @property
    def root(self) -> Path:
        return self.path.parent

    def stand_in_overrides(self) -> tuple[dict, dict]:
        """([train] overrides, [infer] overrides) of the stand-in [base_model] stand_in selects."""
        table = self.tiny if self.base_model.stand_in == "tiny" else self.gemma3_270m
        return table.train, table.infer

    def kernel(self, name: str) -> KernelConfig:
        if name not in self.kernels:
            raise ConfigError(f"no kernel named {name!r} in {self.path.name}",
                              context="kernels: " + ", ".join(sorted(self.kernels)),
                              hint=f"add a [kernels.{name}] table or use one of the names above")
        return self.kernels[name]


# --------------------------------------------------------------------------- typed loading

_TYPE_NAMES = {str: "a string", int: "a whole number", float: "a number", bool: "true or false",
               dict: "a table"}


def _type_name(tp) -> str:
    tp = _unoptional(tp)
    if _is_union(tp):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if typing.get_origin(tp) is tuple and typing.get_args(tp)[:1] in ((float,), (int,)):
        return "a list of numbers" if typing.get_args(tp)[0] is float else "a list of whole numbers"
    if tp is tuple or typing.get_origin(tp) is tuple:
        return "a list of strings"
    return _TYPE_NAMES.get(tp, str(tp))


def _example(tp, default) -> str:
    if default is not dataclasses.MISSING and default is not None:
        return _toml_value(default)
    return {str: '"..."', int: "1", float: "1.0", bool: "true"}.get(tp, '"..."')


def _unoptional(tp):
    """``int | None`` → ``int`` (TOML has no null, so an optional key is just its type)."""
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    if typing.get_origin(tp) in (typing.Union, types.UnionType) and len(args) == 1:
        return args[0]
    return tp


def _is_union(tp) -> bool:
    return typing.get_origin(tp) in (typing.Union, types.UnionType)


def _coerce(value, tp, where: str, key: str, default, file: Path):
    tp = _unoptional(tp)
    origin = typing.get_origin(tp)
    ok = True
    if _is_union(tp):  # the first of its types that the value is (e.g. "balanced" or [1.0, 2.0, 1.0])
        for option in typing.get_args(tp):
            try:
                return _coerce(value, option, where, key, default, file)
            except ConfigError:
                continue
        ok = False
    elif origin is tuple and typing.get_args(tp)[:1] in ((float,), (int,)):
        item = typing.get_args(tp)[0]
        ok = isinstance(value, list) and all(isinstance(v, (int, float) if item is float else int)
                                             and not isinstance(v, bool) for v in value)
        value = tuple(item(v) for v in value) if ok else value
    elif tp is bool:
        ok = isinstance(value, bool)
    elif tp is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif tp is float:  # TOML's nan and inf are no usable value of any key
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        value = float(value) if ok else value
    elif tp is str:
        ok = isinstance(value, str)
    elif tp is tuple or origin is tuple:
        ok = isinstance(value, list) and all(isinstance(v, str) for v in value)
        value = tuple(value) if ok else value
    elif tp is dict:
        ok = isinstance(value, dict)
    if not ok:
        raise ConfigError(
            f"{file.name}: [{where}] {key} = {_toml_value(value)} is not {_type_name(tp)}",
            context=f"file {file}, table [{where}], key {key}",
            hint=f"write it as {key} = {_example(tp, default)}",
        )
    return value


def _build(cls, table: dict, where: str, file: Path, *, exclude: tuple[str, ...] = ()):
    if not isinstance(table, dict):
        raise ConfigError(f"{file.name}: [{where}] must be a table", context=f"file {file}",
                          hint=f"write it as a [{where}] section")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.name not in exclude}
    unknown = [k for k in table if k not in fields]
    if unknown:
        from difflib import get_close_matches
        key = unknown[0]
        close = get_close_matches(key, list(fields), n=1)
        raise ConfigError(
            f"{file.name}: unknown key {key!r} in [{where}]",
            context=f"file {file}, value {_toml_value(table[key])}; known keys: {', '.join(fields)}",
            hint=f"did you mean {close[0]!r}?" if close else f"remove {key!r}",
        )
    kwargs = {}
    for name, f in fields.items():
        default = f.default if f.default is not dataclasses.MISSING else (
            f.default_factory() if f.default_factory is not dataclasses.MISSING else dataclasses.MISSING)
        if name in table:
            kwargs[name] = _coerce(table[name], hints[name], where, name, default, file)
        elif default is dataclasses.MISSING:
            raise ConfigError(
                f"{file.name}: [{where}] is missing the required key {name!r}",
                context=f"file {file}, table [{where}]",
                hint=f"add {name} = {_example(hints[name], default)} under [{where}]",
            )
    return cls(**kwargs)


def _toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {_toml_value(v)}" for k, v in value.items()) + " }"
    return json.dumps(str(value))


def load_config(path: Optional[Path] = None) -> Config:
    """Load and validate ``kagflow.toml`` (default: search from the current folder upwards)."""
    path = Path(path) if path else find_config()
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
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
    known = {"project", "base_model", "adapter_model", "wheels", "kernels", "train", "infer", "tiny", "gemma3-270m"}
    for key in raw:
        if key not in known:
            raise ConfigError(f"{path.name}: unknown table [{key}]", context=f"file {path}",
                              hint="known tables: " + ", ".join(sorted(known)))
    for required in ("base_model", "adapter_model"):
        if required not in raw:
            raise ConfigError(f"{path.name}: missing table [{required}]", context=f"file {path}",
                              hint="run `kagflow init --force` in a scratch folder and copy the table")
    project = _build(ProjectConfig, raw.get("project", {}), "project", path)
    if project.target not in ("auto", "local", "kaggle"):
        raise ConfigError(f"{path.name}: [project] target = {project.target!r} is not auto, local or kaggle",
                          context=f"file {path}", hint='write target = "auto"')
    _check_named(path, "project", "competition", project.competition, slugs.check_competition)
    if project.username:
        _check_named(path, "project", "username", project.username, slugs.check_owner)
    base = _build(BaseModelConfig, raw["base_model"], "base_model", path)
    adapter = _build(ModelConfig, raw["adapter_model"], "adapter_model", path)
    if base.stand_in not in STAND_INS:
        from difflib import get_close_matches
        close = get_close_matches(base.stand_in, list(STAND_INS), n=1, cutoff=0.4)
        raise ConfigError(f"{path.name}: [base_model] stand_in = {_toml_value(base.stand_in)} is not a known stand-in",
                          context=f"file {path}, table [base_model], key stand_in; known: {', '.join(STAND_INS)}",
                          hint=f"did you mean stand_in = {_toml_value(close[0])}?" if close
                          else 'write stand_in = "tiny" (or "gemma3-270m": Gemma 3 270M from PyPI)')
    for where, model in (("base_model", base), ("adapter_model", adapter)):
        _check_named(path, where, "title", model.title, slugs.model_slug)
        _check_named(path, where, "instance", model.instance,
                     lambda s: slugs.check_slug(s, what="model instance slug"))
        _check_named(path, where, "framework", model.framework, slugs.framework_enum)
        if model.version < 0:
            raise ConfigError(f"{path.name}: [{where}] version = {model.version} is negative",
                              context=f"file {path}", hint="use 0 (unpublished) or the published version")
    wheels = _build(WheelsConfig, raw.get("wheels", {}), "wheels", path)
    _check_named(path, "wheels", "title", wheels.title, slugs.dataset_slug)
    kernels_raw = raw.get("kernels", DEFAULT_KERNELS)
    if not isinstance(kernels_raw, dict) or not kernels_raw:
        raise ConfigError(f"{path.name}: [kernels] must hold at least one [kernels.NAME] table",
                          context=f"file {path}", hint="add [kernels.train] and [kernels.infer]")
    kernels = {}
    for name, table in kernels_raw.items():
        k = _build(KernelConfig, table, f"kernels.{name}", path)
        _check_named(path, f"kernels.{name}", "title", k.title, slugs.kernel_slug)
        if k.kind not in ("train", "infer", "import"):
            raise ConfigError(f"{path.name}: [kernels.{name}] kind = {k.kind!r} is not train, infer or import",
                              context=f"file {path}", hint='write kind = "train" or kind = "infer"')
        if k.timeout <= 0:
            raise ConfigError(f"{path.name}: [kernels.{name}] timeout = {k.timeout} must be positive",
                              context=f"file {path}", hint="timeout = 32400  # 9 hours, in seconds")
        kernels[name] = k
    train = _build(TrainConfig, raw.get("train", {}), "train", path)
    infer = _build(InferConfig, raw.get("infer", {}), "infer", path)
    tiny = _build(TinyConfig, raw.get("tiny", {}), "tiny", path)
    _build(TrainConfig, tiny.train, "tiny.train", path)  # overrides must name real keys with the right types
    _build(InferConfig, tiny.infer, "tiny.infer", path)
    gemma3 = _build(StandInConfig, raw.get("gemma3-270m", {}), "gemma3-270m", path)
    _build(TrainConfig, gemma3.train, "gemma3-270m.train", path)
    _build(InferConfig, gemma3.infer, "gemma3-270m.infer", path)
    return Config(project=project, base_model=base, adapter_model=adapter, wheels=wheels,
                  kernels=kernels, train=train, infer=infer, tiny=tiny, gemma3_270m=gemma3, path=path.resolve(),
                  username=project.username or credentials_username() or "kagflow")


def _check_named(path: Path, where: str, key: str, value: str, rule) -> None:
    try:
        rule(value)
    except KagflowError as e:
        raise ConfigError(f"{path.name}: [{where}] {key} = {_toml_value(value)}: {e.message}",
                          context=f"file {path}, table [{where}], key {key}" + (f"; {e.context}" if e.context else ""),
                          hint=e.hint) from None


def find_config(start: Optional[Path] = None) -> Path:
    here = Path(start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / CONFIG_FILE).is_file():
            return folder / CONFIG_FILE
    raise ConfigError(f"no {CONFIG_FILE} in {here} or its parents",
                      hint="run `kagflow init` here, or cd into a kagflow project")


def train_params(config: Config, *, tiny: bool) -> dict:
    """[train] as a plain dict, with the stand-in's overrides ([tiny.train] or [gemma3-270m.train])
    applied when ``tiny``: the base is the offline stand-in."""
    params = dataclasses.asdict(config.train)
    if tiny:
        params.update(config.stand_in_overrides()[0])
    params["target_modules"] = list(params["target_modules"])
    return params


def infer_params(config: Config, *, tiny: bool) -> dict:
    params = dataclasses.asdict(config.infer)
    if tiny:
        params.update(config.stand_in_overrides()[1])
    return params


# --------------------------------------------------------------------------- credentials

def kaggle_config_dir() -> Path:
    """Where the official client looks for kaggle.json (same rules as kaggle 2.x)."""
    env = os.environ.get("KAGGLE_CONFIG_DIR")
    if env:
        return Path(env)
    home = Path.home() / ".kaggle"
    if home.exists():
        return home
    xdg = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(xdg) / "kaggle"


def has_credentials() -> bool:
    """True when the official client would find Kaggle credentials (the values are never read out)."""
    if os.environ.get("KAGGLE_API_TOKEN"):
        return True
    if os.environ.get("KAGGLE_USERNAME") and os.environ.get("KAGGLE_KEY"):
        return True
    for name in ("access_token", "access_token.txt"):
        if (Path.home() / ".kaggle" / name).is_file():
            return True
    cfg = kaggle_config_dir() / "kaggle.json"
    if cfg.is_file():
        try:
            data = json.loads(cfg.read_text())
            return bool(data.get("username") and data.get("key"))
        except (OSError, ValueError):
            return False
    return False


def credentials_username() -> str:
    """The username of the Kaggle credentials, if any (never the key)."""
    if os.environ.get("KAGGLE_USERNAME"):
        return os.environ["KAGGLE_USERNAME"]
    cfg = kaggle_config_dir() / "kaggle.json"
    if cfg.is_file():
        try:
            return str(json.loads(cfg.read_text()).get("username") or "")
        except (OSError, ValueError):
            return ""
    return ""


# --------------------------------------------------------------------------- writing

def edit_config(path: Path, change) -> None:
    """Apply ``change(document)`` to kagflow.toml with tomlkit, keeping every comment and the
    layout, and write it back atomically."""
    import tomlkit

    doc = tomlkit.parse(Path(path).read_text(encoding="utf-8"))
    change(doc)
    tmp = Path(path).with_suffix(".toml.tmp")
    tmp.write_text(tomlkit.dumps(doc), encoding="utf-8")
    os.replace(tmp, path)


def set_value(path: Path, table: str, key: str, value) -> None:
    """Set ``key = value`` in ``[table]`` of kagflow.toml (e.g. the pinned model versions)."""
    import tomlkit

    def change(doc) -> None:
        if table not in doc:
            doc[table] = tomlkit.table()
        doc[table][key] = value

    edit_config(path, change)
