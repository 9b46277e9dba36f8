"""`kagflow submit`: a kernel version (or, for file competitions, a CSV) submitted once, then its score awaited.

The hub (the official client) is imported inside the verbs that talk to it: the CLI's start stays fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Optional

from kagflow.project.config import INFER_KERNEL
from kagflow.project.lock import locked
from kagflow.project.state import SubmissionRecord
from kagflow.workflow.kernel import kernel_version


@locked("submit {name}")
def _submit_kernel(session, name: str, version: int, message: str):
    from kagflow.hub.competitions import submit_kernel

    config = session.config
    return submit_kernel(session.gateway, config.project.competition, config.kernel_handle(name), version,
                         message=message or f"kagflow {config.kernel(name).title} v{version}")


def submit(session, name: str = INFER_KERNEL, *, version: Optional[int] = None, wait: bool = True,
           on_poll: Optional[Callable] = None, message: str = ""):
    """Submit a kernel version once (a re-run finds the earlier submission) and wait for its score; the project
    lock is held while submitting, not while waiting."""
    from kagflow.hub.competitions import wait_score

    config = session.config
    version = version or kernel_version(session, name)
    sub = _submit_kernel(session, name, version, message)
    if wait:
        sub = wait_score(session.gateway, config.project.competition, sub.ref, on_poll=on_poll)
    session.state.record_submission(SubmissionRecord(sub.ref, str(config.kernel_handle(name)), version, sub.status,
                                                     sub.public_score))
    return sub


@locked("submit file")
def _submit_file(session, path: Path, message: str):
    from kagflow.hub.competitions import submit_file

    return submit_file(session.gateway, session.config.project.competition, path, message=message)


def submit_csv(session, path: Path, *, message: str = "", wait: bool = True, on_poll: Optional[Callable] = None):
    """File competitions: submit ``path`` and wait for its score."""
    from kagflow.hub.competitions import wait_score

    sub = _submit_file(session, path, message)
    return wait_score(session.gateway, session.config.project.competition, sub.ref, on_poll=on_poll) if wait else sub
