"""Notebook rendering, and the train and infer notebooks executed end to end through nbclient."""

from __future__ import annotations

import ast
import json

import nbformat
import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import log_loss

from kagflow.classifier.submission import check_submission
from kagflow.errors import KagflowError
from kagflow.local.run.runner import run_notebook_in_sandbox
from kagflow.notebooks.render import DEFAULT_PARAMS, MAX_CELL_LINES, render_notebook

from classifier_fixtures import TINY_TRAIN_PARAMS, read_metrics

pytest_plugins = ["classifier_fixtures"]  # shared session fixtures: the tiny model is trained once

LABELS = ["winner_model_a", "winner_model_b", "winner_tie"]


def _parameters_cell(nb):
    cells = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(cells) == 1
    return cells[0]


def _assigned(source: str) -> dict:
    return {node.targets[0].id: ast.literal_eval(node.value)
            for node in ast.parse(source).body if isinstance(node, ast.Assign)}


@pytest.mark.parametrize("kind", ["train", "infer"])
def test_rendered_notebook_is_valid_with_kernelspec_and_parameters(kind, tmp_path):
    path = render_notebook(kind, {"max_length": 64}, tmp_path / f"{kind}.ipynb")
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    assert nb.metadata.kernelspec.name == "python3"
    params = _assigned(_parameters_cell(nb).source)
    assert params == {**DEFAULT_PARAMS[kind], "max_length": 64}
    for cell in nb.cells:
        if cell.cell_type == "code":
            ast.parse(cell.source)  # every code cell is valid Python


def test_seed_recipe_defaults():
    train = DEFAULT_PARAMS["train"]
    assert {k: train[k] for k in ("max_length", "n_splits", "fold_idx", "optim_type", "per_device_train_batch_size",
                                  "gradient_accumulation_steps", "per_device_eval_batch_size", "n_epochs",
                                  "freeze_layers", "lr", "warmup_steps", "lora_r", "lora_alpha", "lora_dropout",
                                  "target_modules", "seed", "attn_implementation")} == {
        "max_length": 1024, "n_splits": 5, "fold_idx": 0, "optim_type": "auto",  # the Trainer: the seed's adamw_8bit
        "per_device_train_batch_size": 3, "gradient_accumulation_steps": 2, "per_device_eval_batch_size": 8,
        "n_epochs": 1, "freeze_layers": 16, "lr": 2e-4, "warmup_steps": 20, "lora_r": 64, "lora_alpha": 16,
        "lora_dropout": 0.05, "seed": 42,  # the seed's recipe with the LoRA that fits 12 h on T4 x2 (RESULTS.md)
        "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
        "attn_implementation": "auto"}  # "auto" is the seed's eager for Gemma 2 (test_classifier_families)
    assert DEFAULT_PARAMS["infer"]["max_length"] == 2048


@pytest.mark.parametrize("kind", ["train", "infer"])
def test_rendered_notebooks_are_readable_and_import_the_classifier_wheel(kind, tmp_path):
    nb = nbformat.read(render_notebook(kind, {}, tmp_path / "n.ipynb"), as_version=4)
    assert max(len(c.source.splitlines()) for c in nb.cells) <= MAX_CELL_LINES
    assert max(len(line) for c in nb.cells for line in c.source.splitlines()) <= 200  # was one 28,000-character line
    code = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    assert "PACKAGE_SOURCES" not in code and "def install_from_wheels_dataset" not in code  # nothing inlined
    assert "from kagflow_offline_install import install_from_wheels_dataset" in code
    assert "from kagflow_classifier import paths" in code


def test_a_project_template_overrides_the_packaged_one(tmp_path):
    from kagflow.errors import KagflowError

    own = tmp_path / "templates"
    own.mkdir()
    (own / "infer.ipynb.j2").write_text(
        '{% import "_cells.j2" as cells %}\n{"cells": [{% call cells.markdown() %}# my own {{ kind }}{% endcall %}], '
        '"metadata": {{ cells.metadata(kernelspec, kind, version) }}, "nbformat": 4, "nbformat_minor": 5}')
    nb = nbformat.read(render_notebook("infer", {}, tmp_path / "i.ipynb", template_dir=own), as_version=4)
    assert [c.source for c in nb.cells] == ["# my own infer"]  # _cells.j2 still comes from the package
    train = nbformat.read(render_notebook("train", {}, tmp_path / "t.ipynb", template_dir=own), as_version=4)
    assert len(train.cells) > 3  # no project train template: the packaged one
    (own / "infer.ipynb.j2").write_text(
        '{% import "_cells.j2" as cells %}\n{"cells": [{% call cells.code() %}' + "x = 1\n" * 81 + '{% endcall %}], '
        '"metadata": {{ cells.metadata(kernelspec, kind, version) }}, "nbformat": 4, "nbformat_minor": 5}')
    with pytest.raises(KagflowError, match="cell 0 of the infer notebook has 81 lines"):
        render_notebook("infer", {}, tmp_path / "i.ipynb", template_dir=own)


