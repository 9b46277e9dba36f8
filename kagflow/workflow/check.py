"""`kagflow check`: every problem in the project at once, each with file, field and fix."""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass
from difflib import get_close_matches
from pathlib import Path
from typing import Iterator

from kagflow.classifier.config import (
    ENSEMBLES,
    FAST_LOOP_OPTIMIZERS,
    INT8_KERNELS,
    QUANTIZATIONS,
    TEMPERATURES,
    InferConfig,
)
from kagflow.errors import KagflowError
from kagflow.project.config import INFER, MODELS, TRAIN, Config
from kagflow.project.sources import resolve_sources
from kagflow.rules import kaggle, metadata, slugs


@dataclass(frozen=True)
class Problem:
    file: str
    field: str
    message: str
    fix: str

    def render(self) -> str:
        return f"{self.file}: {self.field}: {self.message}\n    fix: {self.fix}"


@dataclass(frozen=True)
class Pending:
    """Something a kernel uses that the flow has not produced yet: expected, not a problem."""

    kernel: str
    source: str
    command: str  # what produces it (the flow does too)

    def render(self) -> str:
        return f"[kernels.{self.kernel}] {self.source}: not produced yet; `{self.command}` (or `kagflow flow`) makes it"


def check(session) -> tuple[list[Problem], list[Pending]]:
    """`kagflow check`: every problem, and what the flow has not produced yet, with the versions the target has;
    the competition's files against [data] (the local Kaggle's copy, or Kaggle's list of its files)."""
    config = session.config
    return check_project(config) + list(_check_licenses(session.target)) + check_data(session), pending(config)


def _check_licenses(target) -> Iterator[Problem]:
    """A licence each model is published under on ``target`` (real Kaggle takes no default)."""
    for which in MODELS:
        try:
            target.model_license(which)
        except KagflowError as e:
            yield Problem(target.config.path.name, f"[{which}] license", e.message, e.hint or "name a licence")


def check_project(config: Config) -> list[Problem]:
    """Every problem of the project. Pass the config with the target's recorded versions
    (``Session.config``): sources the flow has not produced yet are ``pending``, not problems."""
    problems: list[Problem] = []
    problems += _check_train(config)
    problems += _check_infer(config)
    for name in config.kernels:
        problems += _check_kernel_config(config, name, missing_is_problem=False)
    problems += _check_generated(config)
    return problems


def check_kernel(config: Config, name: str, adapters: tuple[str, ...] = (), *,
                 overridden: dict | None = None) -> list[Problem]:
    """The problems of kernel ``name`` alone (its [kernels.NAME] table and its rendered folder);
    before a push, a source nothing has produced yet is one of them. ``adapters``: the ensemble the
    folder was rendered with (kagflow.project.sources.resolve_sources). ``overridden``: {key: option} of the
    [kernels.NAME] keys a push's options replaced in ``config`` (their problems name the option)."""
    problems = [_from_option(p, name, overridden or {})
                for p in _check_kernel_config(config, name, missing_is_problem=True)]
    if config.kernel(name).kind == TRAIN:
        problems += _check_train(config)
    if config.kernel(name).kind == INFER:
        problems += _check_infer(config)
    try:
        folder = config.kernel_dir(name)
    except KagflowError:
        return problems
    if (folder / metadata.KERNEL_METADATA).is_file():
        problems += check_kernel_folder(folder, config=config, name=name, adapters=adapters)
    return problems


def _from_option(problem: Problem, name: str, overridden: dict) -> Problem:
    """``problem`` of a [kernels.NAME] key an option replaced, told as the option's."""
    key = problem.field.removeprefix(f"[kernels.{name}] ")
    if key not in overridden:
        return problem
    return Problem(f"kagflow kernel push {name} {overridden[key]}", key, problem.message,
                   f"{problem.fix} (or pass another {overridden[key]})")


def pending(config: Config) -> list[Pending]:
    """What the kernels use that nothing has produced yet, with the command that produces it."""
    out = []
    for name in config.kernels:
        try:
            sources = resolve_sources(config, name)
        except KagflowError:
            continue  # reported by check_project
        out += [Pending(name, source, command) for source, command in sources.missing]
    return out


# --------------------------------------------------------------------------- config-level rules

