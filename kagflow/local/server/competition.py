"""A local competition: public files, a hidden test set and solution, rules to accept, Kaggle-style scoring.

:func:`install_competition` hosts ``files_dir`` (train.csv, test.csv, sample_submission.csv, ...)
as competition ``slug``, scored by a metric of :mod:`kagflow.local.server.metrics` (``log_loss`` unless
told): its ``solution.csv`` (an id, then the columns the metric scores) and the files under ``hidden/`` (the
hidden test set a code submission is re-run on) are kept out of the public files. :func:`check_competition_files`
refuses first, with one DataError naming the file and the column or row, a folder the kernels or the scorer
could not use (the arena's train/test columns too, for a competition whose solution has the arena's labels).
:func:`accept_rules` records a user's acceptance (downloads and submissions answer 403 before it).
:func:`score_submission` checks a submission the way Kaggle's scorer does and returns its metric's score.
"""

from __future__ import annotations

import csv
import os
import shutil
import time
from pathlib import Path
from typing import Optional

from kagflow.rules import slugs
from kagflow.errors import DataError
from kagflow.local.server import metrics
from kagflow.local.server.metrics import ScoreError  # noqa: F401 - raised by score_submission
from kagflow.local.server.names import check_ident, check_name
from kagflow.local.server.store import Store

SOLUTION = "solution.csv"
HIDDEN = "hidden"          # files_dir/hidden/: the hidden test set a code submission is re-run on
RERUN = "competition_rerun"  # file set: the public files with the hidden ones in their place
# The categories (HostSegment) the official client filters by, as ApiCompetition.category names them.
CATEGORIES = {"featured": "Featured", "research": "Research", "recruitment": "Recruitment",
              "gettingStarted": "Getting Started", "masters": "Masters", "playground": "Playground",
              "community": "Community", "analytics": "Analytics"}


def install_competition(data_dir: os.PathLike | str, slug: str, files_dir: os.PathLike | str, *,
                        title: Optional[str] = None, kernels_only: bool = True, metric: str = "log_loss",
                        category: str = "featured") -> None:
    """Host the CSVs of ``files_dir`` as competition ``slug``. Re-installing replaces them.

    ``solution.csv`` stays hidden (it scores submissions, by ``metric``: a name in
    :data:`kagflow.local.server.metrics.METRICS`); files under ``hidden/`` (e.g. the full
    ``hidden/test.csv``) are hidden too and take the place of the public files of the same name when a
    code submission is re-run, as Kaggle re-runs a notebook on its hidden test set. ``kernels_only``:
    only notebook submissions are accepted (a code competition). ``category``: a key of :data:`CATEGORIES`
    (what ``kaggle competitions list --category`` filters by).
    """
    slugs.check_competition(slug)
    if category not in CATEGORIES:
        raise ValueError(f"unknown competition category {category!r}: use one of {', '.join(CATEGORIES)}")
    metric = metrics.get(metric).name
    files_dir = Path(files_dir)
    check_competition_files(files_dir, metric)
    solution = files_dir / SOLUTION
    store = Store(data_dir)
    try:
        public = sorted(p for p in files_dir.iterdir() if p.is_file() and p.name != SOLUTION)
        blobs = {p.name: (check_name(p.name), *store.ingest_file(p), "") for p in public}
        hidden_dir = files_dir / HIDDEN
        rerun = dict(blobs)
        if hidden_dir.is_dir():
            rerun.update({p.name: (check_name(p.name), *store.ingest_file(p), "")
                          for p in sorted(hidden_dir.iterdir()) if p.is_file()})
        hidden = store.root / "competitions" / slug
        hidden.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(solution, hidden / (SOLUTION + ".tmp"))
        os.replace(hidden / (SOLUTION + ".tmp"), hidden / SOLUTION)
        with store.tx() as db:
            row = db.execute("SELECT id FROM competitions WHERE slug=?", (slug,)).fetchone()
            if row is None:
                comp_id = db.execute("INSERT INTO competitions (slug, title, metric, created, kernels_only, category) "
                                     "VALUES (?, ?, ?, ?, ?, ?)", (slug, title or slug.replace("-", " ").title(),
                                                                   metric, time.time(), int(kernels_only),
                                                                   category)).lastrowid
            else:
                comp_id = row["id"]
                db.execute("UPDATE competitions SET kernels_only=?, metric=?, category=? WHERE id=?",
                           (int(kernels_only), metric, category, comp_id))
                db.execute("DELETE FROM files WHERE set_kind IN ('competition', ?) AND set_id=?", (RERUN, comp_id))
            for kind, files in (("competition", blobs), (RERUN, rerun)):
                db.executemany("INSERT INTO files VALUES (?, ?, ?, ?, ?, ?, ?)",
                               [(kind, comp_id, n, s, z, d, time.time()) for n, s, z, d in files.values()])
    finally:
        store.close()


