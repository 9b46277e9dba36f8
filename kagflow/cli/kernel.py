"""`kagflow kernel render|run|push|status|pull|logs|import`."""

from __future__ import annotations

import sys

import click

from kagflow.cli._app import App
from kagflow.project.params import parse_overrides
from kagflow.workflow.kernel import output_summary

FAILED = ("ERROR", "CANCEL_REQUESTED", "CANCEL_ACKNOWLEDGED")


def param_option(fn):
    return click.option("-p", "--param", "params", multiple=True, metavar="KEY=VALUE",
                        help="Set a [train]/[infer] key in the notebook's parameters cell for this push or run "
                             "(repeatable), e.g. -p fold_idx=2 -p lr=1e-4.")(fn)


def _overrides(app: App, name: str, params: tuple[str, ...]) -> dict:
    return parse_overrides(app.config, name, params)


@click.group("kernel")
def kernel() -> None:
    """Kernels (notebooks): render, run locally, push, wait, pull output."""


@kernel.command("render")
@click.argument("name")
@click.option("--tiny/--no-tiny", default=None,
              help="Render for the tiny offline checkpoint (default: when the target is local and "
                   "[base_model] local_dir is empty).")
@click.pass_obj
def render(app: App, name: str, tiny: bool | None) -> None:
    """Render kernel NAME (train, infer, or an imported one) into kernels/<slug>/, with the model
    versions published on the target."""
    rendered = app.session.render(name, tiny=tiny)
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
    """Execute kernel NAME's notebook here; outputs land in kernels/<slug>/output/local-<N>/.

    The inputs are mounted as Kaggle would: the synthetic competition and the tiny checkpoint
    (or [base_model] local_dir), and for infer the adapter of the last local or pulled training run.
    """
    result = app.session.run_here(name, timeout=timeout, overrides=_overrides(app, name, params))
    app.out.result(f"{name}: {result.status}", output=result.output, log=result.log)
    if result.status != "COMPLETE":
        click.echo(result.failure, err=True)
        app.out.data(failure=result.failure)
        app.out.flush(ok=False)
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

    A GPU kernel's hours (its previous version's measured run time, else its timeout) are checked
    against the week's GPU quota left first: beyond it the push is refused unless --force.

    \b
    Examples:
      kagflow kernel push train --wait
      kagflow kernel push train -p fold_idx=2 -p lr=1e-4
      kagflow kernel push infer --accelerator NvidiaTeslaT4
    """
    result = app.session.push(name, accelerator=accelerator, timeout=timeout,
                              overrides=_overrides(app, name, params), force_quota=force)
    app.out.result(f"{'Pushed' if result.pushed else 'Unchanged'} {result.handle} version {result.version}",
                   url=app.session.link(result.handle))
    app.out.data(kernel=str(result.handle), version=result.version, pushed=result.pushed)
    if wait:
        _wait(app, name, result.version)


def _wait(app: App, name: str, version: int | None, timeout: float | None = None) -> None:
    try:
        status = app.session.wait(name, version=version, timeout=timeout)
    except KeyboardInterrupt:
        click.echo(f"\nstopped waiting; the kernel keeps running. Resume with: kagflow kernel status {name} --wait",
                   err=True)
        sys.exit(130)
    app.out.result(f"{name}: {status.status}", next=f"kagflow kernel pull {name}")
    app.out.data(status=status.status)


@kernel.command("status")
@click.argument("name")
@click.option("--wait", is_flag=True, help="Poll until the run ends.")
@click.option("--version", type=int, default=None, help="Kernel version (default: the last pushed).")
@click.option("--timeout", type=float, default=None, help="Stop waiting after this many seconds.")
@click.pass_obj
def status(app: App, name: str, wait: bool, version: int | None, timeout: float | None) -> None:
    """Show (or wait for) the status of kernel NAME's run (exit 1 if it failed).

    \b
    Examples:
      kagflow kernel status train
      kagflow kernel status train --json
    """
    if wait:
        _wait(app, name, version or app.session.kernel_version(name), timeout)
        return
    version, st = app.session.status(name, version)
    app.out.result(f"{name} v{version}: {st.status}", failure=st.failure_message or "-")
    app.out.data(kernel=name, version=version, status=st.status)
    if st.status in FAILED:
        app.out.flush(ok=False)
        raise click.exceptions.Exit(1)


@kernel.command("pull")
@click.argument("name")
@click.option("--version", type=int, default=None, help="Kernel version (default: the last pushed).")
@click.pass_obj
def pull(app: App, name: str, version: int | None) -> None:
    """Download the output and log of kernel NAME into kernels/<slug>/output/v<N>/ (never overwritten)."""
    dest = app.session.pull(name, version=version)
    summary = output_summary(dest)
    app.out.result(f"Output of {name} in {dest}", output=dest)
    app.out.data(files=dict(summary.files), metrics=summary.metrics)
    for rel, size in summary.files:
        app.out.info(f"  {size:>12,d}  {rel}")
    for key, value in summary.metrics.items():
        if isinstance(value, (int, float, str)):
            app.out.info(f"  {key}: {value}")


@kernel.command("logs")
@click.argument("name")
@click.option("--version", type=int, default=None, help="Kernel version (default: the last pushed).")
@click.option("--lines", type=int, default=0, help="Only the last N lines.")
@click.option("-f", "--follow", is_flag=True, help="Print the log as the run writes it, until the run ends.")
@click.pass_obj
def logs(app: App, name: str, version: int | None, lines: int, follow: bool) -> None:
    """Print the run log of kernel NAME (pulled first if needed), or follow a running one.

    \b
    Examples:
      kagflow kernel logs train --lines 50
      kagflow kernel logs train --follow
    """
    if follow:
        try:
            app.session.follow(name, lambda text: click.echo(text, nl=False), version=version)
        except KeyboardInterrupt:
            click.echo(f"\nstopped following; the kernel keeps running (kagflow kernel status {name})", err=True)
            sys.exit(130)
        return

    text = app.session.logs(name, version=version, lines=lines)
    app.out.data(kernel=name, log=text)
    app.out.info(text)


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
    result = app.session.import_notebook(ref, name=name)
    app.reload()
    app.out.result(f"Imported {ref} as kernel {result.name!r}", folder=result.folder, title=result.title,
                   next=f"kagflow check && kagflow kernel push {result.name}")

