"""The training memory plan: what a LoRA run keeps on one GPU, term by term, from the model's shape and the LoRA.

``recipe.recipe_for_profile`` asks it how many trainable layers may keep their activations (the rest are
checkpointed) and how many tokens a micro-batch may hold; when nothing fits, ``memory_plan`` refuses with every
term and the changes that would fit (``MemoryPlanError``). Pure arithmetic, the stdlib only:

    n        = layers with LoRA (layers - freeze_layers): the trainable layers; the backward stops below them
    P        = n * sum_t r * (in_t + out_t) + hidden * n_labels          (the score head)  == peft's trainable count
    state    = P * (4 weight + 4 grad + 8 fused AdamW | 2 bitsandbytes 8-bit)                  fp32 LoRA + head
    weights  = the base on the device: NF4 0.5 B/weight + 4 B/64 flattened scales (dequant.flatten_absmax), or
               2 B/weight dequantised (big cards), + the embedding at 2 B (4 on the CPU)
    c        = hidden * a                             per token: a checkpointed layer keeps its input
    u        = a * (6 * hidden + 2 * intermediate) + 4 * heads * L       per token: an unchecked layer (compiled;
               + sum_t (in_t * (a + 1) + r * a)      eager x 1.7), L = min(max_length, tokens); the LoRA term: each
                                                      target's dropped input and mask (one input per group of
                                                      targets without dropout) and its rank-r output
    misc     = 0.63 * u                               per token: the head, the logits and a layer being recomputed
    peak     = weights + state + T * (n * c + misc) + keep * T * (u - c)

a = 2 bytes on GPUs. The coefficients are fitted to the measured Gemma-2-9B peaks (bench/RESULTS.md): 16 GB
T4 recipe at r16 on q/k/v, 26 trainable layers, 4,096 tokens, max_length 1,024: 13.21 GiB allocated with 8 layers
unchecked (fifth measurement; planned 13.21), 9.87 / 12.85 GiB with 4 / 8 before the scales were flattened
(third; planned 9.45 / 12.37), eager 11.82 GiB with 4 (third; planned 11.98); the big card without
checkpointing 37.72 GiB (sixth; planned 37.46). The limit keeps ``SPARE_GIB`` of the card free: the caching
allocator reserved ~1 GiB over the allocated peak in every measurement. ``bench/gpu16.py`` records the planned
next to the measured peak of every run (``planned_peak_gib``), so the coefficients can be refitted.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

GIB = 2 ** 30
SPARE_GIB = 1.75  # kept free of the card: allocator overhead (~1 GiB reserved over allocated) + margin
PROJECTIONS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
# targets that read the same input (the attention's or the MLP's normed hidden state): without dropout one copy
INPUT_GROUPS = {"q_proj": "attn", "k_proj": "attn", "v_proj": "attn", "gate_proj": "mlp", "up_proj": "mlp"}
K_HIDDEN, K_INTER, ATTN_BYTES = 6, 2, 4  # an unchecked compiled layer's own activations per token (fitted)
EAGER_FACTOR = 1.7  # eager layers keep 1.7x a compiled layer's (1.2 vs 0.75 GiB at 4,096 tokens, first/third runs)
MISC_SHARE = 0.63  # misc per token as a share of an unchecked layer's (fitted: 0.48 GiB at 4,096 tokens)
SCALE_BYTES = 4 / 64  # flattened NF4 block scales: one float32 per 64 weights
LENGTHS = (4096, 2048, 1536, 1024, 768, 512, 256)  # max_length values a refusal proposes


class MemoryPlanError(ValueError):
    """The LoRA configuration cannot fit the card: the message names every term and the changes that fit."""


@dataclass(frozen=True)
class ModelShape:
    """What the plan needs of a decoder: layers, widths, heads, vocabulary, labels."""

    layers: int
    hidden: int
    intermediate: int
    q_width: int  # heads x head_dim (q_proj's output, o_proj's input)
    kv_width: int  # key-value heads x head_dim
    heads: int
    vocab: int
    n_labels: int = 3

    @classmethod
    def of(cls, config) -> "ModelShape":
        """The shape of a transformers config (its text part for multimodal ones)."""
        text = config.get_text_config() if hasattr(config, "get_text_config") else config
        heads = int(text.num_attention_heads)
        head_dim = int(getattr(text, "head_dim", None) or text.hidden_size // heads)
        kv = int(getattr(text, "num_key_value_heads", None) or heads)
        return cls(layers=int(text.num_hidden_layers), hidden=int(text.hidden_size),
                   intermediate=int(text.intermediate_size), q_width=heads * head_dim, kv_width=kv * head_dim,
                   heads=heads, vocab=int(text.vocab_size), n_labels=int(getattr(config, "num_labels", 3) or 3))

    @classmethod
    def of_json(cls, data: dict) -> "ModelShape":
        """The shape of a checkpoint's config.json (its ``text_config`` for multimodal ones)."""
        from types import SimpleNamespace

        text = data.get("text_config") or data
        return cls.of(SimpleNamespace(**{**text, "num_labels": data.get("num_labels", 3)}))

    def dims(self, target: str) -> tuple[int, int]:
        """(in, out) features of projection ``target``; an unknown name counts as the widest (hidden, intermediate)."""
        h, i, q, kv = self.hidden, self.intermediate, self.q_width, self.kv_width
        return {"q_proj": (h, q), "k_proj": (h, kv), "v_proj": (h, kv), "o_proj": (q, h), "gate_proj": (h, i),
                "up_proj": (h, i), "down_proj": (i, h)}.get(target, (h, i))

    def linear_weights(self) -> int:
        """Weights of the seven projections of all layers (what the 4-bit base quantises)."""
        return self.layers * sum(a * b for a, b in map(self.dims, PROJECTIONS))


