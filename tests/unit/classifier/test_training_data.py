"""[train] training data options: extra files (deduplicated, never in validation), swap augmentation, soft labels
(soft cross-entropy in both loops) and pseudo-labels joined by id."""

from __future__ import annotations

import pandas as pd
import pytest
import torch

from kagflow.classifier.data import load_arena_csv
from kagflow.classifier.extra import deduplicate, normalise, pseudo_labels, swap_augment
from kagflow.classifier.loss import label_tensor, loss_sum, resolve_class_weights
from kagflow.classifier.synth import write_synthetic_competition
from kagflow.classifier.task import Task
from kagflow.classifier.train import TrainConfig, encode_fold, run_training

pytest_plugins = ["classifier_fixtures"]
pytestmark = pytest.mark.usefixtures("one_torch_thread")

LMSYS = Task()
COLUMNS = ["id", "prompt", "response_a", "response_b", "winner_model_a", "winner_model_b", "winner_tie"]


def frame(rows) -> pd.DataFrame:
    """A parsed frame (load_arena_csv's shape) from (id, prompt, a, b, label) tuples."""
    return pd.DataFrame([{"id": i, "prompt": [p], "response_a": [a], "response_b": [b], "label": y}
                         for i, p, a, b, y in rows])


class WordTokenizer:
    """Enough of a tokenizer for encode_frame: one id per character class, BOS 1, EOS 60, pad 0."""

    bos_token_id = 1
    eos_token_id = 60
    pad_token_id = 0

    def __call__(self, texts, **kwargs):
        return {"input_ids": [[2 + (ord(ch) % 50) for ch in t][:20] for t in texts]}


def test_dedup_drops_exact_and_normalised_duplicates_and_swapped_copies():
    competition = frame([("c1", "Hello  World", "yes", "no", 0), ("c2", "q", "a", "b", 2)])
    extra = frame([("e1", "hello world", "YES", "no", 1),        # normalised copy of c1
                   ("e2", "q", "b", "a", 2),                       # c2 with the responses swapped
                   ("e3", "new", "x", "y", 0), ("e4", "new ", "x", "y", 1),  # e4 repeats e3
                   ("e5", "other", "x", "y", 1)])
    kept = deduplicate(extra, competition, LMSYS)
    assert list(kept.frame["id"]) == ["e3", "e5"]
    assert (kept.dropped_competition, kept.dropped_repeated) == (2, 1)
    assert "2 matching a competition row" in kept.report("extra")
    assert normalise(["A\u00a0 b", "C"]) == "a b c"  # NFKC: the no-break space is a space


def test_extra_rows_only_ever_train_and_never_enter_validation():
    competition = frame([(f"c{i}", f"p{i}", "a", "b", i % 3) for i in range(30)])
    extra = frame([(f"e{i}", f"x{i}", "a", "b", i % 3) for i in range(12)])
    cfg = TrainConfig(n_splits=5, max_length=256)
    without = encode_fold(cfg, competition, WordTokenizer(), LMSYS)
    train, val, val_ids, counts = encode_fold(cfg, competition, WordTokenizer(), LMSYS, extra)
    assert val_ids == without[2] and all(i.startswith("c") for i in val_ids)  # the same validation fold
    assert [r["input_ids"] for r in val] == [r["input_ids"] for r in without[1]]
    assert len(train) == len(without[0]) + 12 and counts["n_extra"] == 12


