"""The run configurations (the seed's recipe as defaults) and how notebooks build them.

Stdlib only: kagflow.project.config reads [train] and [infer] of kagflow.toml into these same classes."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from .text import Encoding


def from_namespace(cls, namespace: dict):
    """An instance of dataclass ``cls`` from the entries of ``namespace`` named like its fields."""
    return cls(**{f.name: namespace[f.name] for f in dataclasses.fields(cls) if f.name in namespace})


def defaults(cls) -> dict:
    """Field name -> default of dataclass ``cls`` (tuples as lists, as a notebook writes them)."""
    return {f.name: list(f.default) if isinstance(f.default, tuple) else f.default
            for f in dataclasses.fields(cls)}


# The `optim_type` values the fast loop (fit.make_optimizer) builds; the HF Trainer takes any of its own.
# "auto" (the default): fused fp32 AdamW in the fast loop (LoRA's few million parameters make 8-bit state
# pointless: ~60 MB in fp32, and bitsandbytes launches kernels per tensor; bench/RESULTS.md, third
# measurement), the seed's bitsandbytes adamw_8bit in the HF Trainer (``fit.resolve_optim``).
FAST_LOOP_OPTIMIZERS = ("auto", "adamw_8bit", "adamw_bnb_8bit", "paged_adamw_8bit", "paged_adamw_32bit", "adamw_torch",
                        "adamw_hf", "adamw_torch_fused")
TIME_BUDGET_MARGIN = 1200  # seconds of a kernel's timeout kept for setup before training (wheels, model load)


@dataclass(frozen=True)
class TrainConfig:
    """The seed's Config plus the knobs a tuner needs; field names are the notebook's parameter names."""

    max_length: int = 1024
    n_splits: int = 5
    fold_idx: int = 0
    optim_type: str = "auto"
    per_device_train_batch_size: int = 3
    gradient_accumulation_steps: int = 2
    per_device_eval_batch_size: int = 8
    n_epochs: float = 1
    freeze_layers: int = 16
    lr: float = 2e-4
    warmup_steps: int = 20
    lora_r: int = 64
    lora_alpha: float = 16
    lora_dropout: float = 0.05
    lora_bias: str = "none"
    target_modules: tuple = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
    seed: int = 42
    max_train_rows: int = 0  # 0: all rows
    attn_implementation: str = "auto"  # from the model's config: eager/flex if soft-capped, else sdpa
    # true: checkpoint activations where memory needs it (the fast loop: per card, none on 70+ GiB cards;
    # the HF Trainer: every layer); false: never
    gradient_checkpointing: bool = True
    eval_strategy: str = "epoch"  # "epoch", "steps" (every logging_steps) or "no" (the final evaluation only)
    logging_steps: int = 10
    save_steps: int = 200  # a resumable checkpoint every save_steps steps ...
    save_minutes: float = 30  # ... and every save_minutes minutes (0: off), in both loops
    save_total_limit: int | None = 2
    dataloader_num_workers: int = 0
    keep_checkpoints: bool = False  # after a finished run; the adapter folder has what inference needs
    # seconds from the start of training until it must have stopped, evaluated and saved the adapter
    # (a stopped run leaves a checkpoint that the next kernel version resumes); 0: no limit. Rendered
    # kernels get the kernel's timeout less TIME_BUDGET_MARGIN when this is 0.
    time_budget: float = 0
    # "auto": on a GPU kagflow's measured loop (fit.fit_lora: token-budget micro-batches, recipe per card,
    # 3.2x the seed's Trainer on an H100); on the CPU the HF Trainer. "trainer": always the HF Trainer.
    # "fast": always fit_lora. Both checkpoint, resume and keep the time budget.
    train_loop: str = "auto"
    # Weight of each class in the loss: one weight per class in [data]'s order (LMSYS: winner_model_a,
    # winner_model_b, winner_tie), or "balanced" (n_rows / (n_classes * rows of the class)); empty: unweighted.
    # Both training loops (classifier/loss.py).
    class_weights: str | tuple[float, ...] = ()
    # `kagflow flow` trains each of these folds (fold_idx values) as its own kernel version and averages
    # their adapters at inference (an ensemble); empty: fold_idx alone. `kagflow flow --folds 0-4` too.
    folds: tuple[int, ...] = ()
    # The model input (classifier/text.py ``Encoding``; written beside the adapter as encoding.json, which
    # inference reads back): "head_tail" (a long turn keeps its head and tail around truncation_marker) or
    # "head"; whole_rounds: the newest whole rounds in every column where the columns are turn lists of one
    # length; text_shares: one share per [data] text_columns (empty: a swap column twice any other); the Jinja
    # prompt_template lays the columns out with an instruction suffix; append_eos: the pooled token is EOS.
    truncation: str = Encoding.truncation
    whole_rounds: bool = Encoding.whole_rounds
    text_shares: tuple[float, ...] = Encoding.text_shares
    truncation_marker: str = Encoding.truncation_marker
    prompt_template: str = Encoding.prompt_template
    append_eos: bool = Encoding.append_eos
    # Training data beyond the competition's train file (classifier/extra.py): CSVs in [data]'s schema from
    # Kaggle datasets ("owner/slug/file.csv"; the train kernel mounts each dataset), deduplicated by their
    # normalised texts against the competition's rows (validation fold included) and only ever trained on.
    extra_train_files: tuple[str, ...] = ()
    # Probability that a training row has its swap_columns exchanged and its first two labels swapped (seeded).
    swap_augmentation: float = 0.0
    # Train on probability targets (soft cross-entropy): label cells holding probabilities (summing to 1) are
    # kept as soft targets, and soft_label_columns (one probability column per class, a teacher's) give a row's
    # target where filled; false: only one-hot labels, as before.
    soft_labels: bool = False
    soft_label_columns: tuple[str, ...] = ()
    # Pseudo-labels: submission.csv files of probabilities ("owner/slug/file.csv" in a dataset, as
    # extra_train_files) joined by id with the competition's test file: soft-labelled training rows.
    pseudo_label_files: tuple[str, ...] = ()

    from_namespace = classmethod(from_namespace)


@dataclass(frozen=True)
class InferConfig:
    """Inference knobs; field names are the notebook's parameter names."""

    max_length: int = 2048
    batch_size: int = 8  # rows of max_length per batch: the token budget of a length-sorted batch
    tta: bool = True
    attn_implementation: str = "auto"  # from the model's config: eager/flex if soft-capped, else sdpa
    # the base's precision where the model stays quantised (T4s, 16-24 GB cards; big cards merge into bf16):
    # "4bit" (NF4, as trained; layers made dense where memory allows) or "8bit" (the NF4 weights with the LoRA
    # merged, rounded to int8 per output row: dequant.int8_layers). int8_kernel: how 8-bit computes, "weight_only"
    # (dequant.Int8Linear: each weight dequantised per forward, fp16/bf16 activations, layers made dense where
    # memory allows, as 4-bit) or "llm_int8" (bitsandbytes' LLM.int8: activations quantised too, outlier columns
    # past int8_threshold in fp16, 0: all int8; no dense layers)
    quantization: str = "4bit"
    int8_kernel: str = "weight_only"
    int8_threshold: float = 6.0
    # seconds from the notebook's start by which submission.csv must be written (classifier/deadline.py: TTA
    # dropped, then shorter rows, then priors for what is left); 0: no deadline. Rendered kernels get the
    # kernel's timeout less INFER_DEADLINE_MARGIN when this is 0.
    deadline_s: float = 0
    # an ensemble (several adapters): "members" runs each through the single adapter's tuned path in turn (its own
    # base load, LoRA merged/dense/compiled per the card's recipe, freed before the next) and averages their
    # probabilities; "average_lora" (members of one base and LoRA targets) averages the merged deltas B @ A of
    # every layer (and the score heads) into one adapter: one tuned pass (``ensembling``)
    ensemble: str = "members"
    # probabilities at inference become softmax(log p / T) (``calibration``): "none" (T = 1), a number (T), or
    # "oof": T fitted by log loss on the folds' out-of-fold predictions by `kagflow flow`'s infer step, which pushes
    # the number (a kernel pushed on its own with "oof" is refused: it has no out-of-fold predictions)
    temperature: str | float = "none"

    from_namespace = classmethod(from_namespace)


QUANTIZATIONS = ("4bit", "8bit")
INT8_KERNELS = ("weight_only", "llm_int8")  # [infer] int8_kernel: how quantization = "8bit" computes
ENSEMBLES = ("members", "average_lora")
TEMPERATURES = ("none", "oof")  # [infer] temperature's words (else a number)
INFER_DEADLINE_MARGIN = 600  # seconds of an inference kernel's timeout its rendered deadline_s keeps in hand
