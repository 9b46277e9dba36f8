"""Offline stand-ins: the synthetic competition's schema and quirks, the tiny checkpoint."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from kagflow.classifier.data import load_arena_csv
from kagflow.classifier.synth import MARKER, write_synthetic_competition
from kagflow.classifier.tiny import make_tiny_checkpoint

pytest_plugins = ["classifier_fixtures"]  # shared session fixtures: the tiny model is trained once

LABELS = ["winner_model_a", "winner_model_b", "winner_tie"]


@pytest.fixture(scope="module")
def big(tmp_path_factory):
    return write_synthetic_competition(tmp_path_factory.mktemp("big"), n_train=3000, n_test=100, seed=1)


def test_schema_is_the_competitions(synthetic_competition):
    train, test = pd.read_csv(synthetic_competition["train"]), pd.read_csv(synthetic_competition["test"])
    sample, solution = (pd.read_csv(synthetic_competition[k]) for k in ("sample_submission", "solution"))
    assert list(train.columns) == ["id", "model_a", "model_b", "prompt", "response_a", "response_b", *LABELS]
    assert list(test.columns) == ["id", "prompt", "response_a", "response_b"]
    assert list(sample.columns) == list(solution.columns) == ["id", *LABELS]
    assert sample["id"].tolist() == solution["id"].tolist() == test["id"].tolist()
    assert (train[LABELS].sum(axis=1) == 1).all() and (solution[LABELS].sum(axis=1) == 1).all()
    assert not set(train["id"]) & set(test["id"])
    assert len(train) == 2000 and len(test) == 200


def test_the_real_datas_quirks_are_there(big):
    raw = big["train"].read_text(encoding="utf-8")
    assert "\\ud83d" in raw  # an escape that decodes to a lone surrogate
    train = pd.read_csv(big["train"], keep_default_na=False, na_values=[""])
    assert train["prompt"].str.contains("null", na=False).any()
    assert (train["response_a"] == train["response_b"]).sum() >= 20  # identical responses
    assert (train["response_a"] == "[null]").any()
    data = load_arena_csv(big["train"])
    reasons = {issue.reason.split(" (")[0] for issue in data.issues}
    assert reasons == {"lone surrogate replaced with U+FFFD"}
    turns = data.frame["prompt"].map(len)
    assert (turns >= 2).mean() > 0.1  # multi-turn rows
    assert data.frame["response_a"].map(lambda t: "" in t).any()  # empty turns
    longest = data.frame["response_a"].map(lambda t: len(" ".join(t).split())).max()
    assert longest > 500  # long rows, beyond any tiny max_length


def test_only_quirks_the_real_data_has(tmp_path):
    """No truncated JSON and no missing cell anywhere (the real files have neither), and no lone surrogate in the
    test set: a public notebook that crashes on one scored on Kaggle's hidden test."""
    import json
    paths = write_synthetic_competition(tmp_path, n_train=1000, n_test=1000, seed=2, n_public=3)
    for name in ("train", "test", "hidden_test"):
        frame = pd.read_csv(paths[name], keep_default_na=False, na_values=[""])
        cells = [c for col in ("prompt", "response_a", "response_b") for c in frame[col]]
        assert not any(pd.isna(c) for c in cells), name
        turns = [json.loads(c) for c in cells]  # every cell is a JSON list
        assert all(isinstance(t, list) for t in turns), name
    for name in ("test", "hidden_test"):
        assert "\\ud8" not in paths[name].read_text(encoding="utf-8") and not load_arena_csv(paths[name]).issues
    hidden = pd.read_csv(paths["hidden_test"], keep_default_na=False, na_values=[""])
    assert (hidden["response_a"] == "[null]").any() and hidden["prompt"].str.contains("null").any()


def test_labels_follow_the_marker_and_the_real_balance(big):
    data = load_arena_csv(big["train"]).frame
    shares = data["label"].value_counts(normalize=True).sort_index().tolist()
    assert shares == pytest.approx([0.349, 0.342, 0.309], abs=0.03)
    has = lambda turns: bool(turns) and MARKER in (turns[-1] or "")  # noqa: E731
    marker = list(zip(data["response_a"].map(has), data["response_b"].map(has)))
    expected = [{(True, False): 0, (False, True): 1}.get(m, 2) for m in marker]
    assert (data["label"] == expected).mean() > 0.99


def test_synthetic_data_is_deterministic(tmp_path):
    one = write_synthetic_competition(tmp_path / "one", n_train=50, n_test=20, seed=5)
    two = write_synthetic_competition(tmp_path / "two", n_train=50, n_test=20, seed=5)
    other = write_synthetic_competition(tmp_path / "other", n_train=50, n_test=20, seed=6)
    for name in one:
        assert one[name].read_bytes() == two[name].read_bytes()
    assert one["train"].read_bytes() != other["train"].read_bytes()


def test_tiny_checkpoint_is_a_deterministic_gemma2_with_an_offline_tokenizer(tiny_checkpoint, tmp_path):
    from transformers import AutoTokenizer

    config = json.loads((tiny_checkpoint / "config.json").read_text())
    assert config["model_type"] == "gemma2" and config["hidden_size"] == 128 and config["num_hidden_layers"] == 2
    assert (tiny_checkpoint / "model.safetensors").is_file()
    tokenizer = AutoTokenizer.from_pretrained(tiny_checkpoint)
    assert (tokenizer.pad_token, tokenizer.bos_token, tokenizer.eos_token) == ("<pad>", "<bos>", "<eos>")
    assert tokenizer.pad_token_id == config["pad_token_id"] and len(tokenizer) <= config["vocab_size"]
    assert tokenizer.decode(tokenizer("café 🙂 \ufffd x")["input_ids"], skip_special_tokens=True) == "café 🙂 \ufffd x"
    again = make_tiny_checkpoint(tmp_path / "again")
    for name in ("model.safetensors", "tokenizer.json"):
        assert (again / name).read_bytes() == (tiny_checkpoint / name).read_bytes(), name
    small = make_tiny_checkpoint(tmp_path / "small", seed=1, hidden_size=64, num_layers=1, vocab_size=512)
    small_config = json.loads((small / "config.json").read_text())
    assert (small_config["hidden_size"], small_config["num_hidden_layers"]) == (64, 1)
    assert small_config["vocab_size"] <= 512
