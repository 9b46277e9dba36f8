"""`kagflow check`'s training plan: the memory plan follows [train]'s LoRA and batch, the run-time estimate the
kernel's timeout; each refusal names the [train] keys to lower."""

import dataclasses
import json

from kagflow.classifier.memory import GEMMA2_9B, LoraShape
from kagflow.project.config import load_config
from kagflow.rules import runtime
from kagflow.workflow.check import check_project, model_shape, training_fit

ALL = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def _with(cfg, **train):
    return dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, **train))


def _plan_line(cfg) -> str:
    lines, problems = training_fit(cfg)
    memory_problems = [p for p in problems if p.field != "[kernels.train] timeout"]  # the run time: tested below
    assert not memory_problems, memory_problems
    return next(line for line in lines if "memory plan" in line)


def test_the_plan_changes_with_r_targets_freezing_and_batch(project):
    cfg = load_config(project)
    shipped = _plan_line(cfg)
    assert "NvidiaTeslaT4 (2 x 14.74 GiB): per GPU memory plan" in shipped and "133.8 M trainable" in shipped
    variants = {"r": _with(cfg, lora_r=32), "targets": _with(cfg, target_modules=("q_proj", "k_proj", "v_proj")),
                "freezing": _with(cfg, freeze_layers=0),
                "batch": _with(cfg, train_loop="trainer", per_device_train_batch_size=1)}
    lines = {name: _plan_line(c) for name, c in variants.items()}
    assert len({shipped, *lines.values()}) == 5, lines
    assert "1024 tokens per micro-batch" in lines["batch"]  # the Trainer pads 1 row x max_length 1024


def test_a_lora_that_cannot_fit_is_refused_naming_the_keys(project):
    cfg = _with(load_config(project), lora_r=1024, target_modules=ALL, freeze_layers=0)
    problems = [p for p in check_project(cfg) if "memory plan" in p.message or "does not fit" in p.message]
    [problem] = problems
    assert problem.field.startswith("[train] lora_r")
    for key in ("per_device_train_batch_size", "max_length", "lora_r", "freeze_layers"):
        assert key in problem.fix
    assert "GiB" in problem.message and "NvidiaTeslaT4" in problem.message


def test_a_trainer_batch_past_the_card_is_refused_with_the_rows_that_fit(project):
    cfg = _with(load_config(project), train_loop="trainer", per_device_train_batch_size=64, max_length=2048)
    [problem] = [p for p in training_fit(cfg)[1] if p.field == "[train] per_device_train_batch_size"]
    assert "64 rows x max_length 2048" in problem.message
    assert "set per_device_train_batch_size = " in problem.fix


def test_the_training_estimate_passes_the_shipped_config_and_refuses_one_that_cannot_fit(project):
    cfg = load_config(project)
    lines, problems = training_fit(cfg)
    assert not problems and any("training run time" in line and "= 11.6 h (timeout 12.0 h)" in line
                                for line in lines), lines
    slow = _with(cfg, lora_r=64, target_modules=ALL, freeze_layers=0, n_epochs=2.0)
    [problem] = [p for p in training_fit(slow)[1] if "timeout" in p.field]
    assert problem.field == "[kernels.train] timeout"
    assert "294 adapted layer-projection pairs" in problem.message and "> 12.0 h" in problem.message
    assert "n_epochs" in problem.fix and '"kernel:train"' in problem.fix and "sessions" in problem.fix
    # with the kernel's own output as a source, training resumes across sessions: said, not refused
    kernel = dataclasses.replace(slow.kernel("train"), sources=(*slow.kernel("train").sources, "kernel:train"))
    resumed = dataclasses.replace(slow, kernels={**slow.kernels, "train": kernel})
    lines, problems = training_fit(resumed)
    assert not problems and any("sessions: each resumes" in line for line in lines)


def test_the_estimate_follows_epochs_rows_and_length():
    base = dict(rows=57477, n_splits=5, epochs=1.0, max_length=1024, adapted_pairs=78, gpus=2)
    seconds = runtime.training_run_time(**base).seconds
    for change in ({"epochs": 2.0}, {"rows": 90000}, {"max_length": 2048}, {"adapted_pairs": 182}):
        assert runtime.training_run_time(**{**base, **change}).seconds > seconds * 1.05, change
    assert runtime.training_run_time(**{**base, "gpus": 1}).seconds > seconds * 1.5


def test_the_measured_rates_are_the_shapes_bench_ran_and_the_line_fits_them():
    """rules/runtime.py's measured points are the LoRA shapes bench/RESULTS.md ran, counted as memory.py counts
    them (the rules cannot import the classifier), and the fitted line gives each within 3 %."""
    shapes = [LoraShape(16, ("q_proj", "k_proj", "v_proj"), 16), LoraShape(64, ALL, 16), LoraShape(64, ALL, 8),
              LoraShape(64, ALL, 0), LoraShape(32, ALL, 0)]
    assert [p for p, _, _ in runtime.H200_T4_CONFIG_TRAIN_RATES] == [s.pairs(GEMMA2_9B) for s in shapes]
    for pairs, measured, _ in runtime.H200_T4_CONFIG_TRAIN_RATES:
        assert abs(runtime.train_rate(pairs)[0] / measured - 1) < 0.03
    # more adapted pairs train slower; the rank alone does not change the estimate
    assert runtime.train_rate(78)[0] > runtime.train_rate(182)[0] > runtime.train_rate(294)[0]


def test_the_shape_comes_from_local_dirs_config_json(project):
    cfg = load_config(project)
    assert model_shape(cfg) == GEMMA2_9B  # the shipped hf_id
    snapshot = project.parent / "snap"
    snapshot.mkdir()
    (snapshot / "config.json").write_text(json.dumps({
        "num_hidden_layers": 18, "hidden_size": 640, "intermediate_size": 2048, "num_attention_heads": 4,
        "num_key_value_heads": 1, "head_dim": 256, "vocab_size": 262144}))
    local = dataclasses.replace(cfg, base_model=dataclasses.replace(cfg.base_model, local_dir="snap"))
    shape = model_shape(local)
    assert (shape.layers, shape.hidden, shape.kv_width) == (18, 640, 256)
    assert _plan_line(local) != _plan_line(cfg)
    unknown = dataclasses.replace(cfg, base_model=dataclasses.replace(cfg.base_model, hf_id="org/unknown-7b"))
    assert training_fit(unknown) == (["training plan: none ([base_model] hf_id 'org/unknown-7b' has no known shape "
                                      "and local_dir no config.json)"], [])
