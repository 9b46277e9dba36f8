"""The CLI's shared pieces: the output object, and the App that builds the config and the
command's Session once (hatch's ``Application`` in ``ctx.obj``)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import click

from kagflow.project.config import Config, load_config
from kagflow.workflow.session import Session


def _plain(value):
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


class Output:
    """One place that prints: human lines by default; with ``--json`` one JSON object per command,
    written when the command ends (``flush``), errors included (``error``)."""

    def __init__(self, json_mode: bool = False):
        self.json_mode = json_mode
        self.record: dict = {}

    def info(self, message: str) -> None:
        if not self.json_mode:
            click.echo(message)

    def warn(self, message: str) -> None:
        click.echo(f"warning: {message}", err=True)

    def result(self, message: str, **fields) -> None:
        if self.json_mode:
            messages = self.record.setdefault("messages", [])
            messages.append(message)
            self.record.update({k: _plain(v) for k, v in fields.items()})
            return
        click.echo(message)
        for key, value in fields.items():
            click.echo(f"  {key}: {value}")

    def data(self, **fields) -> None:
        """Fields only the JSON object carries (the human output printed them as lines)."""
        if self.json_mode:
            self.record.update({k: _plain(v) for k, v in fields.items()})

    def flush(self, *, ok: bool = True) -> None:
        if self.json_mode:
            click.echo(json.dumps({"ok": ok, **self.record}, default=str))
            self.record = {}

    def error(self, err) -> None:
        """A KagflowError: pip's shape on stderr, or one JSON object on stdout."""
        if not self.json_mode:
            click.echo(err.render(), err=True)
            return
        payload = {"type": type(err).__name__, "message": err.message, "context": err.context, "hint": err.hint}
        for key in ("status", "server_message", "handle", "target"):
            if getattr(err, key, None):
                payload[key] = getattr(err, key)
        self.record["error"] = payload
        self.flush(ok=False)


class App:
    """Built once by the root group and handed to every command (``@click.pass_obj``)."""

    def __init__(self, config_path: Optional[Path], json_mode: bool):
        self._config_path = config_path
        self._config: Optional[Config] = None
        self._session = None
        self.out = Output(json_mode)

    @property
    def config(self) -> Config:
        if self._config is None:
            self._config = load_config(self._config_path)
        return self._config

    @property
    def session(self) -> Session:
        """The command's Session (kagflow.workflow.session): target, gateway and state, built on first use."""
        if self._session is None:
            self._session = Session(self.config, log=lambda m: click.echo(m, err=True))
        return self._session

    def reload(self) -> Config:
        self._config = None
        self._session = None
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
