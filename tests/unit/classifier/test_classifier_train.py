"""Training pieces: precision and optimizer choice, LoRA layers, checkpoint resume, metrics."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from kagflow.classifier import model as model_mod
from kagflow.classifier import train as train_mod
from kagflow.classifier.fit import resolve_optim
from kagflow.classifier.metrics import evaluate, save_confusion_matrix
from kagflow.classifier.synth import write_synthetic_competition
from kagflow.classifier.train import TrainConfig, run_training, training_arguments

from classifier_fixtures import ALL_LINEAR

pytest_plugins = ["classifier_fixtures"]  # shared session fixtures: the tiny model is trained once
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_training_arguments_on_cpu(tmp_path):
    args = training_arguments(TrainConfig(), tmp_path, "adamw_torch")
    assert not args.bf16 and not args.fp16
    assert getattr(args, "train_sampling_strategy", None) == "group_by_length" or getattr(args, "group_by_length")
    assert (args.optim.value if hasattr(args.optim, "value") else args.optim) == "adamw_torch"
    assert args.report_to in ([], "none", ["none"]) and args.save_steps == 200


def test_resolve_optim_keeps_8bit_when_it_runs_and_falls_back_when_not(monkeypatch, capsys):
    assert resolve_optim("adamw_torch") == "adamw_torch"
    # "auto": fused AdamW in the fast loop (bench/RESULTS.md, third measurement), the seed's 8-bit in the Trainer
    assert resolve_optim("auto", "fast") == "adamw_torch_fused" and resolve_optim("auto") == "adamw_8bit"
    assert resolve_optim("adamw_8bit") == "adamw_8bit"  # bitsandbytes 0.50 steps on the CPU
    import bitsandbytes as bnb

    def broken(*args, **kwargs):
        raise RuntimeError("no CPU kernel")

    monkeypatch.setattr(bnb.optim, "AdamW8bit", broken)
    assert resolve_optim("adamw_8bit") == "adamw_torch"
    assert "notice: adamw_8bit does not run on this device" in capsys.readouterr().out


def test_base_loads_in_4bit_nf4_and_lora_skips_frozen_layers(tiny_checkpoint):
    import bitsandbytes as bnb

    base = model_mod.load_base(tiny_checkpoint, pad_token_id=0)
    q = base.model.layers[0].self_attn.q_proj
    assert isinstance(q, bnb.nn.Linear4bit) and q.weight.quant_type == "nf4"
    assert base.config._attn_implementation == "eager" and base.config.pad_token_id == 0
    assert model_mod.lora_layers(base, 0) is None
    assert model_mod.lora_layers(base, 1) == [1]
    with pytest.raises(ValueError, match="freeze_layers=2"):
        model_mod.lora_layers(base, 2)
    peft_model = model_mod.add_lora(base, r=4, alpha=8, dropout=0.0, target_modules=["q_proj", "v_proj"],
                                    freeze_layers=1)
    names = {n for n, p in peft_model.named_parameters() if p.requires_grad}
    assert any(".layers.1.self_attn.q_proj.lora_A" in n for n in names)
    assert not any(".layers.0." in n for n in names)
    assert any("score" in n for n in names)  # the classification head trains too


def test_training_evaluates_each_epoch_and_resumes_from_the_latest_checkpoint(tmp_path, tiny_checkpoint):
    data = write_synthetic_competition(tmp_path / "data", n_train=100, n_test=1, seed=3)
    cfg = dict(max_length=64, n_splits=5, per_device_train_batch_size=8, gradient_accumulation_steps=1,
               freeze_layers=0, target_modules=ALL_LINEAR[:3], gradient_checkpointing=False, eval_strategy="epoch",
               save_steps=5, keep_checkpoints=True, optim_type="adamw_torch", warmup_steps=0, logging_steps=5)
    dirs = dict(train_csv=data["train"], base=tiny_checkpoint, adapter_dir=tmp_path / "adapter",
                checkpoint_dir=tmp_path / "ckpt", report_dir=tmp_path)
    first = run_training(TrainConfig(n_epochs=1, **cfg), **dirs)
    assert first["resumed_from"] is None and first["global_step"] == 10  # 80 rows / 8
    second = run_training(TrainConfig(n_epochs=2, **cfg), **dirs)
    assert second["resumed_from"].endswith("checkpoint-10") and second["global_step"] == 20
    assert [e["epoch"] for e in first["epoch_evals"]] == [1.0]  # the Trainer evaluated the epoch
    assert second["epoch_evals"][-1]["epoch"] == 2.0
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["n"] == 20 and set(metrics) >= {"log_loss", "accuracy", "macro_f1", "confusion_matrix"}
    assert (tmp_path / "adapter" / "adapter_config.json").is_file()
    assert (tmp_path / "adapter" / "tokenizer.json").is_file()


def test_evaluate_and_confusion_matrix_png(tmp_path):
    labels = [0, 1, 2, 2]
    probs = np.array([[0.8, 0.1, 0.1], [0.2, 0.7, 0.1], [0.3, 0.3, 0.4], [0.6, 0.2, 0.2]])
    scores = evaluate(labels, probs)
    assert scores["accuracy"] == 0.75
    assert scores["log_loss"] == pytest.approx(-np.mean(np.log([0.8, 0.7, 0.4, 0.2])))
    assert scores["confusion_matrix"] == [[1, 0, 0], [0, 1, 0], [1, 0, 1]]
    assert scores["macro_f1"] == pytest.approx(np.mean([2 / 3, 1.0, 2 / 3]))
    png = save_confusion_matrix(scores["confusion_matrix"], tmp_path / "cm.png", scores["labels"])
    assert png.read_bytes()[:4] == b"\x89PNG"


def test_config_reads_notebook_globals():
    cfg = TrainConfig.from_namespace({"lr": 1e-3, "n_epochs": 5, "unrelated": 1, "target_modules": ["q_proj"]})
    assert (cfg.lr, cfg.n_epochs, cfg.target_modules, cfg.max_length) == (1e-3, 5, ["q_proj"], 1024)
    assert train_mod.TrainConfig().optim_type == "auto"


def _fast_cfg(**kw):
    base = dict(train_loop="fast", max_length=64, n_splits=5, per_device_train_batch_size=8,
                gradient_accumulation_steps=1, freeze_layers=0, target_modules=ALL_LINEAR[:3], eval_strategy="no",
                save_steps=3, warmup_steps=2, logging_steps=1, lr=1e-3)
    return TrainConfig(**{**base, **kw})


def _adapter_weights(folder):
    from safetensors.torch import load_file

    return load_file(str(folder / "adapter_model.safetensors"))


def test_fast_loop_killed_mid_run_resumes_to_the_uninterrupted_adapter(tmp_path, tiny_checkpoint, monkeypatch):
    """Real 4-bit tiny model on the CPU: a run killed in step 5 (last checkpoint: step 3) and run again ends
    with the adapter of a run that was never interrupted (LoRA dropout on: the RNG is restored too)."""
    from kagflow.classifier import fit

    data = write_synthetic_competition(tmp_path / "data", n_train=100, n_test=1, seed=3)
    cfg = _fast_cfg(lora_dropout=0.1)

    def dirs(name):
        return dict(train_csv=data["train"], base=tiny_checkpoint, adapter_dir=tmp_path / name / "adapter",
                    checkpoint_dir=tmp_path / name / "ckpt", report_dir=tmp_path / name)

    whole = run_training(cfg, **dirs("whole"))
    assert whole["global_step"] == 10 and whole["resumed_from"] is None and not whole["stopped_early"]
    assert not (tmp_path / "whole" / "ckpt").exists()  # a finished run removes its checkpoints

    real_step, calls = fit.lora_train_step, []

    def dying_step(*args, **kwargs):
        calls.append(1)
        if len(calls) == 5:
            raise KeyboardInterrupt("kernel killed")
        return real_step(*args, **kwargs)

    monkeypatch.setattr(fit, "lora_train_step", dying_step)
    with pytest.raises(KeyboardInterrupt):
        run_training(cfg, **dirs("killed"))
    assert sorted(p.name for p in (tmp_path / "killed" / "ckpt").iterdir()) == ["fit-step-000003"]
    assert not (tmp_path / "killed" / "adapter").exists()
    monkeypatch.setattr(fit, "lora_train_step", real_step)
    resumed = run_training(cfg, **dirs("killed"))
    assert resumed["resumed_from"].endswith("fit-step-000003") and resumed["global_step"] == 10
    a, b = _adapter_weights(tmp_path / "whole" / "adapter"), _adapter_weights(tmp_path / "killed" / "adapter")
    assert a.keys() == b.keys()
    for name in a:
        assert torch.allclose(a[name], b[name], atol=1e-6), name
    assert resumed["train_loss"] == pytest.approx(whole["train_loss"], rel=1e-6)


class FakeClock:
    """A stand-in for resume.now(); the tests advance it 10 s per training step: the time budget without timing."""

    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


def test_time_budget_stops_cleanly_writes_adapter_and_metrics_and_the_next_run_resumes(tmp_path, tiny_checkpoint,
                                                                                       monkeypatch):
    from kagflow.classifier import fit, resume

    data = write_synthetic_competition(tmp_path / "data", n_train=100, n_test=1, seed=3)
    clock, real_step = FakeClock(), fit.lora_train_step

    def timed_step(*args, **kwargs):
        clock.t += 10
        return real_step(*args, **kwargs)

    monkeypatch.setattr(resume, "now", clock)
    monkeypatch.setattr(fit, "lora_train_step", timed_step)
    dirs = dict(train_csv=data["train"], base=tiny_checkpoint, adapter_dir=tmp_path / "adapter",
                checkpoint_dir=tmp_path / "ckpt", report_dir=tmp_path)
    # 150 s: 60 s reserved for saving + 20 eval rows at half a training row's time, 2 steps ahead: stops at step 6
    stopped = run_training(_fast_cfg(time_budget=150, save_steps=100), **dirs)
    assert stopped["stopped_early"] and stopped["global_step"] == 6
    assert (tmp_path / "adapter" / "adapter_config.json").is_file()
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["stopped_early"] and metrics["n"] == 20 and "log_loss" in metrics
    assert (tmp_path / "ckpt" / "fit-step-000006").is_dir()  # kept for the next run
    # the next kernel version: a fresh working folder, the stopped version's output mounted under the input root
    mounted = tmp_path / "input" / "notebooks" / "alice" / "arena-train"
    mounted.mkdir(parents=True)
    (tmp_path / "ckpt").rename(mounted / "ckpt")
    monkeypatch.setenv("KAGFLOW_INPUT_ROOT", str(tmp_path / "input"))
    finished = run_training(_fast_cfg(save_steps=100), **{**dirs, "checkpoint_dir": tmp_path / "working-ckpt"})
    assert finished["resumed_from"] == str(mounted / "ckpt" / "fit-step-000006") and finished["global_step"] == 10
    assert not finished["stopped_early"]


def test_a_checkpoint_of_another_plan_is_not_resumed(tmp_path, capsys):
    import torch.nn as nn
    from transformers import get_linear_schedule_with_warmup

    from kagflow.classifier import resume

    model = nn.Linear(2, 3)
    opt = torch.optim.AdamW(model.parameters())
    sched = get_linear_schedule_with_warmup(opt, 1, 10)
    resume.save(tmp_path, step=4, fingerprint="aaaa", model=model, optimizer=opt, scheduler=sched, scaler=None,
                rng=[resume.rng_state()], losses=[1.0] * 4, keep=2)
    assert resume.find_latest([tmp_path], "aaaa") == tmp_path / "fit-step-000004"
    assert resume.find_latest([tmp_path], "bbbb") is None
    assert "checkpoint of another run" in capsys.readouterr().out


def test_trainer_loop_keeps_the_time_budget_too(tmp_path, tiny_checkpoint, monkeypatch):
    from transformers import Trainer

    from kagflow.classifier import resume

    data = write_synthetic_competition(tmp_path / "data", n_train=100, n_test=1, seed=3)
    clock, real_step = FakeClock(), Trainer.training_step

    def timed_step(self, *args, **kwargs):
        clock.t += 10
        return real_step(self, *args, **kwargs)

    monkeypatch.setattr(resume, "now", clock)
    monkeypatch.setattr(Trainer, "training_step", timed_step)
    cfg = _fast_cfg(train_loop="trainer", time_budget=150, save_steps=100, optim_type="adamw_torch",
                    gradient_checkpointing=False)
    stopped = run_training(cfg, train_csv=data["train"], base=tiny_checkpoint, adapter_dir=tmp_path / "adapter",
                           checkpoint_dir=tmp_path / "ckpt", report_dir=tmp_path)
    assert stopped["stopped_early"] and 0 < stopped["global_step"] < 10
    assert (tmp_path / "ckpt" / f"checkpoint-{stopped['global_step']}").is_dir()
    assert json.loads((tmp_path / "metrics.json").read_text())["stopped_early"]


def test_trainer_under_ddp_keeps_the_one_gpu_global_batch(capsys):
    from kagflow.classifier.train import accumulation_steps

    cfg = TrainConfig(per_device_train_batch_size=3, gradient_accumulation_steps=2)
    assert accumulation_steps(cfg, 1) == 2
    assert accumulation_steps(cfg, 2) == 1  # 3 rows x 1 step x 2 GPUs = the one-GPU 3 x 2
    assert accumulation_steps(TrainConfig(gradient_accumulation_steps=3), 2) == 3
    assert "does not divide over 2 GPUs" in capsys.readouterr().out


@pytest.mark.parametrize("loop", ["fast", "trainer"])
def test_both_loops_print_progress_lines_and_write_the_loss_curve(tmp_path, tiny_checkpoint, monkeypatch, capsys, loop):
    """A tiny CPU run of each loop: a progress line per logged step and per evaluation (kagflow reads them from
    the log), and loss_curve.png beside confusion_matrix.png with the train loss of each logged step and the
    validation loss of each evaluation, the final one included."""
    from kagflow.classifier.progress_line import parse_line

    data = write_synthetic_competition(tmp_path / "data", n_train=100, n_test=1, seed=3)
    drawn = []

    def spy(train, val, path):
        drawn.append((train, val))
        return real(train, val, path)

    real = train_mod.save_loss_curve
    monkeypatch.setattr(train_mod, "save_loss_curve", spy)
    cfg = _fast_cfg(train_loop=loop, eval_strategy="steps", logging_steps=5, save_steps=100, optim_type="adamw_torch")
    metrics = run_training(cfg, train_csv=data["train"], base=tiny_checkpoint, adapter_dir=tmp_path / "adapter",
                           checkpoint_dir=tmp_path / "ckpt", report_dir=tmp_path)
    lines = [p for p in map(parse_line, capsys.readouterr().out.splitlines()) if p is not None]
    train_lines = [(p.done, p.total) for p in lines if p.loss is not None]
    assert train_lines == [(5, 10), (10, 10)] and all(p.lr is not None and p.eta_s is not None for p in lines
                                                     if p.loss is not None)
    evals = [(p.done, p.val_loss) for p in lines if p.val_loss is not None]  # the fast loop skips the last step's
    assert evals[0][0] == 5 and [v for _, v in evals] == [pytest.approx(e["eval_log_loss"], abs=1e-4)  # 4 decimals
                                                          for e in metrics["epoch_evals"]]
    (train, val), = drawn
    assert [s for s, _ in train] == [5, 10] and all(loss > 0 for _, loss in train)
    assert val[:-1] == [(s, pytest.approx(v, abs=1e-4)) for s, v in evals if s != 10]
    assert val[-1] == (10, metrics["log_loss"])  # the final evaluation
    assert (tmp_path / "loss_curve.png").read_bytes()[:4] == b"\x89PNG"
    assert (tmp_path / "confusion_matrix.png").is_file()


def test_logged_losses_are_the_means_the_fast_loop_logs():
    from kagflow.classifier.metrics import history_losses, logged_losses, with_final

    assert logged_losses([4.0, 2.0, 3.0, 1.0, 5.0], 2) == [(2, 3.0), (4, 2.0), (5, 5.0)]
    assert logged_losses([], 10) == []
    history = [{"loss": 0.9, "step": 5, "learning_rate": 1e-4}, {"eval_log_loss": 0.8, "step": 5},
               {"loss": 0.7, "step": 10}, {"train_runtime": 3.0, "step": 10}]
    assert history_losses(history) == ([(5, 0.9), (10, 0.7)], [(5, 0.8)])
    assert with_final([(5, 0.8), (10, 0.75)], 10, 0.7) == [(5, 0.8), (10, 0.7)]
