"""[infer] quantization and deadline_s, rehearsed on the CPU with the tiny 4-bit model and a random adapter: each
changes what it says (the tests fail if the option is ignored)."""

import json

import numpy as np
import pandas as pd
import pytest

from kagflow.classifier import resume
from kagflow.classifier.config import InferConfig
from kagflow.classifier.infer import run_inference

pytest_plugins = ["classifier_fixtures"]
pytestmark = pytest.mark.usefixtures("one_torch_thread")

ALL_LINEAR = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
RATE = 2000.0  # tokens per second the fake clock charges


@pytest.fixture(scope="module")
def random_adapter(tiny_checkpoint, tmp_path_factory):
    """A LoRA adapter on every linear with random (non-zero) B matrices and head: merging it changes the logits."""
    import torch
    from peft import get_peft_model

    from kagflow.classifier.model import load_base, load_tokenizer, lora_config

    tokenizer = load_tokenizer(tiny_checkpoint)
    model = load_base(tiny_checkpoint, pad_token_id=tokenizer.pad_token_id)
    pm = get_peft_model(model, lora_config(model, r=8, alpha=16, dropout=0.0, target_modules=ALL_LINEAR,
                                           freeze_layers=0))
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, p in pm.named_parameters():
            if "lora_B" in name or "score" in name:
                p.copy_(torch.randn(p.shape, generator=g) * 0.1)
    out = tmp_path_factory.mktemp("adapter") / "adapter"
    pm.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def test_csv(synthetic_competition, tmp_path_factory):
    path = tmp_path_factory.mktemp("test") / "test.csv"
    pd.read_csv(synthetic_competition["test"]).head(48).to_csv(path, index=False)
    return path


def _run(cfg, test_csv, tiny_checkpoint, adapter, out, **kw):
    result = run_inference(cfg, test_csv=test_csv, base=tiny_checkpoint, adapter=adapter,
                           output_path=out / "submission.csv", **kw)
    return result, pd.read_csv(out / "submission.csv")


