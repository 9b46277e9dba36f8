"""Loading a decoder LM in 4-bit NF4 as a 3-way sequence classifier, and wrapping it with LoRA.

Any decoder transformers maps to ``AutoModelForSequenceClassification`` (Gemma 2, Gemma 3 text, Llama,
Qwen 2/3): real runs and the offline stand-ins go through the same ``from_pretrained`` path, and
``checkpoint`` is an HF id (e.g. ``unsloth/gemma-2-9b-it-bnb-4bit``) or a mounted folder. What differs
between families is read from the checkpoint's config (``ModelTraits``), never from a class name:
attention logit softcapping (Gemma 2: eager or flex attention, never SDPA), the sliding window (Gemma 2
and 3 alternate local and global layers: every backend kagflow picks applies it through transformers'
per-layer masks, so it constrains no choice today; it is in the traits for the recipe and the report),
the pad token (none in Llama's tokenizer: eos pads). The score head pools the last real token (transformers' rule:
the rightmost token that is not the pad id), which holds with either padding side because encoded rows never contain
the pad id (``text.encode_rows`` reads special-token strings in the data as plain text); kagflow's own batches pad
on the right (``load_tokenizer`` says why).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Optional

from .memory import ModelShape
from .task import Task
from .text import Encoding

if TYPE_CHECKING:
    from .recipe import Recipe

DEFAULT_ATTN = "auto"  # from the model's config: see resolve_attn_implementation


@dataclass(frozen=True)
class ModelTraits:
    """The per-family facts kagflow's choices depend on, read from a transformers config."""

    model_type: str
    softcapping: bool  # attention logits are soft-capped (Gemma 2): SDPA would drop the cap
    sliding_window: int | None  # local-attention window of the sliding layers, None: all layers global
    num_layers: int
    shape: Optional[ModelShape] = None  # layers, widths, heads (``memory``: the training memory plan)

    @classmethod
    def of(cls, config) -> "ModelTraits":
        """Traits of a ``PretrainedConfig`` (its text part for multimodal configs)."""
        text = config.get_text_config() if hasattr(config, "get_text_config") else config
        cap = getattr(text, "attn_logit_softcapping", None)
        window = getattr(text, "sliding_window", None) if _has_sliding_layers(text) else None
        return cls(model_type=text.model_type, softcapping=bool(cap), sliding_window=window,
                   num_layers=int(text.num_hidden_layers), shape=ModelShape.of(config))


def _has_sliding_layers(config) -> bool:
    types = getattr(config, "layer_types", None)
    if types:
        return any("sliding" in t for t in types)
    return bool(getattr(config, "sliding_window", None)) and getattr(config, "use_sliding_window", True)


def model_traits(checkpoint) -> ModelTraits:
    """``ModelTraits`` of a checkpoint folder or HF id (reads config.json only)."""
    from transformers import AutoConfig

    return ModelTraits.of(AutoConfig.from_pretrained(str(checkpoint)))


def resolve_attn_implementation(requested: str, traits: ModelTraits, device=None, *, training: bool = True) -> str:
    """``requested`` unless "auto"; "auto" follows the model's config and the device (``recipe``):
    soft-capped models get eager (training) or flex attention on sm80+ (inference), others SDPA.
    SDPA asked for a soft-capped model is refused: it would silently drop the cap."""
    from .recipe import choose_attn_implementation

    if requested == "auto":
        if traits.softcapping and training:
            # loading for training: eager; the fast loop's recipe then switches to flex on packed rows
            # (recipe.recipe_for_profile), the HF Trainer (padded batches of every shape) stays eager
            return "eager"
        return choose_attn_implementation(traits.model_type, device, softcapping=traits.softcapping)
    if requested == "sdpa" and traits.softcapping:
        raise ValueError(f"attn_implementation='sdpa' drops the attention softcapping of {traits.model_type}: "
                         "use 'auto', 'eager' or 'flex_attention'")
    return requested


def compute_dtype(device=None):
    """The device profile's dtype (``device.device_profile``): bf16 on sm80+, fp16 on T4/V100/P100, fp32 on the CPU."""
    from .device import device_profile

    return device_profile(device).dtype


def _dtype_kwarg() -> str:
    """transformers >= 4.56 takes ``dtype``; older releases only ``torch_dtype``."""
    import transformers

    major, minor = (int(x) for x in transformers.__version__.split(".")[:2])
    return "dtype" if (major, minor) >= (4, 56) else "torch_dtype"


def quantization_config(dtype=None):
    """NF4 with double quantization, computing in ``dtype`` (default: ``compute_dtype()``)."""
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=dtype or compute_dtype(),
    )


