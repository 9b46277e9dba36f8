"""One device profile decides precision on every path; a T4 (sm75, emulated bf16 "available") gets fp16.

The GPUs are faked at torch.cuda's level (capability, memory, is_bf16_supported), never by mocking
the function under test: each path (model loading, bitsandbytes compute dtype, the Trainer's flags,
the fast loop's autocast and GradScaler, eval autocast, accelerate launch, inference recipe) is run
and its choice read back.
"""

from __future__ import annotations

import json
import types

import pytest
import torch
from transformers import AutoModelForSequenceClassification, TrainingArguments  # noqa: F401 - before faking

from kagflow.classifier import device as device_mod
from kagflow.classifier import model as model_mod
from kagflow.classifier import train as train_mod
from kagflow.classifier.fit import amp_for
from kagflow.classifier.recipe import recipe_for_current_device, torch_dtype
from kagflow.classifier.train import TrainConfig

GPUS = {
    # name: (capability, GiB, expected dtype, accelerate flag, grad scaler)
    "t4": ((7, 5), 15.0, torch.float16, "fp16", True),
    "v100": ((7, 0), 16.0, torch.float16, "fp16", True),
    "sm89_16gb": ((8, 9), 16.0, torch.bfloat16, "bf16", False),
}


def fake_gpu(monkeypatch, capability, mem_gib, name="fake"):
    props = types.SimpleNamespace(major=capability[0], minor=capability[1], total_memory=int(mem_gib * 2**30),
                                  name=name)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda *a, **k: props)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda *a, **k: capability)
    # what a T4 answers: bf16 "supported" through emulation; kagflow must not believe it
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)


@pytest.fixture(params=sorted(GPUS))
def gpu(request, monkeypatch):
    capability, mem, dtype, flag, scaler = GPUS[request.param]
    fake_gpu(monkeypatch, capability, mem, request.param)
    return types.SimpleNamespace(name=request.param, dtype=dtype, flag=flag, scaler=scaler)


def test_profile_reads_capability_not_is_bf16_supported(gpu):
    profile = device_mod.device_profile()
    assert profile.dtype == gpu.dtype and profile.grad_scaler is gpu.scaler
    assert profile.mixed_precision == gpu.flag
    assert gpu.name in profile.describe()


def test_model_loading_and_bitsandbytes_compute_dtype(gpu, monkeypatch):
    seen = {}

    def from_pretrained(path, **kwargs):
        seen.update(kwargs)
        return types.SimpleNamespace(config=types.SimpleNamespace())

    monkeypatch.setattr(AutoModelForSequenceClassification, "from_pretrained", from_pretrained)
    monkeypatch.setattr(model_mod, "model_traits", lambda path: model_mod.ModelTraits("gemma2", True, 4096, 2))
    model_mod.load_base("somewhere", device_map={"": 0})
    assert seen[model_mod._dtype_kwarg()] == gpu.dtype
    assert seen["quantization_config"].bnb_4bit_compute_dtype == gpu.dtype
    assert model_mod.quantization_config().bnb_4bit_compute_dtype == gpu.dtype


def test_trainer_precision_flags(gpu, monkeypatch, tmp_path):
    monkeypatch.setattr(torch.cuda, "set_device", lambda *a, **k: None)  # TrainingArguments picks its device
    args = train_mod.training_arguments(TrainConfig(), tmp_path, "adamw_torch")
    assert (args.bf16, args.fp16) == (gpu.dtype == torch.bfloat16, gpu.dtype == torch.float16)


def test_fast_loop_autocast_and_grad_scaler(gpu):
    recipe = train_mod.training_recipe()
    assert torch_dtype(recipe.dtype) == gpu.dtype and recipe.grad_scaler is gpu.scaler
    autocast, scaler = amp_for(recipe, torch.device("cuda", 0))
    assert autocast == gpu.dtype
    assert (scaler is not None and scaler.is_enabled()) is gpu.scaler
    assert recipe.dequantize_for_training is False  # 16 GB: the 4-bit base stays


def test_eval_autocast(gpu):
    fake_model = types.SimpleNamespace(parameters=lambda: iter([types.SimpleNamespace(device=torch.device("cuda", 0))]))
    ctx = train_mod._eval_autocast(fake_model)
    assert ctx.fast_dtype == gpu.dtype


def test_accelerate_launch_mixed_precision(gpu, monkeypatch, tmp_path):
    commands = []

    def run(command, **kwargs):
        commands.append(command)
        (tmp_path / "metrics.json").write_text(json.dumps({"ok": True}))

    monkeypatch.setattr(train_mod.subprocess, "run", run)
    train_mod.train_on_all_gpus(TrainConfig(), train_csv="t.csv", base="b", adapter_dir=tmp_path / "a",
                                checkpoint_dir=tmp_path / "c", report_dir=tmp_path, n_gpus=2)
    (command,) = commands
    assert command[command.index("--mixed_precision") + 1] == gpu.flag


def test_inference_recipe(gpu):
    recipe = recipe_for_current_device()
    assert torch_dtype(recipe.dtype) == gpu.dtype
    assert recipe.dequantize_for_inference is False  # 16 GB: 4-bit base + LoRA
    if gpu.name == "t4":
        assert recipe.infer_attn_implementation == "eager"


def test_cpu_is_fp32_everywhere(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    profile = device_mod.device_profile()
    assert profile.dtype == torch.float32 and profile.mixed_precision == "no" and not profile.grad_scaler
    recipe = train_mod.training_recipe()
    assert recipe.dtype == "float32" and not recipe.grad_scaler and not recipe.gradient_checkpointing
    assert amp_for(recipe, torch.device("cpu")) == (None, None)
    assert model_mod.compute_dtype() == torch.float32
