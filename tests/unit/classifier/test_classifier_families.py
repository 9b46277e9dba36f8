"""Any decoder family through the same code: per-family choices read from the config, pooling on the
last real token with either padding side, and Llama- / Qwen-shaped models trained and served."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from kagflow.classifier.config import InferConfig, TrainConfig
from kagflow.classifier.infer import run_inference
from kagflow.classifier.model import ModelTraits, load_base, load_tokenizer, model_traits, resolve_attn_implementation
from kagflow.classifier.predict import predict_proba
from kagflow.classifier.recipe import recipe_for_device
from kagflow.classifier.text import encode_rows
from kagflow.classifier.tiny import make_tiny_checkpoint
from kagflow.classifier.train import run_training

from classifier_fixtures import ALL_LINEAR

pytest_plugins = ["classifier_fixtures"]
pytestmark = pytest.mark.usefixtures("one_torch_thread")

# rows of different lengths; some spell special tokens, which must stay plain text
PROMPTS = [["Which is better?"], ["Say <eos> twice <pad>"], ["hi"]]
RESPONSES_A = [["The first answer, a long one with many words in it."], ["<pad><pad>"], ["a"]]
RESPONSES_B = [["Second."], ["ok <eos>"], ["b b b b b b b b b b b b"]]


@pytest.fixture(scope="session")
def family_checkpoints(tmp_path_factory):
    root = tmp_path_factory.mktemp("families")
    return {f: make_tiny_checkpoint(root / f, family=f, vocab_size=512, hidden_size=64)
            for f in ("gemma2", "llama", "qwen3")}


def test_choices_come_from_the_config_not_the_class(family_checkpoints):
    gemma2, llama = model_traits(family_checkpoints["gemma2"]), model_traits(family_checkpoints["llama"])
    assert gemma2.softcapping and gemma2.sliding_window == 4096
    assert not llama.softcapping and llama.sliding_window is None
    assert resolve_attn_implementation("auto", gemma2, "cpu") == "eager"
    assert resolve_attn_implementation("auto", gemma2, (9, 0), training=False) in ("flex_attention", "eager")
    assert resolve_attn_implementation("auto", llama, (9, 0)) == "sdpa"
    with pytest.raises(ValueError, match="softcapping"):
        resolve_attn_implementation("sdpa", gemma2)
    # the recipe (classifier.recipe) is keyed on the config too: a model without the cap trains and infers with SDPA
    assert recipe_for_device(79.0, (9, 0), llama).train_attn_implementation == "sdpa"
    assert recipe_for_device(79.0, (9, 0), gemma2).train_attn_implementation == "eager"
    gemma3 = ModelTraits("gemma3_text", softcapping=False, sliding_window=512, num_layers=18)
    assert recipe_for_device(15.0, (7, 5), gemma3).infer_attn_implementation == "sdpa"


def test_batches_pad_on_the_right_even_for_a_left_padding_tokenizer(family_checkpoints, tmp_path):
    """Gemma 3's tokenizer pads left; left-padded rows trained on NaN losses under CUDA SDPA in bf16."""
    from transformers import AutoTokenizer

    saved = AutoTokenizer.from_pretrained(family_checkpoints["gemma2"])
    saved.padding_side = "left"
    saved.save_pretrained(tmp_path)
    assert AutoTokenizer.from_pretrained(tmp_path).padding_side == "left"
    assert load_tokenizer(tmp_path).padding_side == "right"


@pytest.mark.parametrize("family", ["gemma2", "llama"])
@pytest.mark.parametrize("side", ["right", "left"])
def test_pooling_takes_the_last_real_token_with_either_padding_side(family_checkpoints, family, side):
    """A padded batch gives each row what the row gives alone; pooling a pad would not."""
    path = family_checkpoints[family]
    tokenizer = load_tokenizer(path)
    tokenizer.padding_side = side
    if family == "llama":
        assert tokenizer.pad_token_id == tokenizer.eos_token_id  # no pad token of its own: eos pads
    model = load_base(path, pad_token_id=tokenizer.pad_token_id).eval()
    ids = encode_rows(tokenizer, PROMPTS, RESPONSES_A, RESPONSES_B, 64)
    assert len({len(i) for i in ids}) == 3
    assert not any(tokenizer.pad_token_id in row for row in ids)  # "<pad>"/"<eos>" in the text stay text

    batched = predict_proba(model, ids, pad_token_id=tokenizer.pad_token_id, padding_side=side)
    alone = np.vstack([predict_proba(model, [row], pad_token_id=tokenizer.pad_token_id) for row in ids])
    np.testing.assert_allclose(batched, alone, atol=1e-4)

    if side == "right":  # the check bites: a head that pools the last position reads a pad
        model.config.pad_token_id = -1
        wrong = predict_proba(model, ids, pad_token_id=tokenizer.pad_token_id, padding_side=side)
        assert np.abs(wrong - alone).max() > 1e-3


@pytest.mark.parametrize("family, loop", [("llama", "trainer"), ("qwen3", "fast")])
def test_llama_and_qwen_go_through_the_same_train_and_infer_code(family_checkpoints, synthetic_competition,
                                                                 tmp_path, family, loop):
    base = family_checkpoints[family]
    cfg = TrainConfig(max_length=64, n_epochs=1.0, max_train_rows=96, per_device_train_batch_size=16,
                      gradient_accumulation_steps=1, freeze_layers=0, target_modules=tuple(ALL_LINEAR), lr=1e-3,
                      warmup_steps=1, gradient_checkpointing=False, eval_strategy="no", train_loop=loop,
                      optim_type="adamw_torch")
    metrics = run_training(cfg, train_csv=synthetic_competition["train"], base=base, adapter_dir=tmp_path / "adapter",
                           checkpoint_dir=tmp_path / "ckpt", report_dir=tmp_path / "report")
    assert metrics["loop"] == loop and metrics["n"] > 0 and np.isfinite(metrics["log_loss"])
    test = pd.read_csv(synthetic_competition["test"]).head(24)
    test.to_csv(tmp_path / "test.csv", index=False)
    result = run_inference(InferConfig(max_length=64, batch_size=8, tta=True), test_csv=tmp_path / "test.csv",
                           base=base, adapter=tmp_path / "adapter", output_path=tmp_path / "submission.csv")
    sub = pd.read_csv(result["path"])
    assert list(sub["id"]) == list(test["id"]) and len(sub) == 24
    probs = sub[["winner_model_a", "winner_model_b", "winner_tie"]].to_numpy()
    assert np.all(probs >= 0) and np.allclose(probs.sum(axis=1), 1.0, atol=1e-6)
