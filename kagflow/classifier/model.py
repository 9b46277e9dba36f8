"""Loading Gemma-2 in 4-bit NF4 as a 3-way sequence classifier, and wrapping it with LoRA.

Real runs and the tiny offline checkpoint go through the same ``from_pretrained`` path:
``checkpoint`` is an HF id (e.g. ``unsloth/gemma-2-9b-it-bnb-4bit``) or a mounted folder.
"""

from __future__ import annotations

from . import ID2LABEL, LABEL2ID

DEFAULT_ATTN = "eager"  # Gemma 2 softcaps attention logits; SDPA drops the softcapping


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


def load_base(checkpoint, *, attn_implementation: str = DEFAULT_ATTN, device_map=None, pad_token_id=None):
    """The base model in 4-bit NF4 with a fresh 3-label classification head."""
    import torch
    from transformers import AutoModelForSequenceClassification

    if device_map is None:
        device_map = "auto" if torch.cuda.is_available() else {"": "cpu"}
    dtype = compute_dtype()
    model = AutoModelForSequenceClassification.from_pretrained(
        str(checkpoint),
        num_labels=len(ID2LABEL),
        id2label=ID2LABEL,
        label2id=LABEL2ID,
        quantization_config=quantization_config(dtype),
        attn_implementation=attn_implementation,
        device_map=device_map,
        low_cpu_mem_usage=True,
        **{_dtype_kwarg(): dtype},
    )
    model.config.use_cache = False
    if pad_token_id is not None:
        model.config.pad_token_id = pad_token_id
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
             bias: str = "none", gradient_checkpointing: bool = False, recipe: dict | None = None):
    """Prepare the 4-bit model for training and wrap it with a SEQ_CLS LoRA adapter.

    With a ``recipe`` (``perf.recipe_for_*``): kagflow's measured preparation (``perf.prepare_lora_model``:
    no input gradients, so the backward stops at the first LoRA layer; checkpointing and dequantising
    per the card). Without: the seed's ``prepare_model_for_kbit_training``.
    """
    config = lora_config(model, r=r, alpha=alpha, dropout=dropout, target_modules=target_modules,
                         freeze_layers=freeze_layers, bias=bias)
    if recipe is not None:
        from .perf import prepare_lora_model

        return prepare_lora_model(model, config, recipe)
    from peft import get_peft_model, prepare_model_for_kbit_training

    model = prepare_model_for_kbit_training(
        model,
        use_gradient_checkpointing=gradient_checkpointing,
        gradient_checkpointing_kwargs={"use_reentrant": False} if gradient_checkpointing else None,
    )
    return get_peft_model(model, config)


def load_tokenizer(path):
    """The tokenizer saved with the base or the adapter, padding on the right."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(path))
    tokenizer.padding_side = "right"
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_for_inference(base, adapter, *, attn_implementation: str = DEFAULT_ATTN, device_map=None):
    """(model, tokenizer): the 4-bit base plus the trained adapter, in eval mode."""
    from peft import PeftModel

    tokenizer = load_tokenizer(adapter)
    model = load_base(base, attn_implementation=attn_implementation, device_map=device_map,
                      pad_token_id=tokenizer.pad_token_id)
    model = PeftModel.from_pretrained(model, str(adapter)).eval()
    return model, tokenizer
