"""`kagflow kernel render|run|push|status|pull|logs|import`."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from kagflow.cli._app import App, poll_printer


@click.group("kernel")
def kernel() -> None:
    """Kernels (notebooks): render, run locally, push, wait, pull output."""


def _names(app: App) -> list[str]:
    return sorted(app.config.kernels)


def param_option(fn):
    return click.option("-p", "--param", "params", multiple=True, metavar="KEY=VALUE",
                        help="Override a [train]/[infer] key in the notebook's parameters cell (repeatable), "
                             "e.g. -p fold_idx=2 -p lr=1e-4.")(fn)


@kernel.command("render")
@click.argument("name")
@click.option("--tiny/--no-tiny", default=None,
              help="Render for the tiny offline checkpoint (default: when the target is local and "
                   "[base_model] local_dir is empty).")
@click.pass_obj
def render(app: App, name: str, tiny: bool | None) -> None:
    """Render kernel NAME (train, infer, or an imported one) into kernels/<slug>/."""
    from kagflow.steps import render as render_step

    cfg = app.config
    if tiny is None:
        from kagflow.hub.target import targets_local

        tiny = not cfg.base_model.local_dir and targets_local(cfg)
    rendered = render_step(cfg, name, tiny=tiny)
    app.out.result(f"Rendered {rendered.handle} into {rendered.folder}", notebook=rendered.notebook,
                   missing_sources=", ".join(f"{s} ({c})" for s, c in rendered.sources.missing) or "none")


@kernel.command("run")
@click.argument("name")
@click.option("--local", "local", is_flag=True, required=True,
              help="Execute on this machine (GPU if present) in a Kaggle-like folder layout.")
@click.option("--timeout", type=int, default=None, help="Seconds before the run is stopped.")
@param_option
@click.pass_obj
def run(app: App, name: str, local: bool, timeout: int | None, params: tuple[str, ...]) -> None:
    """Execute kernel NAME's notebook here with nbclient; outputs land in kernels/<slug>/output/local/.

    The inputs are mounted as Kaggle would: the synthetic competition and the tiny checkpoint
    (or [base_model] local_dir), and for infer the adapter of the last local or pulled training run.
    """
    from kagflow.localrun import run_local
    from kagflow.params import parse_overrides

    result = run_local(app.config, name, timeout=timeout, overrides=parse_overrides(app.config, name, params))
    app.out.result(f"{name}: {result.status}", output=result.output, log=result.log)
    if result.status != "COMPLETE":
        click.echo(result.failure, err=True)
        raise click.exceptions.Exit(1)


@kernel.command("push")
@click.argument("name")
@click.option("--wait", is_flag=True, help="Wait until the run ends (exit 1 on ERROR).")
@click.option("--accelerator", default=None, help="Override the accelerator, e.g. NvidiaTeslaT4.")
@click.option("--timeout", type=int, default=None, help="Kernel session timeout in seconds.")
@param_option
@click.option("--force", is_flag=True, help="Push even when the GPU hours it needs exceed the week's quota left.")
@click.pass_obj
def push(app: App, name: str, wait: bool, accelerator: str | None, timeout: int | None, params: tuple[str, ...],
         force: bool) -> None:
    """Render, check, then push kernel NAME (a new version only when its content changed).

    A GPU kernel's hours (its previous version's run time, else its timeout) are checked against the
    week's GPU quota left first: beyond it the push is refused unless --force.

    \b
    Examples:
      kagflow kernel push train --wait
      kagflow kernel push train -p fold_idx=2 -p lr=1e-4
      kagflow kernel push infer --accelerator NvidiaTeslaT4
    """
    from kagflow.hub.common import connect
    from kagflow.params import parse_overrides
    from kagflow.state import State
    from kagflow.steps import push_kernel

    cfg = app.config
    overrides = parse_overrides(cfg, name, params)
    gw = connect(cfg)
    state = State.for_project(cfg.root, gw.target.kind)
    result = push_kernel(gw, cfg, state, name, accelerator=accelerator, timeout=timeout, overrides=overrides,
                         force_quota=force)
    app.out.result(f"{'Pushed' if result.pushed else 'Unchanged'} {result.handle} version {result.version}",
                   url=result.handle.to_url())
    if wait:
        _wait(app, gw, state, name, result.version)


def _wait(app: App, gw, state, name: str, version: int | None, timeout: float | None = None) -> None:
    from kagflow.steps import wait_kernel

    try:
        status = wait_kernel(gw, app.config, state, name, version=version, timeout=timeout,
                             on_poll=poll_printer(f"{name} v{version or '?'}"))
    except KeyboardInterrupt:
        click.echo(f"\nstopped waiting; the kernel keeps running. Resume with: kagflow kernel status {name} --wait",
                   err=True)
        sys.exit(130)
    app.out.result(f"{name}: {status.status}", next=f"kagflow kernel pull {name}")


@kernel.command("status")
@click.argument("name")
@click.option("--wait", is_flag=True, help="Poll until the run ends.")
@click.option("--version", type=int, default=None, help="Kernel version (default: the last pushed).")
@click.option("--timeout", type=float, default=None, help="Stop waiting after this many seconds.")
@click.pass_obj
def status(app: App, name: str, wait: bool, version: int | None, timeout: float | None) -> None:
    """Show (or wait for) the status of kernel NAME's run."""
    from kagflow.hub.common import connect
    from kagflow.hub.kernels import kernel_status
    from kagflow.sources import kernel_handle
    from kagflow.state import State
    from kagflow.steps import kernel_version

    cfg = app.config
    gw = connect(cfg)
    state = State.for_project(cfg.root, gw.target.kind)
    version = version or kernel_version(gw, cfg, state, name)
    if wait:
        _wait(app, gw, state, name, version, timeout)
        return
    st = kernel_status(gw, kernel_handle(cfg, name), version)
    app.out.result(f"{name} v{version}: {st.status}", failure=st.failure_message or "-")
    if st.status in ("ERROR", "CANCEL_REQUESTED", "CANCEL_ACKNOWLEDGED"):
        raise click.exceptions.Exit(1)