def test_swap_augmentation_swaps_texts_and_labels_at_the_rate_seeded():
    rows = frame([(str(i), f"p{i}", f"a{i}", f"b{i}", i % 3) for i in range(2000)])
    out = swap_augment(rows, LMSYS, 0.3, seed=7)
    swapped = [a[0].startswith("b") for a in out["response_a"]]
    assert abs(sum(swapped) / len(rows) - 0.3) < 0.04 and out.attrs["swapped"] == sum(swapped)
    for (_, before), (_, after), s in zip(rows.iterrows(), out.iterrows(), swapped):
        if s:
            assert (after.response_a, after.response_b) == (before.response_b, before.response_a)
            assert after.label == {0: 1, 1: 0, 2: 2}[before.label]  # A and B trade places, a tie stays
        else:
            assert after.response_a == before.response_a and after.label == before.label
    again = swap_augment(rows, LMSYS, 0.3, seed=7)
    assert list(again["label"]) == list(out["label"])  # seeded
    assert swap_augment(rows, LMSYS, 0.0, seed=7) is rows  # p = 0 leaves the data alone
    soft = rows.head(50).assign(target=[[0.7, 0.2, 0.1]] * 50)
    out = swap_augment(soft, LMSYS, 1.0, seed=0)
    assert all(t == [0.2, 0.7, 0.1] for t in out["target"])
    with pytest.raises(ValueError, match="swap_columns"):
        swap_augment(rows, Task(swap_columns=()), 0.5, seed=0)


def test_soft_loss_is_hard_cross_entropy_for_one_hot_targets_and_differs_for_soft_ones():
    torch.manual_seed(0)
    logits = torch.randn(6, 3)
    hard = torch.tensor([0, 1, 2, 2, 1, 0])
    one_hot = label_tensor([[float(c == y) for c in range(3)] for y in hard.tolist()])
    weights = torch.tensor([1.0, 2.0, 0.5])
    assert torch.allclose(loss_sum(logits, one_hot), loss_sum(logits, hard))
    assert torch.allclose(loss_sum(logits, one_hot, weights), loss_sum(logits, hard, weights))
    soft = torch.tensor([[0.6, 0.3, 0.1]] * 6)
    assert not torch.allclose(loss_sum(logits, soft), loss_sum(logits, hard))
    # a mixed batch: an index becomes its one-hot row
    assert label_tensor([0, [0.25, 0.25, 0.5]]).tolist() == [[1.0, 0.0, 0.0], [0.25, 0.25, 0.5]]


def test_soft_loss_gradient_moves_the_probabilities_toward_the_target():
    logits = torch.zeros(1, 3, requires_grad=True)
    target = torch.tensor([[0.1, 0.2, 0.7]])
    loss_sum(logits, target).backward()
    assert torch.allclose(logits.grad, torch.softmax(logits, -1).detach() - target)  # softmax - target
    stepped = torch.softmax(logits.detach() - logits.grad, -1)
    assert (stepped - target).abs().sum() < (torch.full((1, 3), 1 / 3) - target).abs().sum()


def test_balanced_weights_count_a_soft_row_in_its_most_probable_class():
    from kagflow.classifier.loss import hard_labels

    assert hard_labels([2, [0.1, 0.8, 0.1]]) == [2, 1]
    assert resolve_class_weights("balanced", hard_labels([0, [0.6, 0.4, 0.0], [0, 0, 1.0], 1]),
                                 LMSYS.class_names) == pytest.approx([4 / 6, 4 / 3, 4 / 3])


def write(path, rows, columns=COLUMNS):
    pd.DataFrame(rows, columns=columns).to_csv(path, index=False)
    return path


def test_soft_rows_are_kept_with_soft_labels_and_dropped_without(tmp_path):
    path = write(tmp_path / "train.csv", [
        ("1", '["p"]', '["a"]', '["b"]', 1, 0, 0),
        ("2", '["p2"]', '["a"]', '["b"]', 0.25, 0.5, 0.25),
        ("3", '["p3"]', '["a"]', '["b"]', 0.5, 0.5, 0.5)])  # sums to 1.5: neither label nor target
    assert list(load_arena_csv(path, task=LMSYS).frame["id"]) == ["1"]
    data = load_arena_csv(path, task=LMSYS, soft_columns=())
    assert list(data.frame["id"]) == ["1", "2"] and data.skipped_ids == ["3"]
    assert data.frame["target"].tolist() == [None, [0.25, 0.5, 0.25]] and data.frame["label"].tolist() == [0, 1]


