"""kagflow's measured recipe (``recipe``) as the classifier runs it, on the CPU with the real 4-bit path."""

import json

import pytest

from kagflow.classifier.config import TrainConfig
from kagflow.classifier.train import resolve_loop, run_training, training_recipe

pytest_plugins = ["classifier_fixtures"]

ALL_LINEAR = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def test_loop_choice():
    assert resolve_loop("auto") == "trainer"  # no GPU here; a GPU gets "fast"
    assert resolve_loop("fast") == "fast" and resolve_loop("trainer") == "trainer"
    with pytest.raises(ValueError):
        resolve_loop("quick")
    recipe = training_recipe()
    assert recipe.dtype == "float32" and recipe.train_attn_implementation == "eager"


def test_fast_loop_trains_and_saves_the_adapter(tiny_checkpoint, synthetic_competition, tmp_path, one_torch_thread):
    cfg = TrainConfig(train_loop="fast", max_length=128, n_epochs=3, lr=1e-3, per_device_train_batch_size=16,
                      gradient_accumulation_steps=1, freeze_layers=0, target_modules=ALL_LINEAR,
                      max_train_rows=1000, warmup_steps=5, logging_steps=50)
    metrics = run_training(cfg, train_csv=synthetic_competition["train"], base=tiny_checkpoint,
                           adapter_dir=tmp_path / "adapter", checkpoint_dir=tmp_path / "ckpt", report_dir=tmp_path)
    assert metrics["loop"] == "fast" and metrics["global_step"] == 150
    assert (tmp_path / "adapter" / "adapter_config.json").is_file()
    assert json.loads((tmp_path / "metrics.json").read_text())["accuracy"] == metrics["accuracy"]
    print("fast loop accuracy", metrics["accuracy"])
    assert metrics["accuracy"] > 0.6, metrics  # learns, not only runs (chance is ~0.35)
