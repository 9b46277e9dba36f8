"""The one work queue of a local server: kernel runs and submission scoring, on a pool of workers.

A pushed kernel version waits QUEUED, runs (RUNNING) in ``runs/<owner>/<slug>/v<N>/`` and ends
COMPLETE, ERROR or CANCEL_ACKNOWLEDGED. A code submission waits PENDING until its kernel
version has finished; then, as on Kaggle, that version is re-run in
``runs/<owner>/<slug>/submission-<id>/`` with the competition's hidden test set mounted in place
of the public files, internet off, under the version's time limit, and the re-run's output is
scored (COMPLETE with a public score) or the submission fails (ERROR, in Kaggle's words).

``Settings.kernel_workers`` jobs run at a time, at most ``Settings.kernel_sessions_per_user`` of one
user's (Kaggle runs two GPU sessions per user at once): the oldest job whose owner is under that cap runs
next, so one user's long kernel never blocks another user's. Every run goes through the one runner with
``Settings.kernel_limits``; a key-checking server (``require_sandbox``) refuses to run kernels unconfined.
On start, work left QUEUED/PENDING by a previous server is queued again; a run that was
RUNNING when the server stopped ends in ERROR.
"""

from __future__ import annotations

import json
import shutil
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Iterable, Optional

import nbformat

from kagflow.local.run import mounts
from kagflow.local.run.image import kernel_python
from kagflow.local.run.runner import run_notebook_in_sandbox
from kagflow.local.server import access, competition
from kagflow.local.server.names import check_ident, inside
from kagflow.local.server.store import Store

INTERRUPTED = "Interrupted: the local server stopped during the run"
# Kaggle's words for a failed code submission
THREW, TIMEOUT, NOT_FOUND, SCORING_ERROR = ("Notebook Threw Exception", "Notebook Timeout",
                                            "Submission CSV Not Found", "Submission Scoring Error")


def sandbox_dir(store: Store, owner: str, slug: str, number: int) -> Path:
    """``runs/<owner>/<slug>/v<N>``, refused (ApiError 400) unless each part is a safe name inside ``runs/``."""
    check_ident(owner, what="kernel owner")
    check_ident(slug, what="kernel slug")
    return inside(store.root / "runs", owner, slug, f"v{int(number)}")