GEMMA2_9B = ModelShape(layers=42, hidden=3584, intermediate=14336, q_width=4096, kv_width=2048, heads=16,
                       vocab=256000)  # what every measurement in bench/RESULTS.md ran
# Hugging Face ids (lower case, a substring of the id) whose shape is known without their config.json
KNOWN_SHAPES = {"gemma-2-9b": GEMMA2_9B}


def known_shape(hf_id: str) -> "ModelShape | None":
    """The shape of a base model named by its Hugging Face id, where it is one of ``KNOWN_SHAPES``."""
    name = hf_id.lower()
    return next((shape for key, shape in KNOWN_SHAPES.items() if key in name), None)


@dataclass(frozen=True)
class LoraShape:
    """The LoRA configuration as the plan sees it ([train] lora_r, target_modules, freeze_layers, lora_dropout)."""

    r: int
    targets: tuple[str, ...]
    freeze_layers: int
    dropout: float = 0.0

    @classmethod
    def of(cls, cfg) -> "LoraShape":
        """From a ``config.TrainConfig`` (or anything with its LoRA fields)."""
        targets = cfg.target_modules
        targets = PROJECTIONS if targets in ("all-linear", ("all-linear",)) else tuple(targets)
        return cls(int(cfg.lora_r), targets, int(cfg.freeze_layers), float(cfg.lora_dropout))

    def layers(self, shape: ModelShape) -> int:
        """The decoder layers LoRA adapts (``model.lora_layers``: those from freeze_layers on)."""
        if self.freeze_layers >= shape.layers:
            raise MemoryPlanError(f"freeze_layers = {self.freeze_layers} leaves none of the {shape.layers} layers to "
                                  f"train; set freeze_layers below {shape.layers}")
        return shape.layers - max(0, self.freeze_layers)

    def pairs(self, shape: ModelShape) -> int:
        """The (decoder layer, projection) pairs LoRA adapts: what the training rate follows (rules/runtime.py)."""
        return self.layers(shape) * len(self.targets)

    def params(self, shape: ModelShape) -> int:
        """Trainable parameters: the LoRA matrices of the adapted layers and the score head."""
        per_layer = sum(self.r * (a + b) for a, b in map(shape.dims, self.targets))
        return self.layers(shape) * per_layer + shape.hidden * shape.n_labels

    def activation_bytes(self, shape: ModelShape, a: int) -> int:
        """Per token, what the LoRA adds to an unchecked layer's activations."""
        total, groups = 0, set()
        for t in self.targets:
            in_t = shape.dims(t)[0]
            if self.dropout > 0:
                total += in_t * (a + 1)  # its own dropped copy of the input, and the mask
            elif INPUT_GROUPS.get(t, t) not in groups:
                groups.add(INPUT_GROUPS.get(t, t))
                total += in_t * a  # the input lora_A's gradient needs, once per shared input
            total += self.r * a
        return total

    def describe(self, shape: ModelShape) -> str:
        return (f"lora_r {self.r} x {len(self.targets)} target(s) x {self.layers(shape)} layer(s) "
                f"(freeze_layers {self.freeze_layers}): {self.params(shape) / 1e6:.1f} M trainable parameters")