def test_unknown_parameter_and_kind_are_refused(tmp_path):
    with pytest.raises(KagflowError, match="Unknown train notebook parameters: lerning_rate"):
        render_notebook("train", {"lerning_rate": 1e-3}, tmp_path / "t.ipynb")
    with pytest.raises(KagflowError, match="Unknown notebook kind"):
        render_notebook("score", {}, tmp_path / "s.ipynb")
    with pytest.raises(KagflowError, match="not a plain literal"):
        render_notebook("train", {"lr": object()}, tmp_path / "t.ipynb")


def test_a_failing_cell_ends_the_run_in_error_with_the_exception(tmp_path):
    nb = nbformat.v4.new_notebook(metadata={"kernelspec": {"name": "python3", "display_name": "Python 3",
                                                           "language": "python"}})
    nb.cells = [nbformat.v4.new_code_cell("import os\nprint(os.environ['KAGFLOW_INPUT_ROOT'], os.getcwd())"),
                nbformat.v4.new_code_cell("raise ValueError('no test.csv')")]
    path = tmp_path / "fail.ipynb"
    nbformat.write(nb, path)
    status, failure, log = run_notebook_in_sandbox(path, tmp_path / "sb", timeout=60, enable_internet=False)
    assert (status, failure) == ("ERROR", "ValueError: no test.csv")
    executed = nbformat.read(tmp_path / "sb" / ".kagflow" / "executed.ipynb", as_version=4)
    assert executed.cells[1].outputs[0].ename == "ValueError"
    assert "ValueError: no test.csv" in log.read_text()


@pytest.mark.slow
def test_train_notebook_learns_the_signal(trained_run):
    metrics = read_metrics(trained_run)
    assert metrics["accuracy"] >= 0.9, metrics
    assert metrics["log_loss"] < 0.5
    assert metrics["n"] == 400 and metrics["n_train"] == 1600  # fold 0 of 5 over 2,000 rows
    assert len(metrics["confusion_matrix"]) == 3 and sum(map(sum, metrics["confusion_matrix"])) == 400
    assert metrics["config"]["target_modules"] == TINY_TRAIN_PARAMS["target_modules"]
    for name in ("confusion_matrix.png", "loss_curve.png"):  # the loss curve (train and validation) beside it
        assert (trained_run.working_root / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
    adapter = trained_run.working_root / "gemma2-adapter"
    for name in ("adapter_config.json", "adapter_model.safetensors", "tokenizer.json", "tokenizer_config.json"):
        assert (adapter / name).is_file(), name
    config = json.loads((adapter / "adapter_config.json").read_text())
    assert config["task_type"] == "SEQ_CLS" and config["r"] == 16
    assert set(config["target_modules"]) == set(TINY_TRAIN_PARAMS["target_modules"])
    assert not (trained_run.working_root / "checkpoints").exists()  # removed once the adapter is saved
    nb = nbformat.read(trained_run.executed, as_version=4)
    shown = [o for o in nb.cells[-1].outputs if o.get("output_type") == "display_data"]
    assert len(shown) == 2  # the confusion matrix and the loss curve


@pytest.mark.slow
def test_infer_notebook_writes_a_valid_submission(inference_run, sandbox):
    submission = pd.read_csv(inference_run.working_root / "submission.csv")
    test = pd.read_csv(sandbox.input_root / "competitions" / "llm-classification-finetuning" / "test.csv")
    assert list(submission.columns) == ["id", *LABELS]
    assert submission["id"].tolist() == test["id"].tolist()
    values = submission[LABELS].to_numpy()
    assert ((values >= 0) & (values <= 1)).all()
    assert np.abs(values.sum(axis=1) - 1).max() <= 1e-6
    assert check_submission(submission, test["id"].tolist()) == []
    solution = pd.read_csv(sandbox.solution).set_index("id").loc[submission["id"]]
    truth = solution[LABELS].to_numpy().argmax(axis=1)
    assert (values.argmax(axis=1) == truth).mean() >= 0.85
    assert log_loss(truth, values, labels=[0, 1, 2]) < 0.6  # uniform guessing scores 1.0986
