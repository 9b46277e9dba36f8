"""The local Kaggle image: built from the snapshot, without what Kaggle lacks, cached by content."""

from __future__ import annotations

import os
import subprocess

from kagflow.local.run import image as ki
from kagflow.rules.image import TargetImage, load_image


def _snapshot(**installed: str) -> TargetImage:
    return TargetImage(name="snap", python_version="3.12", abis=("cp312",), platforms=("manylinux_2_35_x86_64",),
                       installed=installed, python_full_version="3.12.13", cuda="12.8")


def test_the_spec_pins_the_snapshots_versions_cpu_torch_and_nothing_kaggle_lacks():
    snap = _snapshot(torch="2.11.0+cu128", transformers="5.9.0", peft="0.19.1", numpy="2.0.2", sympy="1.14.0",
                     setuptools="75.2.0", **{"nvidia-cublas-cu12": "12.8.4.1"})
    cpu = ki.spec_for(snap, gpu=False)
    assert cpu.pins == ("torch==2.13.0", "transformers==5.9.0", "peft==0.19.1", "numpy==2.0.2")
    assert cpu.constraints == ("sympy==1.14.0",)  # dependencies held; torch's family and packaging tools free
    assert not any(p.startswith("bitsandbytes") for p in cpu.pins)
    gpu = ki.spec_for(snap, gpu=True)
    assert gpu.pins[0] == "torch==2.11.0" and gpu.digest() != cpu.digest()
    assert ki.spec_for(snap, gpu=False).digest() == cpu.digest()  # the cache key is the content


def test_a_pin_this_machine_cannot_have_moves_to_the_nearest_version(monkeypatch):
    available = {"transformers": ["5.17.0", "5.10.0", "5.8.0", "4.57.0"], "numpy": ["2.0.2", "1.26.4"]}
    monkeypatch.setattr(ki, "_available", lambda python, name: available.get(name, []))
    pins, notes = ki._nearest_pins("python", ["transformers==5.9.0", "numpy==2.0.2", "unknown==1.0"])
    assert pins == ["transformers==5.8.0", "numpy==2.0.2", "unknown==1.0"]
    assert notes == ["transformers 5.8.0 (Kaggle's 5.9.0 is not available here)"]


def test_the_built_image_is_reused_and_lacks_what_kaggle_lacks(tmp_path):
    image = ki.kernel_image()
    again = ki.kernel_image()
    assert again.path == image.path and again.build_seconds == 0.0
    assert image.path.parent == ki.cache_root() and image.path.name == image.spec.digest()
    code = ("import importlib.util as u, peft, transformers; "
            "print(u.find_spec('bitsandbytes'), u.find_spec('kagflow_classifier'), u.find_spec('kagflow'), "
            "peft.__version__, transformers.__version__)")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # as a kernel runs it
    out = subprocess.run([image.python, "-c", code], capture_output=True, text=True, check=True, env=env,
                         cwd=tmp_path).stdout.split()
    snapshot = load_image("kaggle-gpu")
    assert out == ["None", "None", "None", snapshot.has("peft"), snapshot.has("transformers")]
    target = image.target()
    assert target.has("torch") and target.has("bitsandbytes") is None and target.has("ipykernel")


PIP_OUTPUT = """Collecting torch==2.13.0
  Using cached torch-2.13.0-cp311-cp311-manylinux_2_28_x86_64.whl (190.1 MB)
Collecting transformers==5.9.0
  Downloading transformers-5.9.0-py3-none-any.whl (11.0 MB)
Requirement already satisfied: pip in ./lib/python3.11/site-packages (25.2)
Collecting numpy==2.0.2
Installing collected packages: numpy, torch, transformers
Successfully installed numpy-2.0.2 torch-2.13.0 transformers-5.9.0
"""


def test_the_build_shows_pips_progress_as_it_comes(tmp_path):
    import io
    import sys

    from kagflow.progress import Watch

    out = io.StringIO()
    watch = Watch("local Kaggle image", stream=out, clock=lambda: 0.0)
    watch.state("pip install")
    seen = []

    def progress(line: str) -> None:
        pip_progress(line)
        seen.append(watch.words)

    pip_progress = ki.PipProgress(watch)
    script = tmp_path / "pip.py"
    script.write_text(f"import sys\nfor line in {PIP_OUTPUT!r}.splitlines(True):\n"
                      "    sys.stdout.write(line); sys.stdout.flush()\n")
    done = ki._pip([sys.executable, str(script)], progress)
    watch.close()
    assert done.returncode == 0 and done.stdout == PIP_OUTPUT  # the whole output kept for an error's tail
    assert [w for i, w in enumerate(seen) if w and w not in seen[:i]] == [
        "1 package(s) collected, the last torch==2.13.0", "2 package(s) collected, the last transformers==5.9.0",
        "3 package(s) collected, the last numpy==2.0.2", "installing 3 package(s)", "3 package(s) installed"]
    assert (watch.done, watch.total) == (3, 3)
    assert out.getvalue().splitlines() == ["local Kaggle image: pip install 0m00s",
                                           "local Kaggle image: pip install 0m00s, 3 package(s) installed"]


def test_text_classification_notebooks_find_what_kaggles_image_has(tmp_path):
    """The 4th-place LMSYS inference does `from datasets import Dataset`: Kaggle's image has it, so the rehearsal
    must too; each such package at the snapshot's version."""
    image = ki.kernel_image()
    names = ("datasets", "sentencepiece", "seaborn", "polars", "lightgbm", "nltk", "sentence_transformers", "scipy")
    code = ("import importlib.metadata as m, " + ", ".join(names) + "\nfrom datasets import Dataset\n"
            "print(Dataset.from_dict({'id': [1]}).num_rows, m.version('datasets'), m.version('polars'))")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    out = subprocess.run([image.python, "-c", code], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    snapshot = load_image("kaggle-gpu")
    assert out.stdout.split() == ["1", snapshot.has("datasets"), snapshot.has("polars")]


def test_the_comparison_accounts_for_every_package_of_kaggles_image():
    snapshot = load_image("kaggle-gpu")
    assert all(snapshot.has(name) for name in ki.KERNEL_PACKAGES)  # each pinned to Kaggle's version
    compared = ki.compare(snapshot, ["torch", "datasets", "numpy"])
    missing = [n for names in compared["missing"].values() for n in names]
    assert compared["installed"] == 3 and len(missing) == compared["kaggle"] - 3 == len(snapshot.installed) - 3
    reason = {n: why for why, names in compared["missing"].items() for n in names}
    assert reason["tensorflow"].startswith("TensorFlow") and reason["cudf-cu12"].startswith("CUDA-only")
    assert reason["xgboost"].startswith("heavier extras") and "datasets" not in reason
