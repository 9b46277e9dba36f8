"""`kagflow check`."""

from __future__ import annotations

import click

from kagflow.cli._app import App
from kagflow.workflow.check import training_fit


@click.command("check")
@click.option("--online", is_flag=True, help="Also ask the target: credentials, the competition and its rules, "
                                            "the GPU quota, the Kaggle models the kernels mount.")
@click.pass_obj
def check(app: App, online: bool) -> None:
    """List every problem in the project at once (exit 1 if any), each with file, field and fix.

    Knows the target: versions published there (recorded in .kagflow/state-<target>.json on the
    local Kaggle, pinned in kagflow.toml on Kaggle) count as published; what the flow has not
    produced yet is listed as pending, which is not a problem.

    With --online it reaches the target (starting the local Kaggle if needed) and also reports what only the
    target can say; what the client cannot tell (consent to a gated model) is listed as unknown.

    \b
    Examples:
      kagflow check
      kagflow check --online
      kagflow check --json
    """
    session = app.session
    problems, todo = session.check()  # with the target's recorded versions and its list of the competition's files
    config, target = session.config, session.target.label
    findings = session.check_online() if online else []
    app.out.data(target=target, problems=[p.__dict__ for p in problems], pending=[p.__dict__ for p in todo],
                 **({"online": [f.__dict__ for f in findings]} if online else {}))
    for item in todo:
        app.out.info(f"pending: {item.render()}")
    for line in training_fit(config)[0]:
        app.out.info(line)
    if not app.out.json_mode:
        for finding in findings:
            click.echo(f"online {finding.render()}", err=finding.ok is False)
    failed = [f for f in findings if f.ok is False]
    if failed and not problems:
        if not app.out.json_mode:
            click.echo(f"{len(failed)} online problem(s) found", err=True)
        app.out.flush(ok=False)
        raise click.exceptions.Exit(1)
    if not problems:
        app.out.result(f"{config.path.name}: no problems found (target: {target}"
                       + (f"; {len(todo)} pending, made by `kagflow flow`)" if todo else ")"))
        return
    if not app.out.json_mode:
        for problem in problems:
            click.echo(problem.render(), err=True)
        click.echo(f"{len(problems)} problem(s) found" + (f", and {len(failed)} online" if failed else ""),
                   err=True)
    app.out.flush(ok=False)
    raise click.exceptions.Exit(1)