def test_teacher_columns_give_the_target_where_filled(tmp_path):
    columns = [*COLUMNS, "t_a", "t_b", "t_tie"]
    path = write(tmp_path / "train.csv", [("1", '["p"]', '["a"]', '["b"]', 1, 0, 0, 0.2, 0.7, 0.1),
                                          ("2", '["q"]', '["a"]', '["b"]', 0, 0, 1, "", "", "")], columns)
    data = load_arena_csv(path, task=LMSYS, soft_columns=("t_a", "t_b", "t_tie"))
    assert data.frame["target"][0] == pytest.approx([0.2, 0.7, 0.1]) and data.frame["target"][1] is None
    assert data.frame["label"].tolist() == [1, 2]
    with pytest.raises(ValueError, match=r"missing columns \['t_x'\]"):
        load_arena_csv(path, task=LMSYS, soft_columns=("t_a", "t_b", "t_x"))


def test_pseudo_labels_join_test_rows_by_id_and_refuse_unknown_ids(tmp_path):
    test = write(tmp_path / "test.csv", [("7", '["p"]', '["a"]', '["b"]'), ("8", '["q"]', '["c"]', '["d"]')],
                 COLUMNS[:4])
    sub = write(tmp_path / "submission.csv", [("8", 0.1, 0.6, 0.3)], ["id", *LMSYS.class_names])
    rows = pseudo_labels(sub, test, LMSYS)
    assert rows["id"].tolist() == ["8"] and rows["response_a"].tolist() == [["c"]]
    assert rows["target"][0] == pytest.approx([0.1, 0.6, 0.3]) and rows["label"].tolist() == [1]
    bad = write(tmp_path / "bad.csv", [("8", 0.1, 0.6, 0.3), ("99", 0.3, 0.3, 0.4)], ["id", *LMSYS.class_names])
    with pytest.raises(ValueError, match=r"1 id\(s\) are not in .*test.csv: \['99'\]"):
        pseudo_labels(bad, test, LMSYS)
    odd = write(tmp_path / "odd.csv", [("8", 0.9, 0.6, 0.3)], ["id", *LMSYS.class_names])
    with pytest.raises(ValueError, match="id=8.*summing to 1"):
        pseudo_labels(odd, test, LMSYS)


@pytest.mark.parametrize("loop", ["trainer", "fast"])
def test_soft_labels_change_what_the_model_learns_in_both_loops(tmp_path, tiny_checkpoint, loop):
    """A teacher that leans to a tie on every row (0.2, 0.2, 0.6): trained on its soft labels the model predicts
    ties more than on the one-hot labels alone, and differently from training on the teacher's argmax as one-hot
    labels (the test fails if soft_label_columns is ignored or its probabilities are rounded to a class)."""
    from classifier_fixtures import ALL_LINEAR

    data = write_synthetic_competition(tmp_path / "data", n_train=60, n_test=4, seed=3)
    train = pd.read_csv(data["train"]).assign(t_a=0.2, t_b=0.2, t_tie=0.6)
    train.to_csv(tmp_path / "train.csv", index=False)
    train.assign(winner_model_a=0, winner_model_b=0, winner_tie=1).to_csv(tmp_path / "argmax.csv", index=False)
    cfg = dict(max_length=48, n_splits=4, per_device_train_batch_size=8, gradient_accumulation_steps=1, lr=2e-3,
               freeze_layers=0, target_modules=ALL_LINEAR[:3], gradient_checkpointing=False, eval_strategy="no",
               optim_type="adamw_torch", warmup_steps=0, logging_steps=5, train_loop=loop)
    soft = dict(soft_labels=True, soft_label_columns=("t_a", "t_b", "t_tie"))
    probs = {}
    for name, csv, extra in (("hard", "train.csv", {}), ("soft", "train.csv", soft), ("argmax", "argmax.csv", {})):
        out = tmp_path / name
        metrics = run_training(TrainConfig(**cfg, **extra), train_csv=tmp_path / csv, base=tiny_checkpoint,
                               adapter_dir=out / "adapter", checkpoint_dir=out / "ckpt", report_dir=out)
        assert metrics["n_soft"] == (45 if extra else 0)
        probs[name] = pd.read_csv(out / "val_predictions.csv")[list(LMSYS.class_names)].to_numpy()
    assert probs["soft"][:, 2].mean() > probs["hard"][:, 2].mean() + 0.05, probs
    assert abs(probs["soft"] - probs["argmax"]).max() > 0.1, probs
    assert abs(probs["soft"][:, 2].mean() - 0.6) < 0.1  # it learns the teacher's 0.6 (measured 0.61; argmax: 0.83)


