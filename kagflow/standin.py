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


PUBLIC_TEST_ROWS = 3  # like LMSYS: test.csv shows 3 rows; a submission is re-run on the whole hidden test set


def ensure_synthetic_competition(config: Config) -> Path:
    """Write the synthetic arena competition once: train.csv, a 3-row public test.csv and sample_submission.csv,
    the hidden test set ([tiny] n_test rows, under hidden/) and the hidden solution."""
    out = competition_files_dir(config)
    if (out / "solution.csv").is_file() and (out / "hidden" / "test.csv").is_file():
        return out
    from kagflow.classifier.synth import write_synthetic_competition

    t = config.tiny
    write_synthetic_competition(out, n_train=t.n_train, n_test=t.n_test, seed=t.seed,
                                n_public=min(PUBLIC_TEST_ROWS, t.n_test))
    return out
