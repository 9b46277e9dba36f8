"""`kagflow wheels build|push`."""

from __future__ import annotations

import click

from kagflow.cli._app import App


@click.group("wheels")
def wheels() -> None:
    """Offline wheels dataset: the packages the notebooks need that Kaggle's image lacks."""


@wheels.command("build")
@click.argument("requirements", nargs=-1)
@click.option("--image", default=None,
              help="Target image: a snapshot name, a saved image.json, 'local-kaggle' or 'this-machine' "
                   "(default: [wheels] image; 'local-kaggle', the local Kaggle's image, on the local target).")
@click.option("--index-url", default=None, envvar="PIP_INDEX_URL",
              help="Package index. [env var: PIP_INDEX_URL]")
@click.option("--find-links", multiple=True, help="Extra wheel folders or pages.")
@click.option("--no-index", is_flag=True, help="Use only --find-links (offline).")
@click.pass_obj
def build(app: App, requirements: tuple[str, ...], image: str | None, index_url: str | None,
          find_links: tuple[str, ...], no_index: bool) -> None:
    """Resolve with pip for the target image, keep what it lacks, verify an offline install.

    REQUIREMENTS default to [wheels] requirements in kagflow.toml.

    \b
    Examples:
      kagflow wheels build
      kagflow wheels build peft==0.21.2 bitsandbytes==0.50.2 --image kaggle-gpu
    """
    result = app.session.build_wheels(requirements=list(requirements) or None, image=image, index_url=index_url,
                                      find_links=list(find_links), no_index=no_index)
    for line in result.summary_lines():
        app.out.info(line)
    for warning in result.warnings:
        app.out.warn(warning)
    app.out.result(f"Wheels dataset {result.dataset_id} in {result.out_dir}", digest=result.digest[:16],
                   next="kagflow wheels push")


@wheels.command("push")
@click.option("--notes", default="", help="Version notes.")
@click.pass_obj
def push(app: App, notes: str) -> None:
    """Create the wheels dataset or a new version of it; nothing is uploaded when unchanged."""
    result = app.session.push_wheels(notes=notes)
    verb = ("Created" if result.created else "Uploaded a new version of") if result.uploaded else "Unchanged:"
    app.out.result(f"{verb} dataset {result.handle}", version=result.version, files=result.files,
                   megabytes=round(result.bytes / 1e6, 2), url=app.session.link(result.handle),
                   kernels_mount=f"{result.handle}/{result.version}")
    app.out.data(uploaded=result.uploaded, created=result.created)

