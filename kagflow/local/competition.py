"""A local competition: public files, a hidden test set and solution, rules to accept, Kaggle-style scoring.

:func:`install_competition` hosts ``files_dir`` (train.csv, test.csv, sample_submission.csv, ...)
as competition ``slug``; its ``solution.csv`` (``id`` + one probability column per class) and the
files under ``hidden/`` (the hidden test set a code submission is re-run on) are kept out of the
public files. :func:`accept_rules` records a user's acceptance (downloads and submissions answer
403 before it). :func:`score_submission` checks a submission the way Kaggle's scorer does and
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

from kagflow import slugs
from kagflow.local.names import check_ident, check_name
from kagflow.local.store import Store

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
    solution = files_dir / SOLUTION
    if not solution.is_file():
        raise FileNotFoundError(f"{solution} is missing: a local competition needs its hidden solution")
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
    return [h.strip() for h in header], rows


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
        try:
            probs = [float(raw[i]) for i in order]
        except ValueError:
            raise ScoreError(f"Submission row {row_id!r} has a value that is not a number: {raw}") from None
        if any(math.isnan(p) or math.isinf(p) for p in probs):
            raise ScoreError(f"Submission row {row_id!r} has NaN or infinite values")
        if any(p < 0 or p > 1 for p in probs):
            raise ScoreError(f"Submission row {row_id!r} has values outside [0, 1]: {probs}")
        if abs(sum(probs) - 1.0) > ROW_SUM_TOLERANCE:
            raise ScoreError(f"Submission row {row_id!r} sums to {sum(probs):.6f}, not 1")
        clipped = [min(max(p, EPS), 1 - EPS) for p in probs]
        norm = sum(clipped)
        y = [float(v) for v in truth]
        total -= sum(t * math.log(p / norm) for t, p in zip(y, clipped))
    return total / max(len(sol_rows), 1)
