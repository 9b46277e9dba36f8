"""Multi-GPU split/merge and the training launch command, on the CPU."""

import subprocess
import sys

import numpy as np
import pytest

from kagflow.classifier import multigpu

pytest_plugins = ["classifier_fixtures"]


def test_split_deals_length_sorted_rows_alternately():
    lengths = [5, 100, 30, 80, 10, 60, 7]
    parts = multigpu.split_for_devices(lengths, 2)
    assert parts == [[1, 5, 4, 0], [3, 2, 6]]  # 100,60,10,5 | 80,30,7
    assert sorted(parts[0] + parts[1]) == list(range(len(lengths)))
    assert abs(len(parts[0]) - len(parts[1])) <= 1
    total = [sum(lengths[i] for i in p) for p in parts]
    assert abs(total[0] - total[1]) <= max(lengths)


def test_split_one_device_and_more_devices_than_rows():
    assert multigpu.split_for_devices([3, 1, 2], 1) == [[0, 2, 1]]
    parts = multigpu.split_for_devices([3, 1], 4)
    assert parts == [[0], [1], [], []]
    with pytest.raises(ValueError):
        multigpu.split_for_devices([1], 0)


def test_merge_restores_input_order_and_catches_gaps():
    probs = np.random.default_rng(0).dirichlet([1, 1, 1], size=7)
    parts = multigpu.split_for_devices(list(range(7)), 3)
    merged = multigpu.merge_parts(7, [(p, probs[p]) for p in parts])
    np.testing.assert_array_equal(merged, probs)
    with pytest.raises(ValueError, match="no prediction"):
        multigpu.merge_parts(7, [(p, probs[p]) for p in parts[:2]])
    with pytest.raises(ValueError, match="twice"):
        multigpu.merge_parts(7, [(p, probs[p]) for p in parts] + [(parts[0][:1], probs[parts[0][:1]])])
    with pytest.raises(ValueError, match="rows of probabilities"):
        multigpu.merge_parts(7, [(parts[0], probs[:1])])