def check_competition_files(files_dir: Path, metric: str = "log_loss") -> None:
    """Refuse (DataError naming the file, the column or row, and the fix) what the kernels or the scorer could not
    use: a missing or malformed ``solution.csv`` (an id, then values ``metric`` scores: for log loss numbers in
    [0, 1], summing to 1 per row when there are several columns) for exactly the ids of the test set a submission
    is scored on, a ``sample_submission.csv`` with other columns; for the arena (a solution with its labels), a
    ``train.csv``/``test.csv`` (and their ``hidden/`` twins) without the arena's columns, unreadable, or with no
    valid label at all. Rows the classifier salvages (a bad label, an empty turn) are not refused: kernels report
    them by id."""
    from kagflow.classifier import LABEL_COLUMNS
    from kagflow.classifier.data import load_arena_csv

    def refuse(path: Path, problem: str) -> DataError:
        return DataError(f"{path.name}: {problem}", context=f"file {path}",
                         hint=f"fix {path.name}, then host the folder again: kagflow local competition --files "
                              f"{files_dir}")

    scorer = metrics.get(metric)
    solution = files_dir / SOLUTION
    if not solution.is_file():
        raise refuse(solution, "is missing: a local competition needs its hidden solution (id, then the columns "
                               "its metric scores, e.g. id,winner_model_a,winner_model_b,winner_tie)")
    try:
        header, rows = _read(solution, SOLUTION)
        for row_id, values in rows.items():
            scorer.row(SOLUTION, row_id, header[1:], values)
    except ScoreError as exc:
        raise refuse(solution, str(exc).removeprefix(SOLUTION + " ")) from None
    sample = files_dir / "sample_submission.csv"
    if sample.is_file():
        try:
            sample_header, _ = _read(sample, sample.name)
        except ScoreError as exc:
            raise refuse(sample, str(exc).removeprefix(sample.name + " ")) from None
        if sample_header != header:
            raise refuse(sample, f"columns {sample_header} are not the solution's {header}")
    if sorted(header[1:]) == sorted(LABEL_COLUMNS):  # the arena: its kernels read train.csv and test.csv
        for name, labeled in (("train.csv", True), ("test.csv", False)):
            for path in (files_dir / name, files_dir / HIDDEN / name):
                if path.is_file():
                    try:
                        load_arena_csv(path, labeled=labeled)
                    except ValueError as exc:
                        raise refuse(path, str(exc).removeprefix(f"{path}: ")) from None
    test = next((p for p in (files_dir / HIDDEN / "test.csv", files_dir / "test.csv") if p.is_file()), None)
    ids = _column(test, header[0]) if test is not None else None
    if ids is not None:
        missing, extra = sorted(set(ids) - rows.keys()), sorted(rows.keys() - set(ids))
        if missing or extra:
            raise refuse(solution, f"its ids are not those of {test.relative_to(files_dir)}, the test set a "
                                   f"submission is scored on: {len(missing)} missing (e.g. {missing[:3]}), "
                                   f"{len(extra)} not in the test set (e.g. {extra[:3]})")


