"""`kagflow check`."""

from __future__ import annotations

import click

from kagflow.cli._app import App


@click.command("check")
@click.pass_obj
def check(app: App) -> None:
    """List every problem in the project at once (exit 1 if any), each with file, field and fix.

    Knows the target: versions published there (recorded in .kagflow/state-<target>.json on the
    local Kaggle, pinned in kagflow.toml on Kaggle) count as published; what the flow has not
    produced yet is listed as pending, which is not a problem.

    \b
    Examples:
      kagflow check
      kagflow check --json
    """
    session = app.session
    problems, todo = session.check()  # with the target's recorded versions and its list of the competition's files
    config, target = session.config, session.target.label
    app.out.data(target=target, problems=[p.__dict__ for p in problems], pending=[p.__dict__ for p in todo])
    for item in todo:
        app.out.info(f"pending: {item.render()}")
    if not problems:
        app.out.result(f"{config.path.name}: no problems found (target: {target}"
                       + (f"; {len(todo)} pending, made by `kagflow flow`)" if todo else ")"))
        return
    if not app.out.json_mode:
        for problem in problems:
            click.echo(problem.render(), err=True)
        click.echo(f"{len(problems)} problem(s) found", err=True)
    app.out.flush(ok=False)
    raise click.exceptions.Exit(1)
