"""kagflow's command line: one Click group, one module per noun, errors printed once in main()."""

from __future__ import annotations

import os
import sys
import traceback
from pathlib import Path

import click

from kagflow import __version__
from kagflow.cli import check, data, flow, image, init, kaggle_cmd, kernel, local, model, status, submit, wheels
from kagflow.cli._app import App
from kagflow.errors import KagflowError

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


@click.group(context_settings=CONTEXT)
@click.version_option(__version__, prog_name="kagflow")
@click.option("--config", "config_path", type=click.Path(path_type=Path), envvar="KAGFLOW_CONFIG",
              help="kagflow.toml to use (default: search upwards from here). [env var: KAGFLOW_CONFIG]")
@click.option("--json", "json_mode", is_flag=True, envvar="KAGFLOW_JSON",
              help="Print one JSON object per command, errors included (also after any command). "
                   "[env var: KAGFLOW_JSON]")
@click.pass_context
def cli(ctx: click.Context, config_path: Path | None, json_mode: bool) -> None:
    """Automates the Kaggle workflow of an LLM classifier fine-tuned with 4-bit QLoRA.

    \b
    Quick start:
      kagflow init --competition llm-classification-finetuning
      kagflow check
      kagflow flow            # the whole flow; `make submit` runs it
    """
    global _APP
    ctx.obj = _APP = App(config_path, json_mode)


_APP: App | None = None


@cli.result_callback()
def _done(*args, **kwargs) -> None:
    if _APP is not None:
        _APP.out.flush()


def _json_flag(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    if value:
        ctx.find_object(App).out.json_mode = True


JSON_OPTION_HELP = "Print one JSON object (errors too). [env var: KAGFLOW_JSON]"


def _with_json_option(command: click.Command) -> None:
    """Every command accepts --json after its name too (`kagflow check --json`)."""
    if isinstance(command, click.Group):
        for sub in command.commands.values():
            _with_json_option(sub)
        return
    if command.name == "kaggle":
        return  # the official CLI's own arguments pass through untouched
    command.params.append(click.Option(["--json"], is_flag=True, expose_value=False, is_eager=True,
                                       callback=_json_flag, help=JSON_OPTION_HELP))


# The command line's table of contents: one line per group or command (huggingface_hub's cli/hf.py).
COMMANDS = (
    init.init, check.check, data.data, wheels.wheels, image.image, model.model, kernel.kernel, submit.submit,
    status.status, status.submissions, local.local, flow.flow, kaggle_cmd.kaggle,
)
for _command in COMMANDS:
    _with_json_option(_command)
    cli.add_command(_command)


def main(argv: list[str] | None = None) -> None:
    """Entry point: runs the group; a KagflowError is printed once as message, context and hint."""
    global _APP
    _APP = None
    try:
        code = cli.main(args=argv, prog_name="kagflow", standalone_mode=False)
    except KagflowError as e:
        if _APP is not None:
            _APP.out.error(e)
        else:
            click.echo(e.render(), err=True)
        if os.environ.get("KAGFLOW_DEBUG"):
            traceback.print_exc()
        sys.exit(1)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.ClickException as e:
        e.show()
        sys.exit(e.exit_code)
    except click.exceptions.Exit as e:
        sys.exit(e.exit_code)
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(130)
    sys.exit(code if isinstance(code, int) else 0)
