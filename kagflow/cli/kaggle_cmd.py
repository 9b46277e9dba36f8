"""`kagflow kaggle ARGS...`: the official Kaggle CLI, pointed at the project's target."""

from __future__ import annotations

import click

from kagflow.cli._app import App


@click.command("kaggle", context_settings={"ignore_unknown_options": True, "allow_extra_args": True,
                                           "help_option_names": []})
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
@click.pass_obj
def kaggle(app: App, args: tuple[str, ...]) -> None:
    """Run the official `kaggle` CLI against the current target (Kaggle or the local server).

    \b
    Examples:
      kagflow kaggle kernels list --mine
      kagflow kaggle models instances versions list alice/gemma2-arena-adapter/transformers/peft-lora-classifier
    """
    raise click.exceptions.Exit(app.session.official_cli(list(args)))