class Jobs:
    """A pool of worker threads over the pending ``("run", version_id)`` / ``("score", submission_id)`` jobs."""

    def __init__(self, store: Store, settings, *, require_sandbox: bool = False, hide: Iterable[Path] = ()):
        self.store = store
        self.settings = settings
        self.require_sandbox = require_sandbox
        self.hide = [store.root, *hide]
        self._pending: list[tuple[str, int, str]] = []  # (kind, id, owner), oldest first
        self._busy: Counter = Counter()                 # owner -> jobs running
        self._ready = threading.Condition()
        self._cancel: dict[int, threading.Event] = {}
        self._user_cancelled: set[int] = set()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        self.store.run("UPDATE kernel_versions SET status='ERROR', failure=?, finished=? WHERE status IN "
                       "('RUNNING', 'CANCEL_REQUESTED')", INTERRUPTED, time.time())
        for row in self.store.all("SELECT id FROM kernel_versions WHERE status='QUEUED' ORDER BY id"):
            self.submit_run(row["id"])
        for row in self.store.all("SELECT id FROM submissions WHERE status='PENDING' ORDER BY id"):
            self.submit_score(row["id"])
        for n in range(max(1, self.settings.kernel_workers)):
            thread = threading.Thread(target=self._work, name=f"kagflow-local-jobs-{n}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self, timeout: float = 15.0) -> None:
        self._stop.set()
        for event in list(self._cancel.values()):
            event.set()
        with self._ready:
            self._ready.notify_all()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))

    def busy(self) -> bool:
        """True while a job is queued or running (what keeps an idle server alive: see idle.py)."""
        with self._ready:
            return bool(self._pending) or any(n > 0 for n in self._busy.values())

    def submit_run(self, version_id: int) -> None:
        self._cancel[version_id] = threading.Event()
        row = self.store.one("SELECT k.owner FROM kernel_versions v JOIN kernels k ON k.id = v.kernel_id "
                             "WHERE v.id=?", version_id)
        self._put("run", version_id, row["owner"] if row else "")

    def submit_score(self, submission_id: int) -> None:
        row = self.store.one("SELECT owner FROM submissions WHERE id=?", submission_id)
        self._put("score", submission_id, row["owner"] if row else "")

    def _put(self, kind: str, ident: int, owner: str) -> None:
        with self._ready:
            self._pending.append((kind, ident, owner))
            self._ready.notify()

    def cancel(self, version_id: int) -> bool:
        """Ask a queued or running version to stop; False if it already ended."""
        row = self.store.one("SELECT status FROM kernel_versions WHERE id=?", version_id)
        if row is None or row["status"] not in ("QUEUED", "RUNNING"):
            return False
        if row["status"] == "QUEUED":
            self.store.run("UPDATE kernel_versions SET status='CANCEL_ACKNOWLEDGED', failure='Cancelled', "
                           "finished=? WHERE id=?", time.time(), version_id)
        else:
            self.store.run("UPDATE kernel_versions SET status='CANCEL_REQUESTED' WHERE id=?", version_id)
        self._user_cancelled.add(version_id)
        self._cancel.setdefault(version_id, threading.Event()).set()
        return True

    # ------------------------------------------------------------------ workers

    def _next(self) -> Optional[tuple[str, int, str]]:
        """The oldest pending job whose owner is under the per-user cap (waits for one); None when stopping."""
        cap = max(1, self.settings.kernel_sessions_per_user)
        with self._ready:
            while not self._stop.is_set():
                for job in self._pending:
                    if self._busy[job[2]] < cap:
                        self._pending.remove(job)
                        self._busy[job[2]] += 1
                        return job
                self._ready.wait()
        return None

    def _work(self) -> None:
        while (job := self._next()) is not None:
            kind, ident, owner = job
            try:
                if kind == "run":
                    self._run(ident)
                elif kind == "score":
                    self._score(ident)
            except Exception as exc:  # a job must never kill the worker
                if kind == "run":
                    self.store.run("UPDATE kernel_versions SET status='ERROR', failure=? WHERE id=?",
                                   f"Local server error: {type(exc).__name__}: {exc}", ident)
                elif kind == "score":
                    self.store.run("UPDATE submissions SET status='ERROR', error=? WHERE id=?",
                                   f"Local server error: {type(exc).__name__}: {exc}", ident)
            finally:
                with self._ready:
                    self._busy[owner] -= 1
                    self._ready.notify_all()

    def _run(self, version_id: int) -> None:
        row = self._version(version_id)
        if row is None or row["status"] != "QUEUED" or self._stop.is_set():
            return
        sandbox = sandbox_dir(self.store, row["owner"], row["slug"], row["number"])
        self.store.run("UPDATE kernel_versions SET status='RUNNING', started=? WHERE id=? AND status='QUEUED'",
                       time.time(), version_id)
        status, failure = self._execute(row, sandbox, version_id)
        if status == "CANCEL_ACKNOWLEDGED" and version_id not in self._user_cancelled:
            status, failure = "ERROR", INTERRUPTED  # the server stopped, nobody cancelled it
        self.store.run("UPDATE kernel_versions SET status=?, failure=?, finished=? WHERE id=?",
                       status, failure, time.time(), version_id)
        self._cancel.pop(version_id, None)

    def _version(self, version_id: int):
        return self.store.one("SELECT v.*, k.owner, k.slug, k.kernel_type FROM kernel_versions v JOIN kernels k "
                              "ON k.id = v.kernel_id WHERE v.id=?", version_id)

    def _execute(self, row, sandbox: Path, cancel_key: int, *, hidden_of: Optional[str] = None) -> tuple[str, str]:
        """Run kernel version ``row`` in a fresh ``sandbox``; ``hidden_of``: a re-run for a code submission to that
        competition, with its hidden test set mounted in place of the public files and the internet off."""
        settings = json.loads(row["settings"])
        if sandbox.exists():
            shutil.rmtree(sandbox)
        (sandbox / ".kagflow").mkdir(parents=True)
        notebook = sandbox / ".kagflow" / "notebook.ipynb"
        notebook.write_text(notebook_source(row["source"], row["kernel_type"]), encoding="utf-8")
        self.mount_sources(sandbox / "input", settings, row["owner"], hidden_of=hidden_of)
        status, failure, _ = run_notebook_in_sandbox(
            notebook, sandbox, timeout=float(settings.get("timeout") or self.settings.kernel_timeout_s),
            enable_internet=bool(settings.get("enable_internet")) and hidden_of is None,
            cancel=self._cancel.setdefault(cancel_key, threading.Event()), hide=self.hide,
            python=kernel_python(), limits=self.settings.kernel_limits, require_sandbox=self.require_sandbox)
        return status, failure

    def mount_sources(self, input_root: Path, settings: dict, owner: str, *, hidden_of: Optional[str] = None) -> None:
        """Mount the sources ``owner`` may see (checked again now: a source may have turned private);
        competition ``hidden_of`` with its hidden test set in place of the public files."""
        input_root.mkdir(parents=True, exist_ok=True)
        store = self.store
        for kind in access.KINDS:
            for ref in settings.get(f"{kind}_sources", []):
                if kind == "competition" and ref == hidden_of:
                    found = access.competition_source(store, owner, ref, hidden=True)
                else:
                    found = access.RESOLVERS[kind](store, owner, ref)
                if found is None:
                    continue
                if found.run:
                    files = mounts.output_files(sandbox_dir(store, *found.run) / "working")
                else:
                    files = [(f["name"], store.blob_path(f["sha256"]))
                             for f in store.files_of(found.set_kind, found.set_id)]
                mounts.mount(input_root, found.new_layout, found.classic, files)

    def _score(self, submission_id: int) -> None:
        sub = self.store.one("SELECT * FROM submissions WHERE id=?", submission_id)
        if sub is None or sub["status"] != "PENDING" or self._stop.is_set():
            return
        solution = competition.solution_path(self.store, sub["competition"])
        if sub["kernel_version_id"] is None:  # a file submission
            try:
                score = competition.score_submission(solution, self.store.blob_path(sub["blob_sha"]),
                                                     self._metric(sub["competition"]))
            except competition.ScoreError as exc:
                self._finish(submission_id, "ERROR", error=f"{SCORING_ERROR}: {exc}")
                return
            self._finish(submission_id, "COMPLETE", score=f"{score:.5f}")
            return
        version = self._version(sub["kernel_version_id"])
        if version["status"] in ("QUEUED", "RUNNING", "CANCEL_REQUESTED"):
            self._progress(submission_id, f"waiting for notebook version {version['number']} to finish")
            retry = threading.Timer(0.2, self.submit_score, (submission_id,))  # wait for the run
            retry.daemon = True
            retry.start()
            return
        if version["status"] != "COMPLETE":
            self._finish(submission_id, "ERROR", error=f"{THREW}: notebook version {version['number']} did not "
                                                        f"complete: {version['failure'] or version['status']}")
            return
        self._rerun(sub, version, solution)

    def _rerun(self, sub, version, solution: Path) -> None:
        """Kaggle re-runs the submitted notebook version on the hidden test set (internet off, the version's time
        limit) and scores that run's output; a failed or timed-out re-run is a failed submission."""
        sub_id = sub["id"]
        sandbox = inside(self.store.root / "runs", version["owner"], version["slug"], f"submission-{sub_id}")
        self._progress(sub_id, f"re-running notebook version {version['number']} on the hidden test set")
        status, failure = self._execute(version, sandbox, -sub_id, hidden_of=sub["competition"])
        self._cancel.pop(-sub_id, None)
        if status == "CANCEL_ACKNOWLEDGED":  # the server stopped: left PENDING, re-run on the next start
            return
        if status != "COMPLETE":
            word = TIMEOUT if (failure or "").lower().startswith("timeout") else THREW
            log = f"runs/{version['owner']}/{version['slug']}/submission-{sub_id}"
            self._finish(sub_id, "ERROR", error=f"{word}: {failure or status} (re-run on the hidden test set; "
                                                f"its log: {log})")
            return
        self._progress(sub_id, "scoring the re-run's output")
        output = sandbox / "working"
        target = (output / sub["file_name"]).resolve()
        if output.resolve() not in target.parents or not target.is_file():
            self._finish(sub_id, "ERROR", error=f"{NOT_FOUND}: the re-run on the hidden test set wrote no "
                                                f"{sub['file_name']}")
            return
        try:
            score = competition.score_submission(solution, target, self._metric(sub["competition"]))
        except competition.ScoreError as exc:
            self._finish(sub_id, "ERROR", error=f"{SCORING_ERROR}: {exc} (in the re-run on the hidden test set)")
            return
        self._finish(sub_id, "COMPLETE", score=f"{score:.5f}")

    def _metric(self, slug: str) -> str:
        return self.store.one("SELECT metric FROM competitions WHERE slug=?", slug)["metric"]

    def _progress(self, submission_id: int, text: str) -> None:
        self.store.run("UPDATE submissions SET progress=? WHERE id=?", text, submission_id)

    def _finish(self, submission_id: int, status: str, *, score: Optional[str] = None, error: str = "") -> None:
        self.store.run("UPDATE submissions SET status=?, public_score=?, error=?, progress='' WHERE id=?",
                       status, score, error, submission_id)


def notebook_source(text: str, kernel_type: str) -> str:
    """The notebook to execute: pushed notebooks as they are, scripts as a one-cell notebook."""
    if kernel_type == "notebook":
        return text
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(text)])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["kagflow"] = {"script": True}  # the executor logs no expression results for scripts
    return nbformat.writes(nb)