def _check_infer(config: Config) -> Iterator[Problem]:
    """[infer] keys the inference notebook would refuse: each with the key and the fix."""
    toml, i = config.path.name, config.infer
    if i.quantization not in QUANTIZATIONS:
        yield Problem(toml, "[infer] quantization", f"quantization = {i.quantization!r} is not one of "
                      f"{', '.join(QUANTIZATIONS)}", 'write quantization = "4bit" (NF4, as trained) or "8bit"')
    if i.int8_kernel not in INT8_KERNELS:
        close = get_close_matches(str(i.int8_kernel), INT8_KERNELS, n=1)
        yield Problem(toml, "[infer] int8_kernel", f"int8_kernel = {i.int8_kernel!r} is not one of "
                      f"{', '.join(INT8_KERNELS)}", (f'did you mean int8_kernel = "{close[0]}"? ' if close else "") +
                      'write int8_kernel = "weight_only" (int8 weights, fp16/bf16 activations) or "llm_int8" '
                      "(bitsandbytes' LLM.int8)")
    elif i.quantization == "8bit" and i.int8_kernel == "weight_only" and \
            i.int8_threshold != InferConfig.int8_threshold:
        yield Problem(toml, "[infer] int8_threshold", f"int8_threshold = {i.int8_threshold} is LLM.int8's outlier "
                      'threshold, and int8_kernel = "weight_only" has none (its activations stay fp16/bf16)',
                      'write int8_kernel = "llm_int8" to use the threshold, or remove int8_threshold')
    if i.ensemble not in ENSEMBLES:
        yield Problem(toml, "[infer] ensemble", f"ensemble = {i.ensemble!r} is not one of {', '.join(ENSEMBLES)}",
                      'write ensemble = "members" (each member tuned, in turn) or "average_lora" (one pass)')
    if isinstance(i.temperature, str) and i.temperature not in TEMPERATURES or \
            not isinstance(i.temperature, str) and not i.temperature > 0:
        yield Problem(toml, "[infer] temperature", f"temperature = {i.temperature!r} is not \"none\", \"oof\" or a "
                      "positive number", 'write temperature = "none", "oof" (fitted on the out-of-fold predictions) or '
                      "e.g. 1.2")
    if i.deadline_s < 0:
        yield Problem(toml, "[infer] deadline_s", f"deadline_s = {i.deadline_s} is negative",
                      "set deadline_s = 0 (the kernel's timeout less 600 s) or the seconds the notebook may run")


def _check_train(config: Config) -> Iterator[Problem]:
    """[train] keys that a training loop would not honour: each refused with the key and the fix."""
    toml, t = config.path.name, config.train
    fast = t.train_loop in ("auto", "fast")  # "auto" is the fast loop on every GPU
    if t.train_loop not in ("auto", "fast", "trainer"):
        yield Problem(toml, "[train] train_loop", f"train_loop = {t.train_loop!r} is not a training loop",
                      'write train_loop = "auto" (kagflow\'s loop on a GPU), "fast" or "trainer"')
    if fast and t.optim_type not in FAST_LOOP_OPTIMIZERS:
        yield Problem(toml, "[train] optim_type", f"optim_type = {t.optim_type!r} is not one the fast loop "
                      f"(train_loop = {t.train_loop!r}) builds", f"use one of {', '.join(FAST_LOOP_OPTIMIZERS)}, "
                      'or set train_loop = "trainer" (the HF Trainer takes any of its optimizers)')
    if fast and t.dataloader_num_workers:
        yield Problem(toml, "[train] dataloader_num_workers", f"dataloader_num_workers = {t.dataloader_num_workers}: "
                      "the fast loop has no DataLoader (rows are tokenised once and padded per step)",
                      'set dataloader_num_workers = 0, or train_loop = "trainer"')
    if t.attn_implementation not in ("auto", "eager", "flex_attention", "sdpa", "flash_attention_2"):
        yield Problem(toml, "[train] attn_implementation", f"unknown attention {t.attn_implementation!r}",
                      'use "auto" (chosen from the model\'s config), "eager", "flex_attention" or "sdpa"')
    elif t.attn_implementation in ("sdpa", "flash_attention_2") and _softcapped(config):
        yield Problem(toml, "[train] attn_implementation", f"{t.attn_implementation} drops Gemma 2's attention "
                      f"softcapping, so the model trains on other logits than {config.base_model.hf_id} computes",
                      'set attn_implementation = "eager" (or "flex_attention" on sm80+ GPUs)')
    pre_ampere = sorted({k.accelerator for k in config.kernels.values() if k.kind == TRAIN
                         and k.accelerator in kaggle.PRE_AMPERE_ACCELERATORS})
    if t.attn_implementation == "flex_attention" and pre_ampere:
        yield Problem(toml, "[train] attn_implementation", f"flex_attention needs a GPU of compute capability 8.0 "
                      f"or more; the training kernel runs on {', '.join(pre_ampere)} (sm75 / sm60)",
                      'set attn_implementation = "eager", or a newer accelerator in [kernels.train]')
    if t.eval_strategy not in ("epoch", "steps", "no"):
        yield Problem(toml, "[train] eval_strategy", f"eval_strategy = {t.eval_strategy!r} is not epoch, steps or no",
                      'write eval_strategy = "epoch"')
    for key in ("save_steps", "logging_steps", "per_device_train_batch_size", "gradient_accumulation_steps",
                "per_device_eval_batch_size"):
        if getattr(t, key) < 1:
            yield Problem(toml, f"[train] {key}", f"{key} = {getattr(t, key)} must be at least 1",
                          f"set {key} to a positive number")
    for key in ("time_budget", "save_minutes"):
        if getattr(t, key) < 0:
            yield Problem(toml, f"[train] {key}", f"{key} = {getattr(t, key)} is negative", f"set {key} = 0 (off)")
    classes = config.data.classes
    if t.class_weights not in ("balanced", ()) and (
            isinstance(t.class_weights, str) or len(t.class_weights) != len(classes) or min(t.class_weights) <= 0):
        yield Problem(toml, "[train] class_weights", f"class_weights = {t.class_weights!r} is neither \"balanced\" "
                      f"nor {len(classes)} positive weights ({', '.join(classes)}: [data]'s labels)",
                      f'write class_weights = "balanced", class_weights = {[1.0] * len(classes)}, or remove it')
    yield from _check_training_data(config)
    yield from training_fit(config)[1]


