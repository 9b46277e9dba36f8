"""[infer] ensemble on the CPU with the tiny 4-bit model: "members" puts each member through the tuned preparation,
one member in memory at a time, and its mean equals the untuned members' mean; "average_lora" gives the model whose
weights are the members' merged models' mean (the tests fail if the option is ignored)."""

import dataclasses
import gc
import weakref

import numpy as np
import pandas as pd
import pytest

from kagflow.classifier import infer
from kagflow.classifier.config import InferConfig
from kagflow.classifier.infer import run_inference

pytest_plugins = ["classifier_fixtures"]
pytestmark = pytest.mark.usefixtures("one_torch_thread")

ALL_LINEAR = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
COLS = ["winner_model_a", "winner_model_b", "winner_tie"]


def _random_adapter(checkpoint, out, seed: int, r: int):
    import torch
    from peft import get_peft_model

    from kagflow.classifier.model import load_base, load_tokenizer, lora_config

    tokenizer = load_tokenizer(checkpoint)
    model = load_base(checkpoint, pad_token_id=tokenizer.pad_token_id)
    pm = get_peft_model(model, lora_config(model, r=r, alpha=2 * r, dropout=0.0, target_modules=ALL_LINEAR,
                                           freeze_layers=0))
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in pm.named_parameters():
            if "lora_" in name or "score" in name:
                p.copy_(torch.randn(p.shape, generator=g) * 0.2)
    pm.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def two_adapters(tiny_checkpoint, tmp_path_factory):
    root = tmp_path_factory.mktemp("members")
    return [_random_adapter(tiny_checkpoint, root / f"fold{i}", seed=i, r=4 + 4 * i) for i in range(2)]


@pytest.fixture(scope="module")
def test_csv(synthetic_competition, tmp_path_factory):
    path = tmp_path_factory.mktemp("test") / "test.csv"
    pd.read_csv(synthetic_competition["test"]).head(24).to_csv(path, index=False)
    return path


def _run(cfg, test_csv, checkpoint, adapter, out):
    out.mkdir(parents=True, exist_ok=True)
    result = run_inference(cfg, test_csv=test_csv, base=checkpoint, adapter=adapter, output_path=out / "submission.csv")
    return result, pd.read_csv(out / "submission.csv")[COLS].to_numpy()


def test_members_take_the_tuned_path_one_in_memory_at_a_time(monkeypatch, tiny_checkpoint, two_adapters, test_csv,
                                                             tmp_path):
    """Each member is loaded alone and prepared as a single adapter is (here the big cards' recipe: LoRA merged into
    a dense fp32 base, top layer pooled); the previous member is gone when the next loads; the ensemble is the mean
    of the members run as single adapters through the same tuned path, and near the mean of the members run
    untuned (4-bit, LoRA unmerged: the merge's own rounding, as test_perf's 1e-2 on logits)."""
    from kagflow.classifier.predict import prepare_for_inference
    from kagflow.classifier.recipe import recipe_for_device

    recipe = dataclasses.replace(recipe_for_device(80.0, (9, 0)), dtype="float32", infer_attn_implementation="eager",
                                 infer_compile_layers=False, infer_pool_top_layer=True)
    alive, prepared = [], []

    def tuned(model, budget, **kw):
        gc.collect()
        prepared.append([ref() is not None for ref in alive])  # members alive when this one is prepared
        model = prepare_for_inference(model, recipe)
        alive.append(weakref.ref(model))
        return model, budget

    untuned = [_run(InferConfig(), test_csv, tiny_checkpoint, a, tmp_path / f"alone{i}")[1]
               for i, a in enumerate(two_adapters)]
    monkeypatch.setattr(infer, "tuned_for_device", tuned)
    alone = [_run(InferConfig(), test_csv, tiny_checkpoint, a, tmp_path / f"tuned{i}")[1]
             for i, a in enumerate(two_adapters)]
    alive.clear(), prepared.clear()
    result, mean = _run(InferConfig(), test_csv, tiny_checkpoint, two_adapters, tmp_path / "ensemble")
    assert prepared == [[], [False]], "each member prepared once, the previous one freed first"
    assert result["adapters"] == 2 and result["report"]["ensemble"] == "members"
    assert not any(ref() is not None for ref in alive), "the last member is freed after its passes"
    np.testing.assert_allclose(mean, (alone[0] + alone[1]) / 2, atol=1e-6)
    np.testing.assert_allclose(mean, (untuned[0] + untuned[1]) / 2, atol=3e-2)
    assert np.abs(untuned[0] - untuned[1]).max() > 0.1  # the members differ: the mean is not either one
    member0 = pd.read_csv(tmp_path / "ensemble" / "submission.adapter0.csv")[COLS].to_numpy()
    np.testing.assert_allclose(member0, alone[0], atol=1e-6)


