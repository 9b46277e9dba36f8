"""How long an inference kernel runs on Kaggle, before it is pushed: an ensemble that cannot finish is refused.

Run time = setup + per member (load, compile) + tokens / rate, where tokens = hidden test rows x views (2 with TTA)
x mean tokens per row at [infer] max_length, for every member of the ensemble (``[infer] ensemble = "members"``:
each member a full pass through the single adapter's tuned path, ``classifier/ensembling.py``), or once for
``"average_lora"`` (the members' LoRA deltas averaged into one adapter: one load, one pass). The numbers and where
each comes from:

* rate: Gemma-2-9B in the T4 configuration (fp16, eager, with TTA) measured on an H200 (bench/RESULTS.md): 4-bit
  with layers made dense 26,549 tok/s at 2,048 tokens (issue 17's table) and 21,964 at 3,072; 8-bit weight-only
  int8 (``[infer] int8_kernel``'s default: the LoRA merged, every linear int8 but the layers made dense) 25,188 at
  3,072 (issue 33, third session: it does not depend on the LoRA shape, every adapter is merged); LLM.int8
  (``int8_kernel = "llm_int8"``) 9,392 at 3,072 (mean of two calls, ``bench/winners.py``); the measured point
  nearest ``max_length`` is used. A T4 is ~15x slower per token
  (bench/RESULTS.md, the two-GPU section), and one model per GPU on T4 x2 gave 1.89x one GPU (#15). An ensemble's
  members run at that same single-adapter rate: each is loaded alone and prepared as one adapter is (before issue 33
  they ran untuned, LoRA unmerged with no compiled or dense layers, at ~0.66x).
* mean tokens per row: KAGGLE-FACTS' fit to the published lengths, LogNormal(median 510, sigma 0.70), capped at
  max_length (E[min(L, cap)] in closed form), plus the prompt template's ~40 tokens.
* hidden test rows: 25,000 for the LMSYS competitions (KAGGLE-FACTS); other competitions: no estimate.
* setup 300 s (wheels, imports), 200 s per member to load and compile (a guess until a T4 report measures it).

Pure arithmetic, the stdlib only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from kagflow.errors import KagflowError

H200_T4_CONFIG_TOKENS_PER_S = 26549.0  # bench/RESULTS.md: T4-config inference at 2,048 tokens with TTA, one H200
# (max_length, tok/s) measured per [infer] quantization (8-bit: per int8_kernel), T4 configuration with TTA on one
# H200 (bench/RESULTS.md)
H200_T4_CONFIG_RATES = {"4bit": ((2048, H200_T4_CONFIG_TOKENS_PER_S), (3072, 21964.0)),
                        "8bit": ((3072, 25188.0),), "8bit llm_int8": ((3072, 9392.0),)}
T4_SLOWER = 15.0  # per token, a T4 against an H200 (bench/RESULTS.md)
TWO_T4_SPEEDUP = 1.89  # one model per GPU on T4 x2 against one (bench/RESULTS.md #15)
SETUP_S, LOAD_S = 300.0, 200.0
# [train] prompt_template's default: 26 fixed tokens on Gemma's tokenizer (BOS, headers, suffix, EOS; 19 before the
# suffix and EOS), plus turn separators and truncation markers
TEMPLATE_TOKENS = 40
LENGTH_MEDIAN, LENGTH_SIGMA = 510.0, 0.70  # KAGGLE-FACTS: tokens per row, LogNormal fit
HIDDEN_TEST_ROWS = {"llm-classification-finetuning": 25000, "lmsys-chatbot-arena": 25000}
T4_ACCELERATORS = {"NvidiaTeslaT4": 2, "NvidiaTeslaT4Highmem": 2}  # Kaggle's T4 x2


@dataclass(frozen=True)
class RunTime:
    seconds: float
    arithmetic: str  # the numbers the estimate is made of, for the message


def hours(seconds: float) -> str:
    return f"{seconds / 3600:.1f} h"


def mean_tokens_per_row(max_length: int) -> float:
    """E[min(L, max_length)] for L ~ LogNormal(median LENGTH_MEDIAN, sigma LENGTH_SIGMA), plus the template."""
    mu, s = math.log(LENGTH_MEDIAN), LENGTH_SIGMA
    cap = max(1.0, float(max_length) - TEMPLATE_TOKENS)
    z = (math.log(cap) - mu) / s
    phi = lambda x: 0.5 * (1 + math.erf(x / math.sqrt(2)))  # noqa: E731
    return math.exp(mu + s * s / 2) * phi(z - s) + cap * (1 - phi(z)) + TEMPLATE_TOKENS


def inference_run_time(*, members: int, rows: int, tta: bool, max_length: int, gpus: int,
                       tokens_per_s_per_gpu: float, averaged: bool = False) -> RunTime:
    """The run time of an inference kernel and its arithmetic; ``averaged``: the members' LoRA averaged into one
    adapter (``[infer] ensemble = "average_lora"``), one pass."""
    views = 2 if tta else 1
    per_row = mean_tokens_per_row(max_length)
    passes = 1 if averaged else members
    tokens = passes * rows * views * per_row
    rate = tokens_per_s_per_gpu * (TWO_T4_SPEEDUP if gpus == 2 else gpus)
    seconds = SETUP_S + passes * LOAD_S + tokens / rate
    what = f"{members} adapter(s) averaged into 1 (average_lora)" if averaged and members > 1 else \
        f"{passes} adapter(s)"
    return RunTime(seconds, f"{what} x {rows:,} rows x {views} view(s) x {per_row:.0f} tokens "
                            f"(mean at max_length {max_length}) = {tokens / 1e6:.1f} M tokens at {rate:,.0f} tok/s "
                            f"({gpus} GPU(s), {tokens_per_s_per_gpu:,.0f} tok/s each, tuned path) + setup "
                            f"{SETUP_S:.0f} s + {passes} x {LOAD_S:.0f} s to load = {hours(seconds)}")


def h200_rate(quantization: str, max_length: int, int8_kernel: str = "weight_only") -> float:
    """The H200's measured T4-configuration rate for ``quantization`` (8-bit: computed by ``int8_kernel``) at the
    measured max_length nearest."""
    points = H200_T4_CONFIG_RATES["8bit llm_int8" if quantization == "8bit" and int8_kernel == "llm_int8"
                                  else quantization]
    return min(points, key=lambda point: abs(point[0] - max_length))[1]


def kaggle_inference_run_time(competition: str, accelerator: str, *, members: int, tta: bool,
                              max_length: int, quantization: str = "4bit", int8_kernel: str = "weight_only",
                              ensemble: str = "members") -> RunTime | None:
    """``inference_run_time`` on Kaggle's T4 x2 for a competition of known hidden test size; None otherwise."""
    rows = HIDDEN_TEST_ROWS.get(competition)
    gpus = T4_ACCELERATORS.get(accelerator)
    if rows is None or gpus is None:
        return None
    return inference_run_time(members=members, rows=rows, tta=tta, max_length=max_length, gpus=gpus,
                              tokens_per_s_per_gpu=h200_rate(quantization, max_length, int8_kernel) / T4_SLOWER,
                              averaged=ensemble == "average_lora")



