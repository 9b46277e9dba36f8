"""[train] class_weights: each row's loss weighted by its class, in the fast loop (fit.lora_train_step /
fit.fit_lora) and the HF Trainer (compute_loss_func), typed in kagflow.toml and checked."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from kagflow.classifier.fit import lora_train_step
from kagflow.classifier.loss import loss_sum, resolve_class_weights, trainer_loss
from kagflow.classifier.task import Task


class Logits(torch.nn.Module):
    """A model whose logits are a learned table indexed by each row's first token."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.table = torch.nn.Parameter(torch.randn(8, 3))

    def forward(self, input_ids, attention_mask=None):
        return type("Out", (), {"logits": self.table[input_ids[:, 0]]})()


def _batch(rows, labels):
    ids = torch.tensor([[r, 1] for r in rows])
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": torch.tensor(labels)}


def test_balanced_weights_follow_the_class_counts():
    labels = [0] * 6 + [1] * 3 + [2] * 1
    names = Task().class_names
    w = resolve_class_weights("balanced", labels, names)
    assert w == pytest.approx([10 / 18, 10 / 9, 10 / 3])
    assert sum(w[y] for y in labels) / len(labels) == pytest.approx(1.0)  # the mean row weight stays 1
    assert resolve_class_weights((), labels, names) is None and resolve_class_weights("", labels, names) is None
    assert resolve_class_weights((1, 2, 3), labels, names) == [1.0, 2.0, 3.0]
    for bad in ("balance", (1.0, 2.0), (1.0, 0.0, 1.0)):
        with pytest.raises(ValueError, match="class_weights"):
            resolve_class_weights(bad, labels, names)
    with pytest.raises(ValueError, match="every class"):
        resolve_class_weights("balanced", [0, 1, 1], names)


def test_class_weights_are_one_per_label_of_the_task():
    """A 5-class task takes 5 weights, named in the refusal; "balanced" names the labels without rows."""
    names = ("a", "b", "c", "d", "e")
    labels = [0, 0, 1, 2, 3, 4, 4, 4]
    assert resolve_class_weights("balanced", labels, names) == pytest.approx([8 / 10, 8 / 5, 8 / 5, 8 / 5, 8 / 15])
    with pytest.raises(ValueError, match=r"use 5 positive numbers \(a, b, c, d, e\)"):
        resolve_class_weights((1, 2, 3), labels, names)
    with pytest.raises(ValueError, match=r"\['d', 'e'\] have none"):
        resolve_class_weights("balanced", [0, 1, 2], names)


def test_weighted_loss_is_the_row_weighted_cross_entropy():
    logits, labels = torch.randn(5, 3), torch.tensor([0, 1, 2, 2, 0])
    ce = F.cross_entropy(logits, labels, reduction="none")
    assert loss_sum(logits, labels).item() == pytest.approx(ce.sum().item(), rel=1e-6)
    w = torch.tensor([1.0, 2.0, 4.0])
    assert loss_sum(logits, labels, w).item() == pytest.approx((ce * w[labels]).sum().item(), rel=1e-6)


def _step(weights, micro):
    model = Logits()
    opt = torch.optim.SGD(model.parameters(), lr=1.0)  # the update is minus the gradient
    rows, labels = [0, 1, 2, 3, 4, 5], [0, 0, 0, 1, 2, 2]
    batches = [_batch(rows[i:i + micro], labels[i:i + micro]) for i in range(0, len(rows), micro)]
    loss = lora_train_step(model, batches, opt, autocast_dtype=None, max_grad_norm=None,
                           class_weights=None if weights is None else torch.tensor(weights))
    ce = F.cross_entropy(Logits().table[torch.tensor(rows)], torch.tensor(labels), reduction="none").detach()
    return loss.item(), ce, torch.tensor(labels), model.table.detach()


def test_fast_loop_step_weights_each_row_by_its_class():
    plain, ce, labels, _ = _step(None, 6)
    assert plain == pytest.approx(ce.mean().item(), rel=1e-6)
    ones, *_ = _step([1.0, 1.0, 1.0], 6)
    assert ones == pytest.approx(plain, rel=1e-6)
    w = torch.tensor([0.5, 2.0, 3.0])
    weighted, _, _, after_one = _step(w.tolist(), 6)
    assert weighted == pytest.approx((ce * w[labels]).mean().item(), rel=1e-6)
    assert weighted != pytest.approx(plain, rel=1e-3)
    split, _, _, after_split = _step(w.tolist(), 2)  # micro-batches: the same loss and gradient
    assert split == pytest.approx(weighted, rel=1e-6) and torch.allclose(after_one, after_split, atol=1e-6)


def test_trainer_loss_matches_the_fast_loop_and_divides_by_the_accumulated_rows():
    logits, labels, w = torch.randn(4, 3), torch.tensor([0, 1, 2, 1]), torch.tensor([1.0, 2.0, 0.5])
    compute = trainer_loss(w)
    expected = loss_sum(logits, labels, w).item()
    assert compute({"logits": logits}, labels).item() == pytest.approx(expected / 4, rel=1e-6)
    assert compute({"logits": logits}, labels, num_items_in_batch=8).item() == pytest.approx(expected / 8, rel=1e-6)


def test_make_trainer_uses_the_weighted_loss_only_when_asked(tmp_path):
    from kagflow.classifier.config import TrainConfig
    from kagflow.classifier.train import make_trainer

    model = torch.nn.Linear(2, 3)
    rows = [{"input_ids": [1, 2], "labels": y} for y in (0, 0, 1, 2)]
    plain = make_trainer(TrainConfig(eval_strategy="no"), model, None, rows, [], tmp_path, "adamw_torch")
    assert plain.compute_loss_func is None
    balanced = make_trainer(TrainConfig(eval_strategy="no", class_weights="balanced"), model, None, rows, [],
                            tmp_path, "adamw_torch")
    logits, labels = torch.randn(4, 3), torch.tensor([0, 0, 1, 2])
    w = torch.tensor([4 / 6, 4 / 3, 4 / 3])
    assert balanced.compute_loss_func({"logits": logits}, labels, num_items_in_batch=4).item() == \
        pytest.approx(loss_sum(logits, labels, w).item() / 4, rel=1e-5)


def test_class_weights_in_kagflow_toml_are_typed_and_checked(project):
    from kagflow.errors import ConfigError
    from kagflow.project.config import load_config
    from kagflow.workflow.check import check_project

    text = project.read_text()
    project.write_text(text.replace("class_weights = []", "class_weights = [1, 2.5, 1]"))
    assert load_config(project).train.class_weights == (1.0, 2.5, 1.0)
    project.write_text(text.replace("class_weights = []", 'class_weights = "balanced"'))
    assert load_config(project).train.class_weights == "balanced"
    project.write_text(text.replace("class_weights = []", "class_weights = true"))
    with pytest.raises(ConfigError, match="is not a string or a list of numbers"):
        load_config(project)
    project.write_text(text.replace("class_weights = []", 'class_weights = "balance"'))
    problems = [p for p in check_project(load_config(project)) if "class_weights" in p.field]
    assert problems and "balanced" in problems[0].render()