def _merged_fp32(checkpoint, adapter):
    """The tiny base in fp32 (not quantised) with ``adapter`` merged: its weights."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForSequenceClassification

    from kagflow.classifier.model import load_tokenizer

    base = AutoModelForSequenceClassification.from_pretrained(
        checkpoint, num_labels=3, torch_dtype=torch.float32, pad_token_id=load_tokenizer(checkpoint).pad_token_id)
    return PeftModel.from_pretrained(base, str(adapter)).merge_and_unload().eval()


def test_average_lora_is_the_model_of_the_mean_weights(tiny_checkpoint, two_adapters, tmp_path):
    """The averaged adapter (members of ranks 4 and 8) merged gives every weight the members' merged mean (the
    mean of B @ A, not of A and B), the score head's mean too; its logits are that model's."""
    import torch

    from kagflow.classifier.ensembling import average_adapters

    averaged = average_adapters(two_adapters, tmp_path / "avg")
    members = [_merged_fp32(tiny_checkpoint, a).state_dict() for a in two_adapters]
    model = _merged_fp32(tiny_checkpoint, averaged)
    got = model.state_dict()
    differ = 0
    for key, value in got.items():
        want = (members[0][key] + members[1][key]) / 2
        torch.testing.assert_close(value, want, atol=1e-5, rtol=1e-5, msg=key)
        differ += not torch.allclose(members[0][key], members[1][key])
    assert differ > 10  # the projections and the head differ between members
    mean_model = _merged_fp32(tiny_checkpoint, two_adapters[0])
    mean_model.load_state_dict({k: (members[0][k] + members[1][k]) / 2 for k in members[0]})
    ids = torch.tensor([[5, 17, 99, 3, 42, 7]])
    torch.testing.assert_close(model(input_ids=ids).logits, mean_model(input_ids=ids).logits, atol=1e-5, rtol=1e-5)


def test_average_lora_runs_one_pass_and_differs_from_the_members_mean(tiny_checkpoint, two_adapters, test_csv,
                                                                      tmp_path):
    members, mean = _run(InferConfig(tta=False), test_csv, tiny_checkpoint, two_adapters, tmp_path / "members")
    averaged, avg = _run(InferConfig(tta=False, ensemble="average_lora"), test_csv, tiny_checkpoint, two_adapters,
                         tmp_path / "average")
    assert members["adapters"] == 2 and averaged["adapters"] == 1
    assert list(averaged["report"]["rows_per_pass"]) == ["0/original"]
    assert not (tmp_path / "average" / "submission.adapter0.csv").exists()
    assert np.abs(avg - mean).max() > 1e-3  # mean weights, not mean probabilities
    with pytest.raises(ValueError, match=r"ensemble = 'mean' is not one of members, average_lora"):
        _run(InferConfig(ensemble="mean"), test_csv, tiny_checkpoint, two_adapters, tmp_path / "bad")


def test_average_lora_refuses_members_of_other_layouts(tiny_checkpoint, two_adapters, tmp_path):
    import json
    import shutil

    from kagflow.classifier.ensembling import average_adapters

    other = tmp_path / "other"
    shutil.copytree(two_adapters[1], other)
    config = json.loads((other / "adapter_config.json").read_text())
    (other / "adapter_config.json").write_text(json.dumps({**config, "target_modules": ["q_proj"]}))
    with pytest.raises(ValueError, match=r"target_modules.*use ensemble = \"members\""):
        average_adapters([two_adapters[0], other], tmp_path / "avg")


def test_temperature_is_applied_to_the_ensemble_and_its_members(tiny_checkpoint, two_adapters, test_csv, tmp_path):
    """[infer] temperature = 2: submission.csv (and each member's file) is softmax(log p / 2) of the run without;
    "oof" unresolved and a non-positive T are refused."""
    from kagflow.classifier.calibration import apply_temperature

    plain, p = _run(InferConfig(tta=False), test_csv, tiny_checkpoint, two_adapters, tmp_path / "plain")
    warm, q = _run(InferConfig(tta=False, temperature=2.0), test_csv, tiny_checkpoint, two_adapters,
                   tmp_path / "warm")
    assert plain["report"]["temperature"] == 1.0 and warm["report"]["temperature"] == 2.0
    np.testing.assert_allclose(q, apply_temperature(p, 2.0), atol=1e-6)
    assert np.abs(q - p).max() > 1e-2
    member = [pd.read_csv(tmp_path / d / "submission.adapter1.csv")[COLS].to_numpy() for d in ("plain", "warm")]
    np.testing.assert_allclose(member[1], apply_temperature(member[0], 2.0), atol=1e-6)
    for bad, says in (("oof", "unresolved"), (0.0, "not a positive number"), ("hot", "is not")):
        with pytest.raises(ValueError, match=says):
            _run(InferConfig(temperature=bad), test_csv, tiny_checkpoint, two_adapters[0], tmp_path / "bad")


def test_members_on_two_devices_match_one(tiny_checkpoint, two_adapters, test_csv, tmp_path):
    """One copy of each member per 'device' (two CPU threads), member after member: the same mean as one device."""
    cfg = InferConfig(tta=False)
    one = run_inference(cfg, test_csv=test_csv, base=tiny_checkpoint, adapter=two_adapters,
                        output_path=tmp_path / "one.csv", devices=["cpu"])
    two = run_inference(cfg, test_csv=test_csv, base=tiny_checkpoint, adapter=two_adapters,
                        output_path=tmp_path / "two.csv", devices=["cpu", "cpu"])
    assert one["adapters"] == two["adapters"] == 2
    # (each device's rows batch differently: float rounding only)
    np.testing.assert_allclose(pd.read_csv(one["path"])[COLS].to_numpy(), pd.read_csv(two["path"])[COLS].to_numpy(),
                               atol=1e-4)