def optimizer_bytes(optim: str) -> int:
    """Optimizer state per trainable parameter: 2 for bitsandbytes' 8-bit AdamW, 8 for fp32 AdamW ("auto": the fast
    loop's fused AdamW)."""
    return 2 if "8bit" in optim else 8


@dataclass(frozen=True)
class Setting:
    """What the plan is computed for: the card, precision and the run's lengths."""

    limit_gib: float | None  # what the run may use (card - SPARE_GIB); None: no limit (the CPU)
    act_bytes: int  # activation bytes: 2 (GPU) or 4 (CPU fp32)
    dense_weights: bool  # the base dequantised to 2 B/weight (big cards) instead of NF4
    max_length: int
    optimizer: str = "auto"
    compiled: bool = True  # decoder layers compiled (every GPU; the CPU runs eager)


@dataclass(frozen=True)
class MemoryPlan:
    """A plan: the micro-batch budget, checkpointing, the unchecked layers (compiled and after an eager fallback),
    and the peak term by term (GiB)."""

    tokens: int
    checkpointing: bool
    unchecked: int
    unchecked_eager: int
    terms: tuple[tuple[str, float], ...]
    limit_gib: float | None
    trainable_params: int
    lora_layers: int

    @property
    def peak_gib(self) -> float:
        return round(sum(v for _, v in self.terms), 2)

    def describe(self) -> str:
        terms = " + ".join(f"{name} {value:.2f}" for name, value in self.terms)
        limit = f" of {self.limit_gib:.2f} GiB" if self.limit_gib is not None else " GiB"
        how = (f"{self.unchecked} of {self.lora_layers} trainable layers unchecked ({self.unchecked_eager} if eager)"
               if self.checkpointing else "no checkpointing")
        return (f"memory plan: {self.tokens} tokens per micro-batch, {how}; peak {self.peak_gib:.2f}{limit} "
                f"= {terms}; {self.trainable_params / 1e6:.1f} M trainable parameters")

    __repr__ = describe


def _terms(shape: ModelShape, lora: LoraShape, s: Setting, tokens: int, checkpointing: bool, keep: int, *,
           compiled: bool) -> tuple[tuple[str, float], ...]:
    a = s.act_bytes
    n = lora.layers(shape)
    weights = shape.linear_weights() * (2.0 if s.dense_weights else 0.5 + SCALE_BYTES) + shape.vocab * shape.hidden * a
    state = lora.params(shape) * (8 + optimizer_bytes(s.optimizer))
    length = min(s.max_length, tokens)
    own = a * (K_HIDDEN * shape.hidden + K_INTER * shape.intermediate) + ATTN_BYTES * shape.heads * length
    u = (own if compiled else EAGER_FACTOR * own) + lora.activation_bytes(shape, a)
    c = shape.hidden * a
    kept = n - keep if checkpointing else 0
    unchecked = keep if checkpointing else n
    return (("weights", weights / GIB), ("lora state", state / GIB), ("checkpointed inputs", tokens * kept * c / GIB),
            ("unchecked layers", tokens * unchecked * u / GIB), ("misc", tokens * MISC_SHARE * u / GIB))


def _peak(terms) -> float:
    return sum(v for _, v in terms)


def _fit_keep(shape, lora, s: Setting, tokens: int, *, compiled: bool) -> int | None:
    """The most unchecked layers within the limit at ``tokens`` (None: not even with every layer checkpointed)."""
    n = lora.layers(shape)
    if s.limit_gib is None:
        return n
    if _peak(_terms(shape, lora, s, tokens, True, 0, compiled=compiled)) > s.limit_gib:
        return None
    keep = 0
    while keep < n and _peak(_terms(shape, lora, s, tokens, True, keep + 1, compiled=compiled)) <= s.limit_gib:
        keep += 1
    return keep


