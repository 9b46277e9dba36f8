"""A local competition: public files, a hidden test set and solution, rules to accept, Kaggle-style scoring.

:func:`install_competition` hosts ``files_dir`` (train.csv, test.csv, sample_submission.csv, ...)
as competition ``slug``; its ``solution.csv`` (``id`` + one probability column per class) and the
files under ``hidden/`` (the hidden test set a code submission is re-run on) are kept out of the
public files. :func:`check_competition_files` refuses first, with one DataError naming the file and the column or
row, a folder the kernels or the scorer could not use. :func:`accept_rules` records a user's acceptance (downloads
and submissions answer 403 before it). :func:`score_submission` checks a submission the way Kaggle's scorer does and
returns the multi-class log loss.
"""

from __future__ import annotations

import csv
import math
import os
import shutil
import time
from pathlib import Path
from typing import Optional

from kagflow.errors import DataError
from kagflow.local.server.names import check_ident, check_name
from kagflow.local.server.store import Store
from kagflow.rules import slugs

SOLUTION = "solution.csv"
HIDDEN = "hidden"          # files_dir/hidden/: the hidden test set a code submission is re-run on
RERUN = "competition_rerun"  # file set: the public files with the hidden ones in their place
EPS = 1e-15
ROW_SUM_TOLERANCE = 1e-3
METRIC = "multiclass log loss"


class ScoreError(ValueError):
    """A submission Kaggle would refuse; the message is what the submission's error says."""


def install_competition(data_dir: os.PathLike | str, slug: str, files_dir: os.PathLike | str, *,
                        title: Optional[str] = None, kernels_only: bool = True) -> None:
    """Host the CSVs of ``files_dir`` as competition ``slug``. Re-installing replaces them.

    ``solution.csv`` stays hidden (it scores submissions); files under ``hidden/`` (e.g. the full
    ``hidden/test.csv``) are hidden too and take the place of the public files of the same name when a
    code submission is re-run, as Kaggle re-runs a notebook on its hidden test set. ``kernels_only``:
    only notebook submissions are accepted (a code competition).
    """
    slugs.check_competition(slug)
    files_dir = Path(files_dir)
    check_competition_files(files_dir)
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
                comp_id = db.execute("INSERT INTO competitions (slug, title, metric, created, kernels_only) VALUES "
                                     "(?, ?, ?, ?, ?)", (slug, title or slug.replace("-", " ").title(), METRIC,
                                                         time.time(), int(kernels_only))).lastrowid
            else:
                comp_id = row["id"]
                db.execute("UPDATE competitions SET kernels_only=? WHERE id=?", (int(kernels_only), comp_id))
                db.execute("DELETE FROM files WHERE set_kind IN ('competition', ?) AND set_id=?", (RERUN, comp_id))
            for kind, files in (("competition", blobs), (RERUN, rerun)):
                db.executemany("INSERT INTO files VALUES (?, ?, ?, ?, ?, ?, ?)",
                               [(kind, comp_id, n, s, z, d, time.time()) for n, s, z, d in files.values()])
    finally:
        store.close()


def check_competition_files(files_dir: Path) -> None:
    """Refuse (DataError naming the file, the column or row, and the fix) what the kernels or the scorer could not
    use: a missing or malformed ``solution.csv`` (an id, then numbers in [0, 1] summing to 1 per row, for exactly
    the ids of the test set a submission is scored on), a ``sample_submission.csv`` with other columns, a
    ``train.csv``/``test.csv`` (and their ``hidden/`` twins) without the arena's columns, unreadable, or with no
    valid label at all. Rows the classifier salvages (a bad label, an empty turn) are not refused: kernels report
    them by id."""
    from kagflow.classifier.data import load_arena_csv, read_ids

    def refuse(path: Path, problem: str) -> DataError:
        return DataError(f"{path.name}: {problem}", context=f"file {path}",
                         hint=f"fix {path.name}, then host the folder again: kagflow local competition --files "
                              f"{files_dir}")

    solution = files_dir / SOLUTION
    if not solution.is_file():
        raise refuse(solution, "is missing: a local competition needs its hidden solution (id, then one "
                               "probability column per class, e.g. id,winner_model_a,winner_model_b,winner_tie)")
    try:
        header, rows = _read(solution, SOLUTION)
        for row_id, values in rows.items():
            _probabilities(SOLUTION, row_id, header[1:], values)
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
    for name, labeled in (("train.csv", True), ("test.csv", False)):
        for path in (files_dir / name, files_dir / HIDDEN / name):
            if path.is_file():
                try:
                    load_arena_csv(path, labeled=labeled)
                except ValueError as exc:
                    raise refuse(path, str(exc).removeprefix(f"{path}: ")) from None
    test = next((p for p in (files_dir / HIDDEN / "test.csv", files_dir / "test.csv") if p.is_file()), None)
    if test is not None:
        ids = set(read_ids(test))
        missing, extra = sorted(ids - rows.keys()), sorted(rows.keys() - ids)
        if missing or extra:
            raise refuse(solution, f"its ids are not those of {test.relative_to(files_dir)}, the test set a "
                                   f"submission is scored on: {len(missing)} missing (e.g. {missing[:3]}), "
                                   f"{len(extra)} not in the test set (e.g. {extra[:3]})")


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


def _probabilities(what: str, row_id: str, columns: list[str], values: list[str]) -> list[float]:
    """One row's probabilities, refused (ScoreError naming the row and column) unless each is a number in [0, 1]
    and they sum to 1."""
    probs = []
    for column, value in zip(columns, values):
        try:
            p = float(value)
        except ValueError:
            raise ScoreError(f"{what} row {row_id!r} has a value that is not a number: {column} = {value!r}") from None
        if math.isnan(p) or math.isinf(p):
            raise ScoreError(f"{what} row {row_id!r} has NaN or infinite values: {column} = {value}")
        if p < 0 or p > 1:
            raise ScoreError(f"{what} row {row_id!r} has values outside [0, 1]: {column} = {p}")
        probs.append(p)
    if abs(sum(probs) - 1.0) > ROW_SUM_TOLERANCE:
        raise ScoreError(f"{what} row {row_id!r} sums to {sum(probs):.6f}, not 1")
    return probs


def score_submission(solution: os.PathLike | str, submission: os.PathLike | str) -> float:
    """Multi-class log loss of ``submission`` against ``solution``; :class:`ScoreError` if it is malformed.

    Checks: same columns as the solution, the same ids exactly once, numbers only (no NaN),
    each value in [0, 1], each row summing to 1 (within ``ROW_SUM_TOLERANCE``). Then, as
    Kaggle's scorer: clip to [1e-15, 1 - 1e-15], renormalise each row, average -sum(y log p).
    """
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
    total = 0.0
    for row_id, truth in sol_rows.items():
        raw = sub_rows[row_id]
        probs = _probabilities("Submission", row_id, sol_header[1:], [raw[i] for i in order])
        y = _probabilities("Solution", row_id, sol_header[1:], truth)  # hosted before it was checked
        clipped = [min(max(p, EPS), 1 - EPS) for p in probs]
        norm = sum(clipped)
        total -= sum(t * math.log(p / norm) for t, p in zip(y, clipped))
    return total / max(len(sol_rows), 1)
