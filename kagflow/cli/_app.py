"""The CLI's shared pieces: the output object and the project loader passed to commands."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import click

from kagflow.config import Config, load_config


class Output:
    """One place that prints: human lines by default, JSON with --json."""

    def __init__(self, json_mode: bool = False):
        self.json_mode = json_mode

    def info(self, message: str) -> None:
        if not self.json_mode:
            click.echo(message)

    def warn(self, message: str) -> None:
        click.echo(f"warning: {message}", err=True)

    def result(self, message: str, **fields) -> None:
        if self.json_mode:
            click.echo(json.dumps({"message": message, **{k: _plain(v) for k, v in fields.items()}}))
            return
        click.echo(message)
        for key, value in fields.items():
            click.echo(f"  {key}: {value}")


def _plain(value):
    if isinstance(value, Path):
        return str(value)
    return value


class App:
    """Built once by the root group and handed to every command (``@click.pass_obj``)."""

    def __init__(self, config_path: Optional[Path], json_mode: bool):
        self._config_path = config_path
        self._config: Optional[Config] = None
        self.out = Output(json_mode)

    @property
    def config(self) -> Config:
        if self._config is None:
            self._config = load_config(self._config_path)
        return self._config

    def reload(self) -> Config:
        self._config = None
        return self.config


def abort(message: str, code: int = 1) -> None:
    click.echo(message, err=True)
    sys.exit(code)


def poll_printer(label: str):
    """A progress callback for waits: one line updated in place on a terminal, a line per change otherwise."""
    last = {"status": None}
    tty = sys.stderr.isatty()

    def on_poll(status, elapsed: float) -> None:
        text = getattr(status, "status", str(status))
        minutes, seconds = divmod(int(elapsed), 60)
        line = f"{label}: {text:<10} {minutes:3d}m{seconds:02d}s"
        if tty:
            click.echo("\r" + line, nl=False, err=True)
            if getattr(status, "done", False) or text in ("COMPLETE", "ERROR"):
                click.echo("", err=True)
        elif text != last["status"]:
            click.echo(line, err=True)
        last["status"] = text

    return on_poll