def _check_training_data(config: Config) -> Iterator[Problem]:
    """[train] extra_train_files, pseudo_label_files, swap_augmentation and soft labels: refused with the key and
    the fix; a local extra file's header is read against [data] before anything is uploaded."""
    toml, t, data = config.path.name, config.train, config.data
    if not 0 <= t.swap_augmentation <= 1:
        yield Problem(toml, "[train] swap_augmentation", f"swap_augmentation = {t.swap_augmentation} is not a "
                      "probability", "set swap_augmentation between 0 (off) and 1")
    elif t.swap_augmentation and not data.swap_columns:
        yield Problem(toml, "[train] swap_augmentation", f"swap_augmentation = {t.swap_augmentation} swaps [data] "
                      "swap_columns, and this task has none", "set swap_augmentation = 0, or name the two compared "
                      "texts in [data] swap_columns")
    classes = data.classes
    if t.soft_label_columns and not t.soft_labels:
        yield Problem(toml, "[train] soft_label_columns", "soft_label_columns is set but soft_labels = false, so "
                      "no row would train on them", "set soft_labels = true, or soft_label_columns = []")
    elif t.soft_label_columns and len(t.soft_label_columns) != len(classes):
        yield Problem(toml, "[train] soft_label_columns", f"soft_label_columns = {list(t.soft_label_columns)} has "
                      f"{len(t.soft_label_columns)} columns; [data] has {len(classes)} labels ({', '.join(classes)})",
                      f"name one probability column per label, in that order ({len(classes)} columns)")
    elif t.soft_labels and not t.soft_label_columns and not data.label_columns:
        yield Problem(toml, "[train] soft_labels", f"soft_labels = true keeps label cells holding probabilities, "
                      f"but [data] label_column = {data.label_column!r} holds one value per row",
                      "name the probability columns in soft_label_columns (one per label), or set soft_labels = false")
    if t.pseudo_label_files and data.submission != "probabilities":
        yield Problem(toml, "[train] pseudo_label_files", f"pseudo-labels are a probabilities submission; [data] "
                      f"submission = {data.submission!r} writes none", "set pseudo_label_files = []")
    soft = tuple(t.soft_label_columns) if t.soft_labels else ()
    expected = {"extra_train_files": (*data.train_columns, *soft),
                "pseudo_label_files": (data.id_column, *classes)}
    for key, columns in expected.items():
        try:
            files = config.dataset_files(key)
        except KagflowError as e:
            yield Problem(toml, f"[train] {key}", e.message, e.hint or "write owner/slug/file.csv")
            continue
        for f in files:
            if f.local is None:
                continue
            try:
                with open(f.local, newline="", encoding="utf-8") as handle:
                    header = next(csv.reader(handle), [])
            except (OSError, UnicodeDecodeError) as e:
                yield Problem(str(f.local), "(file)", f"not readable as UTF-8 CSV: {e}", "save it as UTF-8 CSV")
                continue
            missing = [c for c in columns if c not in header]
            if missing:
                yield Problem(str(f.local), "header", f"[train] {key}: missing columns {missing}; found {header}",
                              f"write the columns {', '.join(columns)} ([data]'s schema) or fix [data]")