def plan(shape: ModelShape, lora: LoraShape, s: Setting, *, tokens: int, checkpointing: bool) -> MemoryPlan:
    """The plan at a preferred micro-batch budget ``tokens``: without checkpointing where asked (``checkpointing``
    False) or where that fits, else checkpointing with as many layers unchecked as fit, the budget halved while even
    all layers checkpointed would not fit (down to max_length: one row). Raises ``MemoryPlanError`` (every term, the
    changes that fit) when nothing does."""
    n = lora.layers(shape)
    params = lora.params(shape)
    full = _terms(shape, lora, s, tokens, False, 0, compiled=s.compiled)
    if not checkpointing or s.limit_gib is None or _peak(full) <= s.limit_gib:
        if s.limit_gib is not None and _peak(full) > s.limit_gib:
            raise MemoryPlanError(_refusal(shape, lora, s, full, tokens, checkpointing=False))
        return MemoryPlan(tokens, False, n, n, _rounded(full), s.limit_gib, params, n)
    t = tokens
    while True:
        keep = _fit_keep(shape, lora, s, t, compiled=s.compiled)
        if keep is not None:
            break
        if t // 2 < min(s.max_length, tokens):
            raise MemoryPlanError(_refusal(shape, lora, s, _terms(shape, lora, s, t, True, 0, compiled=s.compiled),
                                           t, checkpointing=True))
        t //= 2
    keep_eager = min(keep, _fit_keep(shape, lora, s, t, compiled=False) or 0) if s.compiled else keep
    terms = _terms(shape, lora, s, t, True, keep, compiled=s.compiled)
    return MemoryPlan(t, True, keep, keep_eager, _rounded(terms), s.limit_gib, params, n)


def _rounded(terms) -> tuple[tuple[str, float], ...]:
    return tuple((name, round(v, 3)) for name, v in terms)


def _fits(shape, lora, s: Setting, tokens: int) -> float | None:
    """The smallest peak (GiB) of a plan at ``tokens`` with every layer checkpointed, if it fits."""
    t = tokens
    while t >= min(s.max_length, tokens):
        peak = _peak(_terms(shape, lora, s, t, True, 0, compiled=s.compiled))
        if peak <= s.limit_gib:
            return peak
        t //= 2
    return None


def _refusal(shape, lora, s: Setting, terms, tokens: int, *, checkpointing: bool) -> str:
    """The refusal's text: what does not fit (each term), then each single change that fits, with its peak."""
    what = " + ".join(f"{name} {value:.2f}" for name, value in terms)
    head = (f"the LoRA configuration does not fit this card: {lora.describe(shape)}; "
            f"{'every layer checkpointed, ' if checkpointing else 'no checkpointing, '}"
            f"{tokens} tokens per micro-batch, "
            f"max_length {s.max_length}: {what} = {_peak(terms):.2f} GiB > {s.limit_gib:.2f} GiB "
            f"(the card less {SPARE_GIB} GiB spare)")
    if not checkpointing:
        return head + "; fix: set [train] gradient_checkpointing = true"
    options = []
    half_freeze = round(shape.layers * 16 / 42)
    if lora.freeze_layers < half_freeze:
        options.append((f"freeze_layers = {half_freeze}", replace(lora, freeze_layers=half_freeze), s))
    if set(lora.targets) - {"q_proj", "k_proj", "v_proj"}:
        options.append(('target_modules = ["q_proj", "k_proj", "v_proj"]',
                        replace(lora, targets=("q_proj", "k_proj", "v_proj")), s))
    r = lora.r // 2
    while r >= 4:
        options.append((f"lora_r = {r}", replace(lora, r=r), s))
        r //= 2
    for length in LENGTHS:
        if length < s.max_length:
            options.append((f"max_length = {length}", lora, replace(s, max_length=length)))
    if optimizer_bytes(s.optimizer) > 2:
        options.append(('optim_type = "adamw_8bit"', lora, replace(s, optimizer="adamw_8bit")))
    fits, seen = [], set()
    for label, lo, st in options:
        key = label.split(" = ")[0]
        if key in seen:
            continue
        peak = _fits(shape, lo, st, tokens)
        if peak is not None:
            seen.add(key)  # the largest value of each key that fits
            fits.append(f"{label} ({peak:.2f} GiB)")
    if fits:
        return head + "; fix: any one of " + ", ".join(fits) + " in [train]"
    return head + ("; no single change fits: combine a higher freeze_layers, fewer target_modules, a lower lora_r "
                   "and max_length, or train on a larger card")
