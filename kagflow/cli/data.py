"""`kagflow data synth`: synthetic competition files in [data]'s schema (asked for: never made silently)."""

from __future__ import annotations

from pathlib import Path

import click

from kagflow.cli._app import App
from kagflow.workflow.competition_data import KINDS, TEXT_FORMATS, write_synthetic


@click.group("data")
def data() -> None:
    """Offline stand-in data for the competition."""


@data.command("synth")
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="Folder to write (default: .kagflow/competition/<competition>/).")
@click.option("--n-train", type=int, default=None, help="Training rows (default: [tiny] n_train).")
@click.option("--n-test", type=int, default=None, help="Test rows (default: [tiny] n_test).")
@click.option("--seed", type=int, default=None, help="Random seed (default: [tiny] seed).")
@click.option("--public-rows", type=int, default=3, show_default=True,
              help="Test rows in the public test file, as a code competition shows; the whole test set goes to "
                   "hidden/ (what a submission is re-run on). 0: every test row public, no hidden/.")
@click.option("--text-format", type=click.Choice(TEXT_FORMATS), default=TEXT_FORMATS[0], show_default=True,
              help="Each text cell a JSON list of turns (LLM Classification Finetuning's files) or plain text (WSDM "
                   "Cup's).")
@click.option("--kind", type=click.Choice(KINDS), default=KINDS[0], show_default=True,
              help="marker: a marker word carries the label (the tiny model learns it); knowledge: the label needs "
                   "real knowledge (which response names a country's capital right).")
@click.pass_obj
def synth(app: App, out: Path | None, n_train: int | None, n_test: int | None, seed: int | None,
          public_rows: int, text_format: str, kind: str) -> None:
    """Write train.csv, test.csv, sample_submission.csv (and the hidden solution.csv) in [data]'s schema,
    with a learnable signal. Written to the default folder, they become the project's competition data on the
    local Kaggle (marked synthetic: every report says so), for any competition.

    \b
    Example:
      kagflow data synth --out data/ --n-train 2000
      kagflow data synth --out data/ --text-format plain
      kagflow data synth --out data/ --kind knowledge
    """
    cfg = app.config
    out = out or cfg.layout.competition_files(cfg.project.competition)
    n_test = n_test or cfg.tiny.n_test
    paths = write_synthetic(cfg, out, n_train=n_train or cfg.tiny.n_train, n_test=n_test,
                            seed=cfg.tiny.seed if seed is None else seed,
                            n_public=min(public_rows, n_test) if public_rows > 0 else None, text_format=text_format,
                            kind=kind)
    app.out.result(f"Wrote the synthetic competition to {out}", **{k: str(v) for k, v in paths.items()})