def test_8bit_makes_the_linears_weight_only_int8_with_the_lora_merged(tiny_checkpoint, random_adapter, test_csv,
                                                                     tmp_path, monkeypatch):
    """quantization = "8bit": every 4-bit linear of the decoder becomes a weight-only int8 linear (dequant.Int8Linear)
    of W_nf4 + BA, not LLM.int8's Linear8bitLt unless int8_kernel = "llm_int8" asks; the logits stay close to the
    merged fp32 model's. run_inference passes [infer] int8_kernel through (each kernel reaches int8_layers)."""
    import bitsandbytes as bnb
    import torch

    from kagflow.classifier import dequant
    from kagflow.classifier.dequant import Int8Linear, int8_layers, merge_and_dequantize
    from kagflow.classifier.infer import tuned_for_device
    from kagflow.classifier.model import load_for_inference
    from kagflow.classifier.predict import predict_logits

    model, tokenizer = load_for_inference(tiny_checkpoint, random_adapter)
    four = sum(isinstance(m, bnb.nn.Linear4bit) for m in model.modules())
    assert four == 7 * model.config.num_hidden_layers
    ids = [tokenizer(f"row {i} " * (i + 3))["input_ids"] for i in range(6)]
    ref_model, _ = load_for_inference(tiny_checkpoint, random_adapter)
    ref = predict_logits(merge_and_dequantize(ref_model, torch.float32), ids, max_tokens=4096,
                         pad_id=tokenizer.pad_token_id)
    four_bit = predict_logits(model, ids, max_tokens=4096, pad_id=tokenizer.pad_token_id)
    model, _ = tuned_for_device(model, 4096, quantization="8bit")
    assert not any(isinstance(m, (bnb.nn.Linear4bit, bnb.nn.Linear8bitLt)) for m in model.modules())
    int8 = [m for m in model.modules() if isinstance(m, Int8Linear)]
    assert len(int8) == four and all(m.weight.dtype == torch.int8 for m in int8)
    assert not any("lora_A" in n for n, _ in model.named_parameters()
                   if any(n.startswith(f"base_model.model.model.layers.{k}.") for k in range(2)))  # merged away
    got = predict_logits(model, ids, max_tokens=4096, pad_id=tokenizer.pad_token_id)
    # int8 weights (per-row absmax) over every layer: within 5 % of the largest logit
    assert (got - ref).abs().max() < 5e-2 * ref.abs().max() + 1e-3, (got, ref)
    assert (four_bit - ref).abs().max() < 2e-2 * ref.abs().max() + 1e-3  # the same function, in 4-bit
    assert int8_layers(model) == 0  # nothing 4-bit left to convert

    # through run_inference: the option and the kernel reach the model (the report says so, the submission differs)
    kernels, real = [], dequant.int8_layers
    monkeypatch.setattr(dequant, "int8_layers", lambda m, **kw: kernels.append(kw["kernel"]) or real(m, **kw))
    four_run, four_sub = _run(InferConfig(max_length=64, batch_size=8, tta=False), test_csv, tiny_checkpoint,
                              random_adapter, _dir(tmp_path, "four"))
    assert kernels == [] and four_run["report"]["int8_kernel"] is None
    eight_run, eight_sub = _run(InferConfig(max_length=64, batch_size=8, tta=False, quantization="8bit"), test_csv,
                                tiny_checkpoint, random_adapter, _dir(tmp_path, "eight"))
    assert eight_run["report"]["quantization"] == "8bit" and eight_run["report"]["int8_kernel"] == "weight_only"
    cols = ["winner_model_a", "winner_model_b", "winner_tie"]
    diff = np.abs(four_sub[cols].to_numpy() - eight_sub[cols].to_numpy()).max()
    assert 0 < diff < 0.05, diff
    llm_run, _ = _run(InferConfig(max_length=64, batch_size=8, tta=False, quantization="8bit", int8_kernel="llm_int8"),
                      test_csv, tiny_checkpoint, random_adapter, _dir(tmp_path, "llm"))
    assert kernels == ["weight_only", "llm_int8"] and llm_run["report"]["int8_kernel"] == "llm_int8"


def test_an_unknown_quantization_or_int8_kernel_is_refused(tiny_checkpoint, random_adapter, test_csv, tmp_path):
    # (an 8-bit ensemble runs: each member is merged in turn, test_infer_ensemble)
    with pytest.raises(ValueError, match=r"quantization = '6bit' is not one of 4bit, 8bit"):
        _run(InferConfig(quantization="6bit"), test_csv, tiny_checkpoint, random_adapter, tmp_path)
    with pytest.raises(ValueError, match=r"int8_kernel = 'int8' is not one of weight_only, llm_int8"):
        _run(InferConfig(quantization="8bit", int8_kernel="int8"), test_csv, tiny_checkpoint, random_adapter, tmp_path)


class FakeClock:
    """``resume.now`` that advances only when a batch runs: its tokens / RATE seconds."""

    def __init__(self):
        self.t = 1000.0

    def __call__(self):
        return self.t


@pytest.fixture
def clock(monkeypatch):
    from kagflow.classifier import predict

    fake = FakeClock()
    monkeypatch.setattr(resume, "now", fake)
    real = predict.predict_proba

    def charged(model, token_ids, **kw):
        fake.t += sum(len(s) for s in token_ids) / RATE
        return real(model, token_ids, **kw)

    monkeypatch.setattr(predict, "predict_proba", charged)
    return fake


def _dir(tmp_path, name):
    d = tmp_path / name
    d.mkdir()
    return d


def _tokens(tiny_checkpoint, test_csv, max_length):
    from kagflow.classifier.data import load_arena_csv
    from kagflow.classifier.model import load_tokenizer
    from kagflow.classifier.text import encode_rows

    frame = load_arena_csv(test_csv, labeled=False).frame
    return sum(map(len, encode_rows(load_tokenizer(tiny_checkpoint), frame["prompt"], frame["response_a"],
                                    frame["response_b"], max_length)))


