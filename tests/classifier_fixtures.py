"""Session fixtures for the classifier and notebook tests: tiny checkpoint, synthetic competition,
a Kaggle-like sandbox, and the train/infer notebooks run once through nbclient.

Load with ``pytest_plugins = ["classifier_fixtures"]`` in a test module: as one plugin, each session
fixture is built once for all modules (pytest auto-loads only conftest.py, which is not ours).
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

from kagflow.classifier.synth import write_synthetic_competition
from kagflow.classifier.tiny import make_tiny_checkpoint
from kagflow.local.run.image import kernel_image
from kagflow.local.run.runner import run_notebook_in_sandbox
from kagflow.notebooks.render import render_notebook
from offline_wheels import OFFLINE_PACKAGES, offline_wheelhouse

COMPETITION = "llm-classification-finetuning"
BASE_SOURCE = "kagflow/gemma2-tiny/transformers/base/1"
ADAPTER_SOURCE = "kagflow/gemma2-tiny-adapter/transformers/peft-lora-classifier/1"
ALL_LINEAR = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
# The tiny recipe: 2,000 synthetic rows, 5 epochs, all linear layers, lr 1e-3 (about 45 s on one core).
TINY_TRAIN_PARAMS = {
    "competition": COMPETITION, "base_model_source": BASE_SOURCE, "max_length": 128, "n_epochs": 5,
    "lr": 1e-3, "per_device_train_batch_size": 16, "gradient_accumulation_steps": 1, "freeze_layers": 0,
    "target_modules": ALL_LINEAR, "gradient_checkpointing": False, "eval_strategy": "no", "logging_steps": 100,
    "save_steps": 200,
}
TINY_INFER_PARAMS = {
    "competition": COMPETITION, "base_model_source": BASE_SOURCE, "adapter_model_source": ADAPTER_SOURCE,
    "max_length": 128, "batch_size": 16, "tta": True,
}
# One thread: on a busy 2-core box, two OpenMP threads contend and a step gets ~20x slower.
KERNEL_ENV = {"OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}


@dataclass(frozen=True)
class Sandbox:
    input_root: Path
    working_root: Path
    solution: Path


@dataclass(frozen=True)
class NotebookRun:
    notebook: Path
    executed: Path
    working_root: Path


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    return make_tiny_checkpoint(tmp_path_factory.mktemp("tiny") / "gemma2-tiny")


@pytest.fixture(scope="session")
def synthetic_competition(tmp_path_factory) -> dict:
    return write_synthetic_competition(tmp_path_factory.mktemp("synthetic"), n_train=2000, n_test=200, seed=0)


@pytest.fixture(scope="session")
def wheels_dataset(tmp_path_factory) -> Path:
    """The wheels dataset a project builds for the local Kaggle image: peft, bitsandbytes, the classifier."""
    from importlib import metadata

    from kagflow.wheels.build import build_wheels
    from kagflow.wheels.classifier import build_classifier_wheel

    root = tmp_path_factory.mktemp("wheels")
    classifier, pin = build_classifier_wheel(root / "classifier")
    build_wheels([*(f"{n}=={metadata.version(n)}" for n in OFFLINE_PACKAGES), pin], kernel_image().target(),
                 root / "dataset", owner="kagflow", title="kagflow offline wheels", cache_dir=root / "cache",
                 find_links=[offline_wheelhouse(root / "house"), classifier.parent], no_index=True)
    return root / "dataset"


@pytest.fixture(scope="session")
def sandbox(tmp_path_factory, tiny_checkpoint, synthetic_competition, wheels_dataset) -> Sandbox:
    """input/competitions/<slug>/ (public files only), input/models/<handle>/ (the base),
    input/datasets/kagflow/<wheels>/ (the wheels dataset), working/."""
    root = tmp_path_factory.mktemp("kaggle")
    shutil.copytree(wheels_dataset, root / "input" / "datasets" / "kagflow" / "kagflow-offline-wheels")
    competition = root / "input" / "competitions" / COMPETITION
    competition.mkdir(parents=True)
    for name in ("train", "test", "sample_submission"):
        shutil.copy(synthetic_competition[name], competition / f"{name}.csv")
    shutil.copytree(tiny_checkpoint, root / "input" / "models" / BASE_SOURCE)
    return Sandbox(root / "input", root / "working", synthetic_competition["solution"])


def run_notebook(nb: Path, sandbox: Path, timeout: float) -> Path:
    """Run ``nb`` through the local runner in ``sandbox``; return the executed notebook (the run must complete)."""
    status, failure, log = run_notebook_in_sandbox(nb, sandbox, timeout=timeout, enable_internet=False, env=KERNEL_ENV,
                                                   python=kernel_image().python)
    assert status == "COMPLETE", f"{nb.name}: {failure}\n{log.read_text()[-3000:]}"
    return sandbox / ".kagflow" / "executed.ipynb"


@pytest.fixture(scope="session")
def trained_run(sandbox) -> NotebookRun:
    """The train notebook rendered and executed on the tiny model and synthetic data."""
    nb = render_notebook("train", TINY_TRAIN_PARAMS, sandbox.working_root.parent / "nb" / "train.ipynb")
    return NotebookRun(nb, run_notebook(nb, sandbox.working_root.parent, 600), sandbox.working_root)


@pytest.fixture(scope="session")
def adapter_dir(trained_run) -> Path:
    return trained_run.working_root / "gemma2-adapter"


@pytest.fixture(scope="session")
def inference_run(sandbox, trained_run, adapter_dir, tmp_path_factory) -> NotebookRun:
    """The infer notebook on the trained adapter, mounted in the classic layout, with TTA."""
    handle = ADAPTER_SOURCE.split("/")
    shutil.copytree(adapter_dir, sandbox.input_root.joinpath(*handle[1:]))
    root = tmp_path_factory.mktemp("infer")
    (root / "input").symlink_to(sandbox.input_root)  # the same inputs, in another run's sandbox
    nb = render_notebook("infer", TINY_INFER_PARAMS, root / "nb" / "infer.ipynb")
    return NotebookRun(nb, run_notebook(nb, root, 300), root / "working")


@pytest.fixture(scope="session")
def tiny_classifier(tiny_checkpoint, adapter_dir):
    """(model, tokenizer): the trained tiny classifier loaded in this process, 4-bit base + adapter."""
    from kagflow.classifier.model import load_for_inference

    return load_for_inference(tiny_checkpoint, adapter_dir)


def read_metrics(run: NotebookRun) -> dict:
    return json.loads((run.working_root / "metrics.json").read_text())


@pytest.fixture
def one_torch_thread():
    """In-process torch on one thread (see KERNEL_ENV), restored after the test."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
