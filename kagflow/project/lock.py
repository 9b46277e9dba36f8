"""The project lock: one kagflow at a time publishes, pushes or submits in a project."""

from __future__ import annotations

import contextlib
import functools
import inspect
import os
import sys
from pathlib import Path
from typing import Callable, Iterator

from kagflow.project.layout import Layout


@contextlib.contextmanager
def project_lock(root: Path, what: str, log: Callable[[str], None] = lambda m: print(m, file=sys.stderr)
                 ) -> Iterator[None]:
    """Hold ``.kagflow/lock`` while publishing or pushing: a second kagflow in the same project
    waits (saying so) instead of uploading the same content twice or sharing a staging folder."""
    from filelock import FileLock, Timeout

    path = Layout(Path(root)).lock_file
    path.parent.mkdir(parents=True, exist_ok=True)
    lock, owner = FileLock(str(path)), path.with_name(path.name + ".owner")
    try:
        lock.acquire(timeout=0)
    except Timeout:
        holder = owner.read_text(encoding="utf-8").strip() if owner.is_file() else "another kagflow command"
        log(f"{what}: waiting for {holder} to finish in {root}")
        lock.acquire()
    try:
        owner.write_text(f"kagflow pid {os.getpid()} ({what})\n", encoding="utf-8")
        yield
    finally:
        lock.release()


def locked(what: str):
    """Make a verb ``verb(session, ...)`` hold the project lock while it runs (dvc's ``@locked``); ``what``, formatted
    with the call's arguments (``"push kernel {name}"``), is what a second kagflow says it waits for. The session
    gives the project's folder (``session.root``) and where to say it (``session.log``)."""
    def wrap(verb):
        signature = inspect.signature(verb)

        @functools.wraps(verb)
        def run(session, *args, **kwargs):
            call = signature.bind(session, *args, **kwargs)
            call.apply_defaults()
            with project_lock(session.root, what.format(**call.arguments), session.log):
                return verb(session, *args, **kwargs)
        return run
    return wrap
