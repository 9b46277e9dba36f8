"""Offline stand-ins for the local target: the tiny base model and the synthetic competition."""

from __future__ import annotations

from pathlib import Path

from kagflow.config import Config

TINY_DIR = "tiny-gemma2"


def tiny_model_dir(config: Config) -> Path:
    return config.root / "models" / TINY_DIR


def ensure_tiny_model(config: Config) -> Path:
    """Make the tiny Gemma-2 checkpoint once (deterministic from [tiny] seed)."""
    out = tiny_model_dir(config)
    if (out / "config.json").is_file():
        return out
    from kagflow.classifier.tiny import make_tiny_checkpoint

    t = config.tiny
    make_tiny_checkpoint(out, seed=t.seed, hidden_size=t.hidden_size, num_layers=t.num_layers,
                         vocab_size=t.vocab_size)
    return out


def competition_files_dir(config: Config) -> Path:
    return config.root / ".kagflow" / "competition" / config.project.competition


def ensure_synthetic_competition(config: Config) -> Path:
    """Write the synthetic arena competition (train/test/sample_submission + hidden solution) once."""
    out = competition_files_dir(config)
    if (out / "solution.csv").is_file():
        return out
    from kagflow.classifier.synth import write_synthetic_competition

    t = config.tiny
    write_synthetic_competition(out, n_train=t.n_train, n_test=t.n_test, seed=t.seed)
    return out