TRAIN_TOKENS = 4096  # recipe.recipe_for_profile: the micro-batch token budget on 16-24 GB cards (T4s)
PLAN_KEYS = "per_device_train_batch_size, max_length, lora_r, target_modules or freeze_layers"


def model_shape(config: Config):
    """The base model's shape (``memory.ModelShape``): [base_model] local_dir's config.json, else a known
    Hugging Face id; None when neither says."""
    from kagflow.classifier import memory

    data = _snapshot_config(config)
    if data is not None:
        try:
            return memory.ModelShape.of_json(data)
        except (ValueError, TypeError, AttributeError, KeyError):
            pass
    return memory.known_shape(config.base_model.hf_id)


def _snapshot_config(config: Config) -> dict | None:
    """The config.json of the ``[base_model] local_dir`` snapshot, if it holds a readable one."""
    snapshot = config.root / config.base_model.local_dir / "config.json" if config.base_model.local_dir else None
    if snapshot is None or not snapshot.is_file():
        return None
    try:
        data = json.loads(snapshot.read_text())
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def training_fit(config: Config) -> tuple[list[str], list[Problem]]:
    """For each training kernel on an accelerator kagflow knows (``kaggle.GPU_CARDS``): the memory plan of [train]'s
    LoRA on one of its GPUs (``classifier.memory``) and the run-time estimate (``rules.runtime``) against the
    kernel's timeout. (lines to print, problems: a plan past the card, a run past the timeout)."""
    from kagflow.classifier import memory
    from kagflow.rules import runtime

    toml, t = config.path.name, config.train
    lines: list[str] = []
    problems: list[Problem] = []
    shape = model_shape(config)
    if shape is None:
        return [f"training plan: none ([base_model] hf_id {config.base_model.hf_id!r} has no known shape and "
                "local_dir no config.json)"], []
    try:
        lora = memory.LoraShape.of(t)
        lora.layers(shape)
    except (memory.MemoryPlanError, TypeError, ValueError) as e:
        return [], [Problem(toml, "[train] freeze_layers", str(e), f"set freeze_layers below {shape.layers}")]
    for name, kernel in sorted(config.kernels.items()):
        if kernel.kind != TRAIN:
            continue
        card = kaggle.GPU_CARDS.get(kernel.accelerator)
        if card is None:
            lines.append(f"[kernels.{name}] training plan: none (kagflow knows no memory figure for "
                         f"{kernel.accelerator!r})")
            continue
        gpus, mem, _bf16 = card
        where = f"[kernels.{name}] on {kernel.accelerator} ({gpus} x {mem} GiB)"
        fast = t.train_loop in ("auto", "fast")
        want = TRAIN_TOKENS if fast else t.per_device_train_batch_size * t.max_length
        setting = memory.Setting(limit_gib=mem - memory.SPARE_GIB, act_bytes=2, dense_weights=False,
                                 max_length=t.max_length, optimizer=t.optim_type, compiled=True)
        try:
            planned = memory.plan(shape, lora, setting, tokens=want, checkpointing=t.gradient_checkpointing)
        except memory.MemoryPlanError as e:
            problems.append(Problem(toml, "[train] lora_r / target_modules / freeze_layers / max_length",
                                    f"{where}: {e}", f"lower one of [train] {PLAN_KEYS} (the values above fit)"))
            continue
        lines.append(f"{where}: per GPU {planned.describe()}")
        if not fast and planned.tokens < want:
            rows = max(1, planned.tokens // t.max_length)
            problems.append(Problem(toml, "[train] per_device_train_batch_size",
                                    f"{where}: the HF Trainer pads {t.per_device_train_batch_size} rows x max_length "
                                    f"{t.max_length} = {want} tokens per micro-batch; the memory plan fits "
                                    f"{planned.tokens} ({planned.describe()})",
                                    f"set per_device_train_batch_size = {rows} (raise gradient_accumulation_steps "
                                    f"to keep the step), or lower [train] {PLAN_KEYS}"))
        rows = runtime.TRAIN_ROWS.get(config.project.competition)
        if rows is None:
            lines.append(f"{where}: training run time: no estimate (the train rows of "
                         f"{config.project.competition} are unknown to kagflow)")
            continue
        rows = min(rows, t.max_train_rows) if t.max_train_rows > 0 else rows
        estimate = runtime.training_run_time(
            rows=rows, n_splits=t.n_splits, epochs=t.n_epochs, max_length=t.max_length,
            adapted_pairs=lora.pairs(shape), gpus=gpus,
            model_scale=shape.linear_weights() / memory.GEMMA2_9B.linear_weights())
        resumes = f"kernel:{name}" in kernel.sources
        sessions = math.ceil(estimate.seconds / kernel.timeout) if kernel.timeout > 0 else 0
        lines.append(f"{where}: training run time {estimate.arithmetic} (timeout {runtime.hours(kernel.timeout)})")
        if estimate.seconds > kernel.timeout and resumes:
            lines.append(f"{where}: training takes {sessions} sessions: each resumes from the last one's checkpoint "
                         f'("kernel:{name}" in its sources)')
        elif estimate.seconds > kernel.timeout:
            problems.append(Problem(
                toml, f"[kernels.{name}] timeout",
                f"training would not finish within timeout = {kernel.timeout} s: {estimate.arithmetic} > "
                f"{runtime.hours(kernel.timeout)}",
                f"lower [train] n_epochs, max_length, max_train_rows or lora_r / target_modules (fewer trainable "
                f"parameters train faster), or train over {sessions} sessions: add \"kernel:{name}\" to "
                f"[kernels.{name}] sources (the fast loop resumes from the previous version's checkpoint) and run "
                "the kernel again until it completes"))
    return lines, problems


def _softcapped(config: Config) -> bool:
    """Whether the base model softcaps attention logits (Gemma 2): SDPA and flash-attention drop the cap.

    Read from the snapshot's config.json when ``[base_model] local_dir`` holds one (what the classifier
    reads too, ``ModelTraits``); otherwise guessed from the Hugging Face id and the title."""
    data = _snapshot_config(config)
    if data is not None:
        text = data.get("text_config") or data
        return bool(text.get("attn_logit_softcapping"))
    name = f"{config.base_model.hf_id} {config.base_model.title}".lower().replace("-", "").replace("_", "")
    return "gemma2" in name


def _check_kernel_config(config: Config, name: str, *, missing_is_problem: bool) -> Iterator[Problem]:
    toml = config.path.name
    kernel = config.kernel(name)
    where = f"[kernels.{name}]"
    try:
        sources = resolve_sources(config, name)
    except KagflowError as e:
        yield Problem(toml, f"{where} sources", e.message, e.hint or "fix the source")
        return
    if missing_is_problem:
        for source, command in sources.missing:
            yield Problem(toml, f"{where} sources", f"{source!r} is referenced but nothing has produced it yet",
                          f"run `{command}`")
    if "wheels" in kernel.sources and not config.wheels.requirements:
        yield Problem(toml, f"{where} sources", "'wheels' is referenced but [wheels] requirements is empty, "
                      "so no wheels dataset is built", "add requirements under [wheels] or remove 'wheels'")
    competitive = bool(sources.competition_sources)
    if competitive and kernel.internet and kernel.kind == INFER:
        yield Problem(toml, f"{where} internet", "a code-competition submission kernel has internet on; "
                      "Kaggle rejects its submission", "set internet = false")
    if competitive and kernel.accelerator in ("None", ""):
        yield Problem(toml, f"{where} accelerator", "a competition kernel runs without a GPU",
                      f'set accelerator = "{kaggle.DEFAULT_ACCELERATOR}"')
    if kernel.accelerator not in kaggle.ACCELERATORS:
        yield Problem(toml, f"{where} accelerator", f"unknown accelerator {kernel.accelerator!r}",
                      "use one of " + ", ".join(kaggle.ACCELERATORS))
    elif kernel.accelerator in kaggle.RETIRED_ACCELERATORS:
        instead = kaggle.RETIRED_ACCELERATORS[kernel.accelerator]
        yield Problem(toml, f"{where} accelerator", f"{kernel.accelerator} is retired; Kaggle runs the session "
                      f"on {instead} instead", f'set accelerator = "{instead}"')
    yield from _check_timeout(toml, where, kernel, competitive)
    if not kernel.private:
        private_sources = []
        if "wheels" in kernel.sources and config.wheels.private:
            private_sources.append("wheels")
        for which in MODELS:
            if which in kernel.sources and config.model(which).private:
                private_sources.append(which)
        if private_sources:
            yield Problem(toml, f"{where} private", "a public kernel uses private sources (" +
                          ", ".join(private_sources) + "): others cannot run or copy it",
                          "set private = true, or make those sources public (private = false)")


def _check_timeout(toml: str, where: str, kernel, competitive: bool) -> Iterator[Problem]:
    """Kaggle stops a session at 12 hours, and a code competition re-runs a submission notebook for at most 9."""
    if kernel.timeout > kaggle.SESSION_S:
        yield Problem(toml, f"{where} timeout", f"timeout = {kernel.timeout} s is past Kaggle's "
                      f"{kaggle.SESSION_S // 3600} h session limit: the run is stopped there",
                      f"set timeout = {kaggle.SESSION_S} or less")
    elif competitive and kernel.kind == INFER and kernel.timeout > kaggle.COMPETITION_RUN_S:
        yield Problem(toml, f"{where} timeout", f"timeout = {kernel.timeout} s is past the "
                      f"{kaggle.COMPETITION_RUN_S // 3600} h a code competition gives its notebooks: the "
                      "submission's re-run on the hidden test set would be stopped",
                      f"set timeout = {kaggle.COMPETITION_RUN_S} or less (and make the notebook fit)")


# --------------------------------------------------------------------------- generated files

def _check_generated(config: Config) -> Iterator[Problem]:
    for name in config.kernels:
        try:
            folder = config.kernel_dir(name)
        except KagflowError:
            continue
        meta = folder / metadata.KERNEL_METADATA
        if meta.is_file():
            yield from check_kernel_folder(folder, config=config, name=name)
    wheels_dir = config.wheels_dir()
    if (wheels_dir / metadata.DATASET_METADATA).is_file():
        yield from check_dataset_metadata(wheels_dir / metadata.DATASET_METADATA)
    if wheels_dir.is_dir():
        yield from check_wheels_folder(wheels_dir)
    models = config.layout.models
    if models.is_dir():
        for path in sorted(models.rglob(metadata.MODEL_METADATA)):
            yield from check_model_metadata(path)
        for path in sorted(models.rglob(metadata.MODEL_INSTANCE_METADATA)):
            yield from check_model_instance_metadata(path)


def _load(path: Path) -> tuple[dict | None, Problem | None]:
    try:
        return json.loads(path.read_text(encoding="utf-8")), None
    except (OSError, ValueError) as e:
        return None, Problem(str(path), "(file)", f"not readable JSON: {e}", "regenerate it with kagflow")


def check_kernel_folder(folder: Path, *, config: Config | None = None, name: str = "",
                        adapters: tuple[str, ...] = ()) -> Iterator[Problem]:
    path = folder / metadata.KERNEL_METADATA
    data, problem = _load(path)
    if problem:
        yield problem
        return
    f = str(path)
    regen = f"run `kagflow kernel render {name}`" if name else "fix the value"
    title, kid = data.get("title", ""), data.get("id", "")
    if not isinstance(title, str) or not (slugs.KERNEL_TITLE_MIN <= len(title) <= slugs.KERNEL_TITLE_MAX):
        yield Problem(f, "title", f"title {title!r} must be {slugs.KERNEL_TITLE_MIN}..{slugs.KERNEL_TITLE_MAX} "
                      "characters", regen)
    try:
        handle = slugs.KernelHandle.parse(kid)
        if handle.version is not None:
            yield Problem(f, "id", f"id {kid!r} carries a version", f"use {handle.owner}/{handle.slug}")
        elif isinstance(title, str) and not slugs.title_matches_slug(title, handle.slug):
            yield Problem(f, "title", f"title {title!r} slugifies to {slugs.slugify(title)!r}, not the id's slug "
                          f"{handle.slug!r}: Kaggle will create a second kernel", regen)
    except KagflowError as e:
        yield Problem(f, "id", e.message, e.hint or regen)
    for key in ("enable_internet", "is_private", "enable_gpu"):
        if key not in data:
            yield Problem(f, key, f"{key} is not written; Kaggle's default may not be what you want", regen)
    code = data.get("code_file", "")
    nb = folder / code if code else None
    if not nb or not nb.is_file():
        yield Problem(f, "code_file", f"code_file {code!r} does not exist in {folder}", regen)
    elif nb.suffix == ".ipynb":
        try:
            kernelspec = json.loads(nb.read_text(encoding="utf-8")).get("metadata", {}).get("kernelspec")
        except ValueError:
            kernelspec = None
        if not kernelspec or not kernelspec.get("name"):
            yield Problem(str(nb), "metadata.kernelspec", "the notebook has no kernelspec; Kaggle fails with "
                          "'No kernel name found'", regen)
    for source in data.get("model_sources", []):
        try:
            parsed = slugs.ModelInstanceVersionHandle.parse(source)
            if str(parsed) != source:
                yield Problem(f, "model_sources", f"{source!r} is not in kagflow's one form",
                              f"use {str(parsed)!r}")
        except KagflowError as e:
            yield Problem(f, "model_sources", e.message, e.hint or regen)
    for source in data.get("dataset_sources", []):
        try:
            slugs.DatasetHandle.parse(source)
        except KagflowError as e:
            yield Problem(f, "dataset_sources", e.message, e.hint or regen)
    if data.get("competition_sources") and data.get("enable_internet", True) and config and name and \
            config.kernel(name).kind == INFER:
        yield Problem(f, "enable_internet", "a competition submission kernel has internet on",
                      "set internet = false in kagflow.toml and re-render")
    if config is not None and name:
        try:
            expected = resolve_sources(config, name, adapters)
        except KagflowError:
            return
        kernel = config.kernel(name)
        wanted = {
            "id": f"{config.username}/{slugs.kernel_slug(kernel.title)}",
            "title": kernel.title,
            "dataset_sources": list(expected.dataset_sources),
            "model_sources": list(expected.model_sources),
            "competition_sources": list(expected.competition_sources),
            "kernel_sources": list(expected.kernel_sources),
            "enable_internet": kernel.internet,
            "is_private": kernel.private,
            "docker_image_pinning_type": kernel.docker_image_pinning_type,
        }
        if expected.missing:  # a pending source: the folder may list a version this config cannot confirm
            for key in ("model_sources", "dataset_sources", "kernel_sources"):
                wanted.pop(key)
        for key, value in wanted.items():
            if data.get(key) != value:
                yield Problem(f, key, f"{data.get(key)!r} is stale: kagflow.toml gives {value!r}", regen)


def check_dataset_metadata(path: Path) -> Iterator[Problem]:
    data, problem = _load(path)
    if problem:
        yield problem
        return
    f, title = str(path), data.get("title", "")
    try:
        slug = slugs.dataset_slug(title)
        handle = slugs.DatasetHandle.parse(data.get("id", ""))
        if handle.slug != slug:
            yield Problem(f, "id", f"id slug {handle.slug!r} is not slugify(title) = {slug!r}",
                          "run `kagflow wheels build` to regenerate it")
    except KagflowError as e:
        yield Problem(f, "title/id", e.message, e.hint or "fix the title")
    if "isPrivate" not in data:
        yield Problem(f, "isPrivate", "isPrivate is not written (Kaggle would default it)",
                      "run `kagflow wheels build` to regenerate it")
    licenses = data.get("licenses")
    if not isinstance(licenses, list) or len(licenses) != 1 or not isinstance(licenses[0], dict):
        yield Problem(f, "licenses", "exactly one licence is required",
                      "set [wheels] license in kagflow.toml and run `kagflow wheels build`")
    else:
        try:
            metadata.check_dataset_license(licenses[0].get("name", ""))
        except KagflowError as e:
            yield Problem(f, "licenses[0].name", e.message, f"{e.hint}; set [wheels] license and run "
                          "`kagflow wheels build`")


def check_wheels_folder(folder: Path) -> Iterator[Problem]:
    """A built wheels dataset must match its manifest (no wheel missing, altered or unlisted)."""
    from kagflow.wheels.build import MANIFEST_NAME, check_dataset

    if not (folder / MANIFEST_NAME).is_file():
        yield Problem(str(folder), MANIFEST_NAME, "the wheels folder has no manifest", "run `kagflow wheels build`")
        return
    try:
        messages = check_dataset(folder)
    except KagflowError as e:
        messages = [e.message]
    for message in messages:
        yield Problem(str(folder / MANIFEST_NAME), "packages", message, "run `kagflow wheels build` again")


def check_model_metadata(path: Path) -> Iterator[Problem]:
    data, problem = _load(path)
    if problem:
        yield problem
        return
    f = str(path)
    try:
        slug = slugs.model_slug(data.get("title", ""))
        if data.get("slug") != slug:
            yield Problem(f, "slug", f"slug {data.get('slug')!r} is not slugify(title) = {slug!r}",
                          "run `kagflow model publish` to regenerate it")
        slugs.check_owner(data.get("ownerSlug", ""))
    except KagflowError as e:
        yield Problem(f, "title/slug", e.message, e.hint or "fix the title")
    if not isinstance(data.get("isPrivate"), bool):
        yield Problem(f, "isPrivate", "isPrivate must be true or false", "run `kagflow model publish`")


def check_model_instance_metadata(path: Path) -> Iterator[Problem]:
    data, problem = _load(path)
    if problem:
        yield problem
        return
    f, fw = str(path), data.get("framework", "")
    try:
        expected = slugs.framework_metadata_name(fw)
        if fw != expected:
            yield Problem(f, "framework", f"framework {fw!r} is not in the camelCase enum form", f"use {expected!r}")
    except KagflowError as e:
        yield Problem(f, "framework", e.message, e.hint or "use 'transformers'")
    for key in ("modelSlug", "instanceSlug"):
        try:
            slugs.check_slug(data.get(key, ""), what=key)
        except KagflowError as e:
            yield Problem(f, key, e.message, e.hint or "fix it")
    regen = "set the model's license in kagflow.toml and run `kagflow model publish`"
    try:
        metadata.check_model_license(data.get("licenseName", ""))
    except KagflowError as e:
        yield Problem(f, "licenseName", e.message, f"{e.hint}; {regen}")
    try:
        metadata.model_instance_lineage(data.get("modelInstanceType", "Unspecified"),
                                        data.get("baseModelInstance", ""), data.get("externalBaseModelUrl", ""))
    except KagflowError as e:
        key = (e.context or "").partition(": ")[2].partition(";")[0] or "modelInstanceType"
        yield Problem(f, key, e.message, e.hint or regen)


# --------------------------------------------------------------------------- the competition's data

SAMPLE_SUBMISSION = "sample_submission.csv"


def check_data(session) -> list[Problem]:
    """The competition's files on the session's target against [data], before anything is pushed: the train and
    test files exist, and (where a copy can be read: the local Kaggle's files) their headers have [data]'s
    columns and sample_submission.csv is the submission [data] writes."""
    config = session.config
    try:
        files = session.target.data_files(session)
    except KagflowError as e:
        return [Problem(config.path.name, "[project] competition", e.message, e.hint or "fix [project] competition")]
    return [] if files is None else list(check_headers(config, files))


def _header(path: Path, *, whole: bool = False) -> tuple[list[str] | None, str]:
    """(the file's header, "") or (None, why it cannot be read); ``whole``: read every row too (an unclosed quote
    or a byte that is not UTF-8 anywhere in the file), else the header alone."""
    import csv

    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.reader(f)
            header = [c.strip() for c in next(reader, [])]
            if whole:
                for _ in reader:
                    pass
            return header, ""
    except UnicodeDecodeError as e:
        return None, f"is not UTF-8 text (byte {e.start} of a line near {getattr(reader, 'line_num', 0) + 1})"
    except csv.Error as e:
        return None, f"is not a readable CSV (line {reader.line_num}: {e}; an unclosed quote?)"
    except OSError as e:
        return None, f"cannot be read: {e.strerror}"


def check_headers(config: Config, files: dict, *, whole: bool = False) -> Iterator[Problem]:
    """``files`` (name -> a local copy, or None when only listed) against [data]: one problem per missing file or
    column, naming the [data] key that asks for it and the fix (a did-you-mean among the file's names); ``whole``:
    every row of the train and test files read too (an unreadable file is a problem)."""
    from difflib import get_close_matches

    data, toml = config.data, config.path.name
    labels = ("label_columns", data.label_columns) if data.label_columns else ("label_column", (data.label_column,))
    wanted = {data.train_file: ("train_file", [("id_column", (data.id_column,)), ("text_columns", data.text_columns),
                                               labels]),
              data.test_file: ("test_file", [("id_column", (data.id_column,)), ("text_columns", data.text_columns)])}
    csvs = sorted(n for n in files if n.endswith(".csv"))
    for name, (key, columns) in wanted.items():
        if name not in files:
            close = get_close_matches(name, csvs, n=1)
            yield Problem(toml, f"[data] {key}", f"the competition has no file {name!r} (its files: "
                          f"{', '.join(sorted(files)) or 'none'})",
                          f"write {key} = {close[0]!r}" if close else f"set {key} to one of its files")
            continue
        if files[name] is None:
            continue
        header, unreadable = _header(files[name], whole=whole)
        if unreadable:
            yield Problem(toml, f"[data] {key}", f"{name} {unreadable}", f"fix {name} (save it as UTF-8 CSV)")
        if header is None:
            continue
        unclaimed = [c for c in header if c not in {n for _, names in columns for n in names}]
        for column_key, names in columns:
            for column in names:
                if column not in header:
                    close = get_close_matches(column, unclaimed, n=1, cutoff=0.4)
                    yield Problem(toml, f"[data] {column_key}", f"{name} has no column {column!r} (its columns: "
                                  f"{', '.join(header)})", f"did you mean {close[0]!r}? Write [data] {column_key} "
                                  "with the file's column names" if close else
                                  f"write [data] {column_key} with columns of {name}")
    sample = files.get(SAMPLE_SUBMISSION)
    header = _header(sample)[0] if sample is not None else None
    if header is not None and sorted(header) != sorted(data.submission_columns):
        yield Problem(toml, "[data] submission", f"{SAMPLE_SUBMISSION} has columns {', '.join(header)}, but [data] "
                      f"(submission = {data.submission!r}) writes {', '.join(data.submission_columns)}",
                      "set [data] label_columns (probabilities: one column per label), or label_column, labels and "
                      "submission, to what sample_submission.csv holds")