def most_members(timeout: int, estimate_for) -> int:
    """The most ensemble members ``estimate_for(members) -> RunTime`` fits within ``timeout`` (0: not even one)."""
    n = 0
    while n < 64 and estimate_for(n + 1).seconds <= timeout:
        n += 1
    return n


def refuse_past_timeout(estimate: RunTime, timeout: int, *, name: str, estimate_for) -> None:
    """Refuse (KagflowError) an inference kernel that would not finish within ``timeout`` seconds; the hint gives
    the most members that would (``estimate_for(members)``)."""
    if estimate.seconds <= timeout:
        return
    fits = most_members(timeout, estimate_for)
    raise KagflowError(f"the inference kernel {name!r} would not finish in {hours(timeout)}",
                       context=f"estimate: {estimate.arithmetic} > {hours(timeout)}",
                       hint=f"use at most {fits} adapter(s) (fewer folds), set [infer] ensemble = \"average_lora\" "
                            f"(one pass), [infer] tta = false or a lower max_length, or push anyway with --force "
                            f"([infer] deadline_s then writes what it reached)")


# --- Training: how long the training kernel runs on Kaggle's T4 x2 ------------------------------------------------
# Gemma-2-9B training in the T4 configuration (fp16 + GradScaler, 15 GiB cap, max_length 1,024) on one H200
# (bench/RESULTS.md), per LoRA configuration as (adapted layer-projection pairs, tok/s, the shape): the time per
# token is a straight line in the number of (decoder layer, projection) pairs LoRA adapts, since each pair adds its
# adapter matmuls and the backward pass through it, while the rank barely counts (r 32 and r 64 on the same 294
# pairs: 4,398 and 4,603 tok/s). The line fitted to these five points gives each within 3 %.
H200_T4_CONFIG_TRAIN_RATES = (
    (26 * 3, 8097.0, "r 16 on q/k/v, 16 of 42 layers frozen (#13's sixth measurement, call 2)"),
    (26 * 7, 5943.0, "r 64 on all seven projections, 16 frozen (issue 33's LoRA sweep)"),
    (34 * 7, 5190.1, "r 64 on all seven, 8 frozen (LoRA sweep)"),
    (42 * 7, 4603.0, "r 64 on all seven, none frozen (issue 33, winners recipe, call 1)"),
    (42 * 7, 4397.9, "r 32 on all seven, none frozen (LoRA sweep)"),
)


