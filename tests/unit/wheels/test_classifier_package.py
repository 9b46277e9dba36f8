"""The classifier package stands alone: it ships to kernels as the top-level package of its own wheel."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from kagflow.wheels.classifier import SOURCE_DIR as CLASSIFIER_DIR
from kagflow.wheels.classifier import classifier_sources

# scipy (calibration's bounded search) is pinned in the local image as in Kaggle's; jinja2 (the prompt template)
# comes with torch, whose dependency it is, on both
ML_STACK = {"torch", "transformers", "peft", "bitsandbytes", "accelerate", "tokenizers", "safetensors", "numpy",
            "pandas", "sklearn", "matplotlib", "scipy", "jinja2"}


def _imports(source: str):
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            yield from ((alias.name.split(".")[0], 0) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            yield ((node.module or "").split(".")[0], node.level)


@pytest.mark.parametrize("relative", sorted(classifier_sources()))
def test_imports_only_the_stdlib_its_ml_stack_and_itself(relative):
    outside = {name for name, level in _imports(classifier_sources()[relative])
               if level == 0 and name not in sys.stdlib_module_names and name not in ML_STACK}
    assert not outside, f"{relative} imports {sorted(outside)}"


def test_sources_are_every_python_file_of_the_package():
    assert set(classifier_sources()) == {p.relative_to(CLASSIFIER_DIR).as_posix()
                                         for p in CLASSIFIER_DIR.rglob("*.py") if "__pycache__" not in p.parts}


def test_runs_as_a_renamed_top_level_package_and_paths_needs_no_ml_stack(tmp_path):
    package = tmp_path / "kagflow_classifier"
    for relative, source in classifier_sources().items():
        (package / relative).parent.mkdir(parents=True, exist_ok=True)
        (package / relative).write_text(source)
    code = ("import sys; import kagflow_classifier.paths, kagflow_classifier.config; "
            "assert 'torch' not in sys.modules and 'pandas' not in sys.modules; "
            "import kagflow_classifier.train, kagflow_classifier.infer; "
            "assert 'kagflow' not in sys.modules; print('ok')")
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True,
                         env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(tmp_path)})
    assert out.stdout.strip() == "ok", out.stderr
    assert Path(tmp_path / "kagflow_classifier" / "__init__.py").is_file()
