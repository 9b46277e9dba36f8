"""The classifier as a wheel: ``kagflow-classifier``, built from ``kagflow/classifier/`` as it is.

The notebooks import it as ``kagflow_classifier`` after the install cell has installed it, with
peft and bitsandbytes, from the wheels dataset. Its version is kagflow's plus a digest of the
sources (``0.1.0+src1a2b3c4d5e``): an edited classifier is a new wheel and a new dataset version.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import kagflow
from kagflow.wheels.wheelfile import write_wheel

SOURCE_DIR = Path(kagflow.__file__).parent / "classifier"
DIST_NAME = "kagflow-classifier"
IMPORT_NAME = "kagflow_classifier"
REQUIRES_PYTHON = ">=3.10"


def classifier_sources() -> dict[str, str]:
    """Relative path -> source of every module of kagflow/classifier."""
    return {p.relative_to(SOURCE_DIR).as_posix(): p.read_text(encoding="utf-8")
            for p in sorted(SOURCE_DIR.rglob("*.py")) if "__pycache__" not in p.parts}


def classifier_version(sources: dict[str, str] | None = None) -> str:
    sources = classifier_sources() if sources is None else sources
    digest = hashlib.sha256("".join(f"{k}\0{v}\0" for k, v in sorted(sources.items())).encode()).hexdigest()
    return f"{kagflow.__version__}+src{digest[:10]}"


def build_classifier_wheel(out_dir: Path) -> tuple[Path, str]:
    """Write the classifier wheel into ``out_dir`` (only it: older builds are removed); return
    ``(wheel path, "kagflow-classifier==<version>")``."""
    out_dir = Path(out_dir)
    sources = classifier_sources()
    version = classifier_version(sources)
    out_dir.mkdir(parents=True, exist_ok=True)
    for old in out_dir.glob("*.whl"):
        old.unlink()
    path = write_wheel(out_dir, DIST_NAME, version, requires_python=REQUIRES_PYTHON,
                       files={f"{IMPORT_NAME}/{name}": text for name, text in sources.items()})
    return path, f"{DIST_NAME}=={version}"
