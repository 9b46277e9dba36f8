"""The model input encoding ([train] truncation keys, classifier/text.py Encoding): head and tail of long texts,
whole rounds, per-column shares, the prompt template's suffix and EOS, and the record inference reads back."""

from __future__ import annotations

import copy
import dataclasses
import re

import pandas as pd
import pytest

from kagflow.classifier.model import load_tokenizer
from kagflow.classifier.task import Task
from kagflow.classifier.text import RECORD, Encoding, encode_columns, encode_rows

pytest_plugins = ["classifier_fixtures"]

LMSYS = Task.lmsys()
DEFAULT = Encoding()
SUFFIX = "\n\nWhich response is better?"


@pytest.fixture(scope="module")
def tokenizer(tiny_checkpoint):
    return load_tokenizer(tiny_checkpoint)


def _words(tag: str, n: int) -> str:
    return " ".join(f"{tag}{i}" for i in range(n))


def _parts(tokenizer, ids) -> dict[str, str]:
    """Each column's decoded text (the default template's headers split it)."""
    text = tokenizer.decode(ids)
    found = re.split(r"<(prompt|response_a|response_b)>: ", text)
    return dict(zip(found[1::2], found[2::2]))


def test_head_tail_keeps_both_ends_and_the_marker_within_max_length(tokenizer):
    long_a = "start " + _words("w", 400) + " finish"
    for truncation, tail_kept in (("head_tail", True), ("head", False)):
        enc = dataclasses.replace(DEFAULT, truncation=truncation)
        ids = encode_rows(tokenizer, [["what?"]], [[long_a]], [["short b"]], 160, encoding=enc)[0]
        a = _parts(tokenizer, ids)["response_a"]
        assert len(ids) <= 160 and a.startswith("start")
        assert ("finish" in a) is tail_kept and ("[...]" in a) is tail_kept


def test_whole_rounds_keep_the_same_rounds_in_every_column(tokenizer):
    # the last round's response_a is long: per column, the prompt and response_b keep more rounds than it
    prompts = [[f"q{i} " + _words("p", 3) for i in range(4)]]
    a = [[f"ra{i} " + _words("a", 3) for i in range(3)] + ["ra3 " + _words("a", 60)]]
    b = [[f"rb{i} " + _words("b", 3) for i in range(4)]]
    rounds = {}
    for whole in (True, False):
        enc = dataclasses.replace(DEFAULT, whole_rounds=whole)
        ids = encode_rows(tokenizer, prompts, a, b, 230, encoding=enc)[0]
        parts = _parts(tokenizer, ids)
        rounds[whole] = [sorted(set(re.findall(rf"\b{tag}(\d)\b", parts[col])))
                         for tag, col in (("q", "prompt"), ("ra", "response_a"), ("rb", "response_b"))]
        assert len(ids) <= 230
    kept = rounds[True]
    assert kept[0] == kept[1] == kept[2] and "3" in kept[0] and "0" not in kept[0]  # the newest rounds, together
    assert rounds[False][0] != rounds[False][1]  # independently, the columns keep different rounds
    ids = encode_rows(tokenizer, prompts, a, b, 230)[0]  # the legacy encoding marks nothing
    assert "[...]" not in tokenizer.decode(ids)


def test_dropped_rounds_are_marked(tokenizer):
    turns = [[f"x{i} " + _words("t", 20) for i in range(5)]]
    ids = encode_rows(tokenizer, turns, turns, turns, 200, encoding=DEFAULT)[0]
    parts = _parts(tokenizer, ids)
    assert all(p.lstrip().startswith("[...]") for p in parts.values()), parts


def test_text_shares_change_the_budget_split(tokenizer):
    long = [[_words("z", 300)]]
    sizes = {}
    for shares in ((), (0.6, 0.2, 0.2)):
        enc = dataclasses.replace(DEFAULT, text_shares=shares)
        ids = encode_rows(tokenizer, long, long, long, 300, encoding=enc)[0]
        sizes[shares] = {k: len(tokenizer(v, add_special_tokens=False)["input_ids"])
                         for k, v in _parts(tokenizer, ids).items()}
    assert sizes[()]["prompt"] < sizes[()]["response_a"]  # the default: a swap column twice the prompt
    assert sizes[(0.6, 0.2, 0.2)]["prompt"] > 2 * sizes[(0.6, 0.2, 0.2)]["response_a"]


def test_every_row_ends_with_the_suffix_and_eos(tokenizer):
    rows = ([["short?"], [_words("p", 500)], []], [["a"], [_words("a", 500)], [""]], [["b"], ["b"], [""]])
    suffix = tokenizer(SUFFIX, add_special_tokens=False)["input_ids"]
    for ids in encode_rows(tokenizer, *rows, 128, encoding=DEFAULT):
        assert len(ids) <= 128 and ids[-1] == tokenizer.eos_token_id and ids[-1] != tokenizer.pad_token_id
        assert ids[-1 - len(suffix):-1] == suffix and ids.count(tokenizer.pad_token_id) == 0
    # the data spelling "<eos>" stays plain text: the one EOS is the appended one
    ids = encode_rows(tokenizer, [["<eos> <pad>"]], [["a <eos>"]], [["b"]], 128, encoding=DEFAULT)[0]
    assert ids.count(tokenizer.eos_token_id) == 1 and tokenizer.pad_token_id not in ids