def test_predict_multi_matches_single_device(monkeypatch):
    """Two fake devices (threads) give exactly the single-device probabilities, in id order."""
    import torch

    torch.manual_seed(0)

    class Toy(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = torch.nn.Embedding(50, 3)

        @property
        def device(self):
            return torch.device("cpu")

        def forward(self, input_ids, attention_mask):
            x = (self.emb(input_ids) * attention_mask[..., None]).sum(1) / attention_mask.sum(1, keepdim=True)

            class Out:
                logits = x
            return Out()

    model = Toy().eval()
    rng = np.random.default_rng(1)
    rows = [list(rng.integers(1, 50, size=int(n))) for n in rng.integers(3, 40, size=23)]
    loads = []

    def load(device):
        loads.append(device)
        return model

    single = multigpu.predict_proba_multi(load, rows, pad_token_id=0, token_budget=64, devices=["cpu"])
    double = multigpu.predict_proba_multi(load, rows, pad_token_id=0, token_budget=64, devices=["cpu", "cpu"])
    assert sorted(loads) == ["cpu", "cpu", "cpu"]
    np.testing.assert_allclose(double, single, rtol=1e-6)
    np.testing.assert_allclose(double.sum(1), 1.0)


def test_worker_error_is_raised():
    def work(device, idx):
        if device == "cuda:1":
            raise RuntimeError("out of memory on cuda:1")
        return idx

    with pytest.raises(RuntimeError, match="cuda:1"):
        multigpu.run_on_devices(["cuda:0", "cuda:1"], [[0], [1]], work)


def test_launch_command():
    one = multigpu.launch_command("kagflow.classifier.train", ["--params", "p.json"], n_gpus=1, python="py")
    assert one == ["py", "-m", "kagflow.classifier.train", "--params", "p.json"]
    two = multigpu.launch_command("kagflow.classifier.train", ["--params", "p.json"], n_gpus=2,
                                  mixed_precision="fp16", python="py", main_port=29555)
    assert two[:3] == ["py", "-m", "accelerate.commands.launch"]
    assert two[two.index("--num_processes") + 1] == "2" and "--multi_gpu" in two
    assert two[two.index("--mixed_precision") + 1] == "fp16"
    assert two[-4:] == ["-m", "kagflow.classifier.train", "--params", "p.json"]


def test_accelerate_accepts_the_launch_flags():
    """accelerate's own parser takes every flag we build (parsed, not run)."""
    cmd = multigpu.launch_command("mod", ["--x"], n_gpus=2, mixed_precision="bf16", main_port=29555)
    code = ("import sys; from accelerate.commands.launch import launch_command_parser as p; "
            "a = p().parse_args(sys.argv[1:]); print(a.num_processes, a.multi_gpu, a.module, a.mixed_precision)")
    out = subprocess.run([sys.executable, "-c", code, *cmd[3:]], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["2", "True", "True", "bf16"]


def test_distributed_device_map(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert multigpu.distributed_device_map() is None
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert multigpu.distributed_device_map() == {"": 1}


def test_run_inference_on_two_devices_matches_one(tiny_checkpoint, adapter_dir, synthetic_competition, tmp_path):
    """The real path: 4-bit base + adapter, one copy per 'device' (two CPU threads here)."""
    import pandas as pd

    from kagflow.classifier.infer import InferConfig, run_inference

    cfg = InferConfig(max_length=64, batch_size=8, tta=True)
    one = run_inference(cfg, test_csv=synthetic_competition["test"], base=tiny_checkpoint, adapter=adapter_dir,
                        output_path=tmp_path / "one.csv", devices=["cpu"])
    two = run_inference(cfg, test_csv=synthetic_competition["test"], base=tiny_checkpoint, adapter=adapter_dir,
                        output_path=tmp_path / "two.csv", devices=["cpu", "cpu"])
    a, b = pd.read_csv(one["path"]), pd.read_csv(two["path"])
    assert list(a["id"]) == list(b["id"]) == list(pd.read_csv(synthetic_competition["test"])["id"])
    np.testing.assert_allclose(a.iloc[:, 1:].to_numpy(), b.iloc[:, 1:].to_numpy(), atol=1e-6)


def test_training_module_entry_point_runs_what_each_ddp_process_runs(tiny_checkpoint, synthetic_competition,
                                                                      tmp_path):
    """`python -m kagflow.classifier.train --params ...` (the command accelerate starts per GPU)."""
    import json
    import os

    from kagflow.classifier.train import TrainConfig

    cfg = TrainConfig(max_length=64, n_epochs=1, max_train_rows=200, per_device_train_batch_size=16,
                      gradient_accumulation_steps=1, freeze_layers=0, lr=1e-3, eval_strategy="no",
                      gradient_checkpointing=False, optim_type="adamw_torch", target_modules=("q_proj", "v_proj"))
    import dataclasses

    params = tmp_path / "launch-params.json"
    params.write_text(json.dumps({"config": dataclasses.asdict(cfg), "train_csv": str(synthetic_competition["train"]),
                                  "base": str(tiny_checkpoint), "adapter_dir": str(tmp_path / "adapter"),
                                  "checkpoint_dir": str(tmp_path / "ckpt"), "report_dir": str(tmp_path)}))
    command = multigpu.launch_command("kagflow.classifier.train", ["--params", str(params)], n_gpus=1)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    out = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert (tmp_path / "adapter" / "adapter_config.json").is_file()
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["n_train"] == 160 and 0 <= metrics["accuracy"] <= 1


def test_rendered_train_notebook_launches_on_all_gpus():
    import tempfile
    from pathlib import Path

    from kagflow.notebooks.render import render_notebook

    with tempfile.TemporaryDirectory() as tmp:
        nb = Path(render_notebook("train", {}, Path(tmp) / "t.ipynb")).read_text()
    assert "train_on_all_gpus(" in nb and "accelerate launch" in nb
