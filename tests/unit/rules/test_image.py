"""Target image model: the shipped Kaggle snapshot, pip arguments, probe round trip."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from packaging.version import Version

from kagflow.errors import MissingFileError, WheelsError
from kagflow.rules.image import (
    TargetImage,
    current_image,
    image_from_probe_output,
    load_image,
    probe_notebook_source,
    save_image,
)


def test_the_kaggle_snapshot_describes_a_py312_cuda12_manylinux_image():
    image = load_image("kaggle-gpu")
    assert image.python_version == "3.12" and image.abi == "cp312" and image.implementation == "cp"
    assert image.cuda.startswith("12.")
    # pip compares manylinux_2_N exactly: every N from the image's glibc down, plus the legacy aliases
    assert image.platforms[0] == "manylinux_2_35_x86_64"
    for tag in ("manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64", "manylinux1_x86_64"):
        assert tag in image.platforms
    assert not any(p.startswith("linux_") for p in image.platforms)
    assert Version(image.has("transformers")) >= Version("5.0.0")
    assert image.has("torch").startswith("2.") and image.has("bitsandbytes") is None
    assert "backend-info" in image.source["packages"] and "docker-python" in image.source["kaggle_layer"]
    assert image.exact is False and image.recorded


def test_pip_arguments_and_constraints():
    image = TargetImage(name="t", python_version="3.12", abis=("cp312", "none"),
                        platforms=("manylinux_2_35_x86_64", "manylinux2014_x86_64"),
                        installed={"Torch": "2.11.0+cu128", "beta": "1.0"})
    assert image.pip_target_args() == ["--python-version", "3.12", "--implementation", "cp", "--abi", "cp312",
                                       "--abi", "none", "--platform", "manylinux_2_35_x86_64",
                                       "--platform", "manylinux2014_x86_64"]
    assert image.constraints() == ["beta==1.0", "torch==2.11.0"]           # local label dropped for the index
    assert image.has("TORCH") == "2.11.0+cu128"


def test_probe_source_records_this_machine_and_reads_back(tmp_path):
    out = tmp_path / "working" / "image.json"
    run = subprocess.run([sys.executable, "-c", probe_notebook_source(str(out))], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert "kagflow image probe" in run.stdout
    raw = json.loads(out.read_text())
    assert raw["python_full_version"].startswith(f"{sys.version_info.major}.{sys.version_info.minor}")

    image = image_from_probe_output(out)
    here = current_image()
    assert image.exact and image.python_version == here.python_version
    assert image.abis[0] == here.abis[0]
    assert image.platforms == tuple(p for p in here.platforms if not p.startswith("linux_"))
    assert image.has("pytest") == here.has("pytest")

    saved = save_image(image, tmp_path / "kaggle-image.json")
    assert load_image(saved) == image
    assert load_image(out) == image                   # the raw probe file loads as well
    assert image.requires["pytest"] and load_image(saved).requires == image.requires


def test_unknown_or_broken_images_are_clear_errors(tmp_path):
    with pytest.raises(MissingFileError) as err:
        load_image("kaggle-tpu")
    assert "kagflow image probe" in err.value.hint
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"format": "kagflow-target-image/1", "name": "x", "python_version": "3.12"}))
    with pytest.raises(WheelsError, match="not a kagflow target image"):
        load_image(bad)
    with pytest.raises(MissingFileError):
        image_from_probe_output(tmp_path / "nothing.json")


def test_this_machine_counts_its_own_packages_unless_told_otherwise():
    assert current_image().has("pytest") is not None
    assert current_image(installed={}).installed == {}