def _fit_line(points) -> tuple[float, float]:
    """Least squares of seconds per million tokens against pairs: (intercept, slope)."""
    xs = [p for p, _, _ in points]
    ys = [1e6 / r for _, r, _ in points]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)
    return my - slope * mx, slope


US_PER_TOKEN, US_PER_TOKEN_PER_PAIR = _fit_line(H200_T4_CONFIG_TRAIN_RATES)
TWO_T4_TRAIN_SPEEDUP = 1.84
EVAL_SPEEDUP = 3.0  # a validation row's forward pass against a training row's forward + backward (a guess)
TRAIN_ROWS = {"llm-classification-finetuning": 57477, "lmsys-chatbot-arena": 57477}  # train.csv (KAGGLE-FACTS)


def train_rate(adapted_pairs: int) -> tuple[float, str]:
    """The H200's T4-configuration training rate for a LoRA on ``adapted_pairs`` (decoder layer, projection) pairs
    and how it was found (the fitted line of ``H200_T4_CONFIG_TRAIN_RATES``)."""
    rate = 1e6 / (US_PER_TOKEN + US_PER_TOKEN_PER_PAIR * adapted_pairs)
    lo, hi = min(p for p, _, _ in H200_T4_CONFIG_TRAIN_RATES), max(p for p, _, _ in H200_T4_CONFIG_TRAIN_RATES)
    where = "within" if lo <= adapted_pairs <= hi else "outside"
    return rate, (f"{rate:,.0f} tok/s for {adapted_pairs} adapted layer-projection pairs, {where} the measured "
                  f"{lo}-{hi}")


def training_run_time(*, rows: int, n_splits: int, epochs: float, max_length: int, adapted_pairs: int,
                      gpus: int, model_scale: float = 1.0) -> RunTime:
    """The run time of a training kernel (one fold: (n_splits - 1) / n_splits of ``rows`` trained ``epochs``
    times, the rest evaluated each epoch) and its arithmetic. ``model_scale``: the model's linear weights against
    Gemma-2-9B's (the rates were measured on 9B: time scales with the weights)."""
    train_rows = rows * (n_splits - 1) // n_splits if n_splits > 1 else rows
    per_row = mean_tokens_per_row(max_length)
    tokens = train_rows * per_row * epochs
    eval_tokens = (rows - train_rows) * per_row * math.ceil(epochs)
    h200, how = train_rate(adapted_pairs)
    rate = h200 / T4_SLOWER * (TWO_T4_TRAIN_SPEEDUP if gpus == 2 else gpus) / model_scale
    seconds = SETUP_S + LOAD_S + tokens / rate + eval_tokens / (rate * EVAL_SPEEDUP)
    scale = f", / {model_scale:.2f} for the model's size" if model_scale != 1.0 else ""
    return RunTime(seconds, f"{train_rows:,} rows x {per_row:.0f} tokens (mean at max_length {max_length}) x "
                            f"{epochs:g} epoch(s) = {tokens / 1e6:.1f} M tokens at {rate:,.0f} tok/s ({how} on an "
                            f"H200 in the T4 configuration, / {T4_SLOWER:.0f} per T4, x "
                            f"{TWO_T4_TRAIN_SPEEDUP if gpus == 2 else gpus} for {gpus} GPU(s){scale}) + "
                            f"{eval_tokens / 1e6:.1f} M validation tokens at {EVAL_SPEEDUP:.0f}x + setup "
                            f"{SETUP_S + LOAD_S:.0f} s = {hours(seconds)}")