def load_base(checkpoint, *, attn_implementation: str = DEFAULT_ATTN, device_map=None, pad_token_id=None,
              training: bool = True, task: Task | None = None):
    """The base model in 4-bit NF4 with a fresh classification head of one output per class of ``task``
    (default: LMSYS's 3), named by the task's labels.

    ``attn_implementation`` "auto" picks from the checkpoint's config (``resolve_attn_implementation``);
    ``pad_token_id`` (the tokenizer's) is what the score head pools around."""
    import torch
    from transformers import AutoModelForSequenceClassification

    task = task or Task()
    if device_map is None:
        device_map = "auto" if torch.cuda.is_available() else {"": "cpu"}
    dtype = compute_dtype()
    attn_implementation = resolve_attn_implementation(attn_implementation, model_traits(checkpoint),
                                                      training=training)
    model = AutoModelForSequenceClassification.from_pretrained(
        str(checkpoint),
        num_labels=task.n_labels,
        id2label=task.id2label,
        label2id=task.label2id,
        quantization_config=quantization_config(dtype),
        attn_implementation=attn_implementation,
        device_map=device_map,
        low_cpu_mem_usage=True,
        **{_dtype_kwarg(): dtype},
    )
    model.config.use_cache = False
    if pad_token_id is not None:
        model.config.pad_token_id = pad_token_id
        text = model.config.get_text_config()
        if text is not model.config:  # multimodal configs: the head reads the text part's
            text.pad_token_id = pad_token_id
    return model


def lora_layers(model, freeze_layers: int) -> list[int] | None:
    """Indices of the decoder layers LoRA adapts: those >= ``freeze_layers`` (None: all)."""
    n_layers = model.config.num_hidden_layers
    if freeze_layers <= 0:
        return None
    if freeze_layers >= n_layers:
        raise ValueError(f"freeze_layers={freeze_layers} leaves none of the {n_layers} layers to train")
    return list(range(freeze_layers, n_layers))


def lora_config(model, *, r: int, alpha: float, dropout: float, target_modules, freeze_layers: int,
                bias: str = "none"):
    """The seed's LoraConfig: SEQ_CLS, ``target_modules`` of the layers from ``freeze_layers`` on."""
    from peft import LoraConfig, TaskType

    return LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules=list(target_modules),
                      layers_to_transform=lora_layers(model, freeze_layers), bias=bias, task_type=TaskType.SEQ_CLS)


def add_lora(model, *, r: int, alpha: float, dropout: float, target_modules, freeze_layers: int,
             bias: str = "none", gradient_checkpointing: bool = False, recipe: Recipe | None = None):
    """Prepare the 4-bit model for training and wrap it with a SEQ_CLS LoRA adapter.

    With a ``recipe`` (``recipe.recipe_for_*``): kagflow's measured preparation (``fit.prepare_lora_model``:
    no input gradients, so the backward stops at the first LoRA layer; checkpointing and dequantising
    per the card). Without: the seed's ``prepare_model_for_kbit_training``.
    """
    config = lora_config(model, r=r, alpha=alpha, dropout=dropout, target_modules=target_modules,
                         freeze_layers=freeze_layers, bias=bias)
    if recipe is not None:
        from .fit import prepare_lora_model

        return prepare_lora_model(model, config, recipe)
    from peft import get_peft_model, prepare_model_for_kbit_training

    model = prepare_model_for_kbit_training(
        model,
        use_gradient_checkpointing=gradient_checkpointing,
        gradient_checkpointing_kwargs={"use_reentrant": False} if gradient_checkpointing else None,
    )
    return get_peft_model(model, config)


def load_tokenizer(path):
    """The tokenizer saved with the base or the adapter, padding on the right whatever its own side
    (Gemma 3's is left): a left-padded row's pad queries see no key at all, and CUDA SDPA in bf16 turns
    those fully masked rows into NaN that reach the real tokens (the Gemma 3 270M stand-in trained on
    NaN losses on an H200 until this, bench/RESULTS.md). No pad token (Llama): the eos token pads."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(path))
    tokenizer.padding_side = "right"
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def adapter_list(adapter) -> list:
    """One adapter folder, or a list of them (the folds of an ensemble), as a list."""
    return list(adapter) if isinstance(adapter, (list, tuple)) else [adapter]


def load_for_inference(base, adapter, *, attn_implementation: str = DEFAULT_ATTN, device_map=None,
                       task: Task | None = None):
    """(model, tokenizer): the 4-bit base plus one trained adapter folder, in eval mode (an ensemble loads its
    members one at a time: ``ensembling.MemberModels``).
    ``model.kagflow_encoding``: the encoding the adapter was trained with (``text.Encoding.load``)."""
    from peft import PeftModel

    tokenizer = load_tokenizer(adapter)
    model = load_base(base, attn_implementation=attn_implementation, device_map=device_map,
                      pad_token_id=tokenizer.pad_token_id, training=False, task=task)
    model = PeftModel.from_pretrained(model, str(adapter))
    model.kagflow_encoding = Encoding.load(adapter, log=False)  # what infer.predict encodes with
    return model.eval(), tokenizer