def test_a_tokenizer_that_pads_with_eos_gets_no_eos(tokenizer):
    pads_with_eos = copy.deepcopy(tokenizer)
    pads_with_eos.pad_token = pads_with_eos.eos_token
    ids = encode_rows(pads_with_eos, [["q"]], [["a"]], [["b"]], 64, encoding=DEFAULT)[0]
    assert pads_with_eos.eos_token_id not in ids  # it would read as padding: the suffix's last token is pooled
    assert ids[-1] == tokenizer(SUFFIX, add_special_tokens=False)["input_ids"][-1]


@pytest.mark.parametrize("change", [
    {"truncation": "head"}, {"whole_rounds": False}, {"text_shares": (1.0, 1.0, 1.0)},
    {"truncation_marker": " ~~ "}, {"prompt_template": "{{ response_a }} | {{ response_b }} | {{ prompt }}"},
    {"append_eos": False}])
def test_each_option_changes_the_encoded_ids(tokenizer, change):
    # row 0: rounds that fit but for the oldest; row 1: one turn far over its share
    prompts = [[f"q{i} " + _words("p", 3) for i in range(4)], [_words("p", 40)]]
    a = [[f"ra{i} " + _words("a", 3) for i in range(3)] + ["ra3 " + _words("a", 60)], [_words("a", 400)]]
    b = [[f"rb{i} " + _words("b", 3) for i in range(4)], [_words("b", 40)]]
    before = encode_rows(tokenizer, prompts, a, b, 230, encoding=DEFAULT)
    after = encode_rows(tokenizer, prompts, a, b, 230, encoding=dataclasses.replace(DEFAULT, **change))
    assert before != after and max(map(len, after)) <= 230


def test_plain_text_tasks_get_the_template_and_head_tail(tokenizer):
    task = Task(text_columns=("text",), swap_columns=(), label_columns=(), label_column="y", labels=("0", "1"))
    ids = encode_columns(tokenizer, [[["begin " + _words("m", 300) + " end"]]], 96, task=task, encoding=DEFAULT)[0]
    text = tokenizer.decode(ids)
    assert len(ids) <= 96 and "begin" in text and " end" in text and "[...]" in text
    assert text.endswith("Answer:" + tokenizer.eos_token)


def test_the_record_round_trips_and_an_adapter_without_one_is_legacy(tmp_path, capsys):
    custom = Encoding(truncation="head", text_shares=(1.0, 2.0, 3.0), truncation_marker="…")
    (tmp_path / "a").mkdir()
    custom.save(tmp_path / "a")
    assert Encoding.load(tmp_path / "a") == custom
    assert Encoding.load(tmp_path / "none") == Encoding.legacy()
    assert "legacy encoding" in capsys.readouterr().out
    (tmp_path / "b").mkdir()
    Encoding().save(tmp_path / "b")
    with pytest.raises(ValueError, match="different encodings"):
        Encoding.of_adapters([tmp_path / "a", tmp_path / "b"])
    (tmp_path / "a" / RECORD).write_text('{"truncation": "head", "future_key": 1}')
    with pytest.raises(ValueError, match="future_key"):
        Encoding.load(tmp_path / "a")


def test_training_encodes_with_its_config(tokenizer):
    from kagflow.classifier.config import TrainConfig
    from kagflow.classifier.train import encode_fold

    frame = pd.DataFrame({"id": list("1234"), "label": [0, 1, 0, 1], "prompt": [["q " + _words("p", 200)]] * 4,
                          "response_a": [["a"]] * 4, "response_b": [["b"]] * 4})
    rows = {t: encode_fold(TrainConfig(max_length=96, n_splits=2, truncation=t), frame, tokenizer)[0][0]
            for t in ("head_tail", "head")}
    assert rows["head_tail"]["input_ids"] != rows["head"]["input_ids"]
    assert rows["head"]["input_ids"][-1] == tokenizer.eos_token_id


def test_inference_reads_the_adapter_s_encoding(tiny_checkpoint, synthetic_competition, tmp_path):
    """An adapter's encoding.json decides how inference encodes: a record that differs changes the predictions."""
    import numpy as np
    import torch
    from peft import LoraConfig, TaskType, get_peft_model

    from kagflow.classifier.infer import InferConfig, run_inference
    from kagflow.classifier.model import load_base

    torch.manual_seed(0)
    model = get_peft_model(load_base(tiny_checkpoint, training=False, pad_token_id=0),
                           LoraConfig(task_type=TaskType.SEQ_CLS, r=4, target_modules=["q_proj"]))
    model.save_pretrained(tmp_path / "adapter")
    load_tokenizer(tiny_checkpoint).save_pretrained(tmp_path / "adapter")
    test = tmp_path / "test.csv"
    pd.read_csv(synthetic_competition["test"], dtype=str, keep_default_na=False).head(6).to_csv(test, index=False)

    def run(name):
        out = run_inference(InferConfig(max_length=64, batch_size=8, tta=False), test_csv=test, base=tiny_checkpoint,
                            adapter=tmp_path / "adapter", output_path=tmp_path / name, devices=["cpu"])
        return pd.read_csv(out["path"]).iloc[:, 1:].to_numpy()

    legacy = run("legacy.csv")  # no record: the legacy encoding
    Encoding().save(tmp_path / "adapter")
    recorded = run("recorded.csv")
    assert not np.allclose(legacy, recorded)
    Encoding.legacy().save(tmp_path / "adapter")
    np.testing.assert_allclose(run("legacy_recorded.csv"), legacy)