@kernel.command("pull")
@click.argument("name")
@click.option("--version", type=int, default=None, help="Kernel version (default: the last pushed).")
@click.pass_obj
def pull(app: App, name: str, version: int | None) -> None:
    """Download the output and log of kernel NAME into kernels/<slug>/output/v<N>/ (never overwritten)."""
    from kagflow.hub.common import connect
    from kagflow.state import State
    from kagflow.steps import pull_kernel, summarize_output

    cfg = app.config
    gw = connect(cfg)
    state = State.for_project(cfg.root, gw.target.kind)
    dest = pull_kernel(gw, cfg, state, name, version=version)
    summary = summarize_output(dest)
    app.out.result(f"Output of {name} in {dest}")
    for rel, size in summary.files:
        app.out.info(f"  {size:>12,d}  {rel}")
    for key, value in summary.metrics.items():
        if isinstance(value, (int, float, str)):
            app.out.info(f"  {key}: {value}")


@kernel.command("logs")
@click.argument("name")
@click.option("--version", type=int, default=None, help="Kernel version (default: the last pushed).")
@click.option("--lines", type=int, default=0, help="Only the last N lines.")
@click.option("-f", "--follow", is_flag=True, help="Print the log as the run writes it, until it ends.")
@click.pass_obj
def logs(app: App, name: str, version: int | None, lines: int, follow: bool) -> None:
    """Print the run log of kernel NAME (pulled first if needed), or follow a running one."""
    from kagflow.hub.common import connect
    from kagflow.hub.kernels import follow_log, log_text, tail
    from kagflow.sources import kernel_handle
    from kagflow.state import State
    from kagflow.steps import kernel_version, pull_kernel

    cfg = app.config
    gw = connect(cfg)
    state = State.for_project(cfg.root, gw.target.kind)
    if follow:
        version = version or kernel_version(gw, cfg, state, name)
        try:
            follow_log(gw, kernel_handle(cfg, name), version, lambda text: click.echo(text, nl=False))
        except KeyboardInterrupt:
            click.echo(f"\nstopped following; the kernel keeps running (kagflow kernel status {name})", err=True)
            sys.exit(130)
        return
    dest = pull_kernel(gw, cfg, state, name, version=version)
    log = dest / f"{kernel_handle(cfg, name).slug}.log"
    text = log_text(log) if log.is_file() else "(no log)"
    click.echo(tail(text, lines) if lines else text)


@kernel.command("import")
@click.argument("ref")
@click.option("--as", "name", default=None, help="Name in kagflow.toml (default: the slug).")
@click.pass_obj
def import_(app: App, ref: str, name: str | None) -> None:
    """Pull public notebook OWNER/SLUG with its metadata, normalise its sources and add it to kagflow.toml.

    \b
    Example:
      kagflow kernel import emiz6413/training-gemma-2-9b-4-bit-qlora-fine-tuning --as upstream
    """
    from kagflow.hub.common import connect
    from kagflow.importer import import_kernel

    cfg = app.config
    gw = connect(cfg)
    result = import_kernel(gw, cfg, ref, name=name)
    app.reload()
    app.out.result(f"Imported {ref} as kernel {result.name!r}", folder=result.folder, title=result.title,
                   next=f"kagflow check && kagflow kernel push {result.name}")


COMMANDS = [kernel]
