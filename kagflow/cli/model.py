"""`kagflow model tiny|standin|publish`."""

from __future__ import annotations

from pathlib import Path

import click

from kagflow.cli._app import App
from kagflow.project.config import ADAPTER_MODEL, BASE_MODEL
from kagflow.workflow import standins

WHICH = {"base": BASE_MODEL, "adapter": ADAPTER_MODEL}


@click.group("model")
def model() -> None:
    """Kaggle Models: the base model and the trained adapter."""


@model.command("tiny")
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="Folder to write (default: models/tiny-gemma2/).")
@click.pass_obj
def tiny(app: App, out: Path | None) -> None:
    """Make the tiny Gemma-2-architecture checkpoint (random weights, local tokenizer)."""
    cfg = app.config
    path = standins.ensure_tiny_model(cfg) if out is None else standins.make_tiny_model(cfg, out)
    app.out.result(f"Tiny Gemma-2 checkpoint in {path}", path=path)


@model.command("standin", help="Make the offline stand-in that [base_model] stand_in selects, once.\n\n\b\n"
               + "\n".join(f"{s.name:<12} " + s.summary.replace("\n", "\n" + " " * 13)
                           for s in standins.STAND_INS.values()))
@click.pass_obj
def standin(app: App) -> None:
    cfg = app.config
    path = standins.ensure_stand_in(cfg)
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