COLS = ["winner_model_a", "winner_model_b", "winner_tie"]


def test_deadline_drops_tta_then_shortens_rows_then_writes_priors(clock, tiny_checkpoint, random_adapter, test_csv,
                                                                   tmp_path):
    """The fake clock charges every batch its tokens at RATE tokens/s. A generous deadline gives the submission of a
    run without one; one between one pass and two drops TTA for the rows left (they equal the single-view run's);
    one under the first pass shortens the rows left; one already past writes priors. In every case submission.csv
    is valid, in test.csv's id order, and written before the deadline; ignoring deadline_s runs past it."""
    one_pass = _tokens(tiny_checkpoint, test_csv, 1024) / RATE  # seconds of one whole pass at max_length 1024
    base = dict(max_length=1024, batch_size=1, tta=True)
    ids = pd.read_csv(test_csv)["id"].tolist()

    def run(name, deadline_s, **over):
        started = clock.t
        result, sub = _run(InferConfig(**{**base, **over}, deadline_s=deadline_s), test_csv, tiny_checkpoint,
                           random_adapter, _dir(tmp_path, name), started=started)
        assert sub["id"].tolist() == ids and np.allclose(sub[COLS].sum(axis=1), 1)
        if deadline_s:
            assert clock.t <= started + deadline_s, (name, clock.t - started, deadline_s)
        return result["report"], sub

    free, free_sub = run("free", 0)
    assert free["rows_per_pass"] == {"0/original": 48, "0/swapped": 48} and free["rows_on_prior"] == 0
    single, single_sub = run("single", 0, tta=False)

    generous, generous_sub = run("generous", 100 * one_pass)
    assert generous["rows_per_pass"] == free["rows_per_pass"] and not generous["dropped_passes"]
    assert np.allclose(generous_sub[COLS], free_sub[COLS], atol=1e-5)

    # reserve: deadline_s / 10; 1.6 passes of time: the first pass, then part of the swapped one
    cut, cut_sub = run("no-tta", 1.6 * one_pass / 0.9)
    swapped = cut["rows_per_pass"]["0/swapped"]
    assert cut["rows_per_pass"]["0/original"] == 48 and 0 < swapped < 48, cut  # TTA for the longest rows only
    assert cut["rows_per_max_length"] == {"1024": 48} and cut["rows_on_prior"] == 0
    assert any("0/swapped stopped" in d for d in cut["decisions"])
    views = np.isclose(cut_sub[COLS], single_sub[COLS], atol=1e-5).all(axis=1)
    assert views.sum() >= 48 - swapped > 0  # the rows without the swapped view are the single-view run's

    short, short_sub = run("short", 0.8 * one_pass)
    lengths = {int(k): n for k, n in short["rows_per_max_length"].items()}
    assert short["dropped_passes"] == ["0/swapped"] and min(lengths) < 1024 and 1024 in lengths, short
    assert any("re-encoded at max_length" in d for d in short["decisions"])
    assert sum(lengths.values()) + short["rows_on_prior"] == 48

    late_start = clock.t - 10 * one_pass  # the notebook started long ago: the deadline has passed
    result, late_sub = _run(InferConfig(**base, deadline_s=one_pass), test_csv, tiny_checkpoint, random_adapter,
                            _dir(tmp_path, "late"), started=late_start)
    assert result["report"]["rows_on_prior"] == 48 and late_sub["id"].tolist() == ids
    assert np.allclose(late_sub[COLS].to_numpy(), 1 / 3)
    report = json.loads((tmp_path / "late" / "inference_report.json").read_text())
    assert report["rows_on_prior"] == 48 and "time is up" in report["decisions"][0]


def test_the_deadline_counts_from_the_process_start():
    from kagflow.classifier.deadline import Deadline, process_age_s

    age = process_age_s()
    assert 0 < age < 24 * 3600
    d = Deadline.after(3600)
    assert abs(d.at - (resume.now() - age + 3600)) < 5
    assert Deadline.after(0) is None