def _column(path: Path, name: str) -> Optional[list[str]]:
    """The cells of column ``name`` of a CSV as written, None when it has no such column."""
    try:
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.reader(f)
            head = [h.strip() for h in next(reader, [])]
            if name not in head:
                return None
            at = head.index(name)
            return [row[at] for row in reader if row and len(row) > at]
    except (UnicodeDecodeError, csv.Error):
        return None  # an unreadable test.csv is the arena check's (or the kernels') to report


def accept_rules(data_dir: os.PathLike | str, slug: str, username: str) -> None:
    """Record that ``username`` accepted competition ``slug``'s rules (Kaggle: a click on the rules page)."""
    slugs.check_competition(slug)
    check_ident(username, what="username")
    store = Store(data_dir)
    try:
        if store.one("SELECT 1 FROM competitions WHERE slug=?", slug) is None:
            raise FileNotFoundError(f"competition {slug!r} is not hosted in {store.root}")
        store.run("INSERT OR IGNORE INTO rules_accepted VALUES (?, ?, ?)", slug, username, time.time())
    finally:
        store.close()


def rules_accepted(store: Store, slug: str, username: Optional[str]) -> bool:
    return bool(username) and store.one("SELECT 1 FROM rules_accepted WHERE competition=? AND username=?",
                                        slug, username) is not None


def solution_path(store: Store, slug: str) -> Path:
    return store.root / "competitions" / slug / SOLUTION


def _read(path: Path, what: str) -> tuple[list[str], dict[str, list[str]]]:
    reader = None
    try:
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.reader(f)
            header = next(reader, None)
            if not header:
                raise ScoreError(f"{what} is empty")
            rows: dict[str, list[str]] = {}
            for n, row in enumerate(reader, start=2):
                if not row:
                    continue
                if len(row) != len(header):
                    raise ScoreError(f"{what} line {n} has {len(row)} values; the header has {len(header)}")
                if row[0] in rows:
                    raise ScoreError(f"{what} has a duplicate id {row[0]!r}")
                rows[row[0]] = row[1:]
    except UnicodeDecodeError:
        raise ScoreError(f"{what} is not UTF-8 text") from None
    except csv.Error as exc:  # e.g. a field over the csv module's limit (an unclosed quote swallowing the file)
        raise ScoreError(f"{what} line {reader.line_num if reader else 1}: {exc}") from None
    return [h.strip() for h in header], rows


def score_submission(solution: os.PathLike | str, submission: os.PathLike | str, metric: str = "log_loss") -> float:
    """``metric``'s score of ``submission`` against ``solution``; :class:`ScoreError` if it is malformed.

    Checks, as Kaggle's scorer: the solution's columns (in any order after the id), the same ids exactly once,
    and each row's values as the metric needs them (for log loss: numbers in [0, 1], no NaN, each row summing
    to 1 within ``metrics.ROW_SUM_TOLERANCE``). Then the metric scores every row.
    """
    scorer = metrics.get(metric)
    sol_header, sol_rows = _read(Path(solution), "solution")
    if not Path(submission).is_file():
        raise ScoreError(f"Submission file {Path(submission).name!r} was not found in the notebook's output")
    sub_header, sub_rows = _read(Path(submission), "submission")
    if sorted(sub_header) != sorted(sol_header) or sub_header[0] != sol_header[0]:
        raise ScoreError(f"Submission columns {sub_header} do not match the expected {sol_header}")
    order = [sub_header.index(c) - 1 for c in sol_header[1:]]
    missing = sol_rows.keys() - sub_rows.keys()
    extra = sub_rows.keys() - sol_rows.keys()
    if missing or extra:
        sample = sorted(missing)[:3] if missing else sorted(extra)[:3]
        raise ScoreError(f"Submission ids do not match the test set: {len(missing)} missing, {len(extra)} "
                         f"unexpected (e.g. {sample})")
    truth, predicted = [], []
    for row_id, values in sol_rows.items():
        raw = sub_rows[row_id]
        predicted.append(scorer.row("Submission", row_id, sol_header[1:], [raw[i] for i in order]))
        truth.append(scorer.row("Solution", row_id, sol_header[1:], values))  # hosted before it was checked
    return scorer.score(truth, predicted)
