"""Finding inputs under Kaggle's input root in the classic and the newer mount layouts."""

from __future__ import annotations

import pytest

from kagflow.classifier import paths
from kagflow.classifier.paths import InputNotFoundError, find_competition_dir, find_model_dir, resolve_base_model

SLUG = "llm-classification-finetuning"


def _touch(root, *parts):
    path = root.joinpath(*parts)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("{}")
    return path.parent


@pytest.mark.parametrize("layout", [("competitions", SLUG), (SLUG,)])
def test_competition_in_either_layout(tmp_path, layout):
    folder = _touch(tmp_path, *layout, "test.csv")
    assert find_competition_dir(SLUG, tmp_path) == folder


def test_competition_nested_and_missing(tmp_path):
    folder = _touch(tmp_path, "elsewhere", SLUG, "data", "test.csv")
    assert find_competition_dir(SLUG, tmp_path) == folder
    with pytest.raises(InputNotFoundError) as info:
        find_competition_dir("other-comp", tmp_path)
    message = str(info.value)
    assert str(tmp_path / "competitions" / "other-comp") in message and "KAGFLOW_INPUT_ROOT" in message


def test_roots_come_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("KAGFLOW_INPUT_ROOT", str(tmp_path / "in"))
    monkeypatch.setenv("KAGFLOW_WORKING_ROOT", str(tmp_path / "out"))
    assert paths.input_root() == tmp_path / "in" and paths.working_root() == tmp_path / "out"
    folder = _touch(tmp_path, "in", "competitions", SLUG, "test.csv")
    assert find_competition_dir(SLUG) == folder
    monkeypatch.delenv("KAGFLOW_INPUT_ROOT")
    monkeypatch.delenv("KAGFLOW_WORKING_ROOT")
    assert str(paths.input_root()) == "/kaggle/input" and str(paths.working_root()) == "/kaggle/working"


def test_model_in_the_new_layout_latest_version(tmp_path):
    _touch(tmp_path, "models", "me", "gemma", "transformers", "base", "1", "config.json")
    v2 = _touch(tmp_path, "models", "me", "gemma", "transformers", "base", "2", "config.json")
    _touch(tmp_path, "models", "me", "gemma", "transformers", "base", "10", "weights", "config.json")
    assert find_model_dir("me/gemma/Transformers/base/2", root=tmp_path) == v2
    assert find_model_dir("me/gemma/transformers/base", root=tmp_path) == v2  # shallowest, then latest


def test_model_in_the_classic_layout_and_adapter_marker(tmp_path):
    base = _touch(tmp_path, "gemma", "transformers", "base", "1", "snapshot", "config.json")
    adapter = _touch(tmp_path, "gemma2-adapter", "transformers", "peft-lora-classifier", "3",
                     "adapter_config.json")
    _touch(tmp_path, "gemma2-adapter", "transformers", "peft-lora-classifier", "3", "config.json")
    assert find_model_dir("me/gemma/Transformers/base/1", root=tmp_path) == base
    assert find_model_dir("me/gemma2-adapter/transformers/peft-lora-classifier/3",
                          marker=paths.ADAPTER_MARKER, root=tmp_path) == adapter
    with pytest.raises(InputNotFoundError):  # an adapter folder is not a base model
        find_model_dir("gemma2-adapter", root=tmp_path)
    assert find_model_dir("", marker=paths.ADAPTER_MARKER, root=tmp_path) == adapter  # any mounted adapter


def test_model_given_as_a_folder(tmp_path):
    base = _touch(tmp_path, "snap", "inner", "config.json")
    assert find_model_dir(tmp_path / "snap") == base


def test_base_model_falls_back_to_the_hf_id_mount_then_the_hub(tmp_path, capsys):
    mount = _touch(tmp_path, "models", "unsloth", "gemma-2-9b-it-bnb-4bit", "transformers", "default", "1",
                   "config.json")
    assert resolve_base_model("", "unsloth/gemma-2-9b-it-bnb-4bit", root=tmp_path) == mount
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InputNotFoundError) as info:
        resolve_base_model("me/gemma/transformers/base/1", "unsloth/gemma-2-9b-it-bnb-4bit", root=empty)
    assert "me/gemma/transformers/base/1" in str(info.value) and "allow_hub" in str(info.value)
    assert resolve_base_model("", "unsloth/gemma-2-9b-it-bnb-4bit", root=empty,
                              allow_hub=True) == "unsloth/gemma-2-9b-it-bnb-4bit"
    assert "Hugging Face Hub" in capsys.readouterr().out
