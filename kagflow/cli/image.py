"""`kagflow image probe|show|local`: the Kaggle image the wheels dataset targets, and the local one."""

from __future__ import annotations

import click

from kagflow.cli._app import App, poll_printer
from kagflow.workflow.image import PROBE_ACCELERATOR, PROBE_OUT, local_image, show_image


@click.group("image")
def image() -> None:
    """The target image (Python, platform tags, CUDA, installed packages)."""


@image.command("show")
@click.argument("name", required=False)
@click.pass_obj
def show(app: App, name: str | None) -> None:
    """Show the target image NAME (default: [wheels] image)."""
    img = show_image(app.config, name)
    app.out.result(f"Image {img.name}", python=img.python_version, cuda=img.cuda or "-",
                   platforms=", ".join(img.platforms[:3]) + (" ..." if len(img.platforms) > 3 else ""),
                   packages=len(img.installed))


@image.command("local")
@click.pass_obj
def local(app: App) -> None:
    """Build (once; then reused) and show the local Kaggle's image, where local kernels run, and how it
    differs from Kaggle's."""
    img = local_image(say=lambda line: click.echo(line, err=True))
    app.out.result(f"Local Kaggle image {img.path.name}", path=img.path, python=img.python,
                   build_seconds=img.build_seconds, packages=" ".join(img.spec.pins),
                   differences="; ".join(img.notes))


@image.command("probe")
@click.option("--accelerator", default=PROBE_ACCELERATOR, show_default=True, help="Machine to probe.")
@click.option("--out", default=PROBE_OUT, show_default=True, help="Where to save the image.")
@click.pass_obj
def probe(app: App, accelerator: str, out: str) -> None:
    """Push a tiny kernel that records the real image (python, platform, CUDA, pip freeze), pull it,
    save it as OUT and make it [wheels] image."""
    img, path = app.session.probe_image(accelerator=accelerator, out=out, on_poll=poll_printer("image probe"))
    app.out.result(f"Saved image {img.name} to {path}", python=img.python_version, cuda=img.cuda or "-",
                   packages=len(img.installed), config="[wheels] image = " + repr(out))