def test_a_run_mounts_extra_files_and_pseudo_labels_from_datasets_and_reports_the_counts(tmp_path, tiny_checkpoint,
                                                                                       monkeypatch):
    from classifier_fixtures import ALL_LINEAR

    data = write_synthetic_competition(tmp_path / "comp", n_train=40, n_test=6, seed=4)
    more = write_synthetic_competition(tmp_path / "more", n_train=20, n_test=1, seed=9)
    extra = pd.concat([pd.read_csv(more["train"]), pd.read_csv(data["train"]).head(3)])  # 3 competition rows
    mount = tmp_path / "input" / "datasets" / "me" / "extra-rows"
    mount.mkdir(parents=True)
    extra.to_csv(mount / "extra.csv", index=False)
    ids = pd.read_csv(data["test"])["id"].astype(str)
    pd.DataFrame({"id": ids, "winner_model_a": 0.2, "winner_model_b": 0.5, "winner_tie": 0.3}).to_csv(
        mount / "submission.csv", index=False)
    monkeypatch.setenv("KAGFLOW_INPUT_ROOT", str(tmp_path / "input"))
    cfg = TrainConfig(max_length=48, n_splits=4, per_device_train_batch_size=8, gradient_accumulation_steps=1,
                      freeze_layers=0, target_modules=ALL_LINEAR[:3], gradient_checkpointing=False,
                      eval_strategy="no", optim_type="adamw_torch", warmup_steps=0, logging_steps=5,
                      extra_train_files=("me/extra-rows/extra.csv",),
                      pseudo_label_files=("me/extra-rows/submission.csv",), swap_augmentation=0.5)
    metrics = run_training(cfg, train_csv=data["train"], base=tiny_checkpoint, adapter_dir=tmp_path / "adapter",
                           checkpoint_dir=tmp_path / "ckpt", report_dir=tmp_path / "out")
    assert metrics["extra_dropped_competition"] == 3 and metrics["n_extra"] == 20 + 6
    assert metrics["n_train"] == 30 + 26 and metrics["n"] == 10 and metrics["n_soft"] == 6
    assert 0 < metrics["n_swapped"] < 56
    val = pd.read_csv(tmp_path / "out" / "val_predictions.csv", dtype={"id": str})
    assert set(val["id"]) <= set(pd.read_csv(data["train"], dtype={"id": str})["id"])  # validation: competition only


def test_dataset_files_are_found_in_either_mount_layout_or_refused_with_the_fix(tmp_path):
    from kagflow.classifier.paths import InputNotFoundError, find_dataset_file

    classic = tmp_path / "extra-rows" / "part" / "rows.csv"
    classic.parent.mkdir(parents=True)
    classic.write_text("id\n")
    assert find_dataset_file("me/extra-rows/part/rows.csv", root=tmp_path) == classic
    with pytest.raises(InputNotFoundError, match="add dataset me/other-rows to the train kernel's sources"):
        find_dataset_file("me/other-rows/rows.csv", root=tmp_path)
