"""A local competition: public files, a hidden test set and solution, rules to accept, Kaggle-style scoring.

:func:`install_competition` hosts ``files_dir`` (train.csv, test.csv, sample_submission.csv, ...)
as competition ``slug``, scored by a metric of :mod:`kagflow.local.server.metrics` (``log_loss`` unless
told): its ``solution.csv`` (an id, then the columns the metric scores) and the files under ``hidden/`` (the
hidden test set a code submission is re-run on) are kept out of the public files. :func:`check_competition_files`
refuses first, with one DataError naming the file and the column or row, a folder the scorer could not use (the
competition's own schema: its solution's columns, typed by its metric, the sample submission's, the test set's ids;
what a project's kernels read of train.csv and test.csv is the project's to check, ``kagflow check``).
:func:`hosted_competition` says what is hosted under a slug (its public files, metric, whether its data is
synthetic). :func:`accept_rules` records a user's acceptance (downloads and submissions answer 403 before it).
:func:`score_submission` checks a submission the way Kaggle's scorer does, in Kaggle's words, and returns its
metric's score.
"""

from __future__ import annotations

import csv
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from kagflow.errors import DataError
from kagflow.local.server import metrics
from kagflow.local.server.metrics import ScoreError
from kagflow.local.server.names import check_ident, check_name
from kagflow.local.server.store import DATABASE, Store
from kagflow.rules import slugs
from kagflow.rules.metrics import NUMBERS, PROBABILITIES

SOLUTION = "solution.csv"
SAMPLE = "sample_submission.csv"
HIDDEN = "hidden"          # files_dir/hidden/: the hidden test set a code submission is re-run on
RERUN = "competition_rerun"  # file set: the public files with the hidden ones in their place
# The categories (HostSegment) the official client filters by, as ApiCompetition.category names them.
CATEGORIES = {"featured": "Featured", "research": "Research", "recruitment": "Recruitment",
              "gettingStarted": "Getting Started", "masters": "Masters", "playground": "Playground",
              "community": "Community", "analytics": "Analytics"}


@dataclass(frozen=True)
class Hosted:
    """A competition as the local Kaggle hosts it."""

    slug: str
    metric: str        # a name of kagflow.rules.metrics.METRICS
    synthetic: bool    # its files were made by kagflow's generator, not given by a user
    files: dict        # public file name -> the file's content on disk (what a kernel mounts)


def install_competition(data_dir: os.PathLike | str, slug: str, files_dir: os.PathLike | str, *,
                        title: Optional[str] = None, kernels_only: bool = True, metric: str = "log_loss",
                        category: str = "featured", synthetic: bool = False) -> None:
    """Host the CSVs of ``files_dir`` as competition ``slug``. Re-installing replaces them.

    ``solution.csv`` stays hidden (it scores submissions, by ``metric``: a name in
    :data:`kagflow.local.server.metrics.METRICS`); files under ``hidden/`` (e.g. the full
    ``hidden/test.csv``) are hidden too and take the place of the public files of the same name when a
    code submission is re-run, as Kaggle re-runs a notebook on its hidden test set. ``kernels_only``:
    only notebook submissions are accepted (a code competition). ``category``: a key of :data:`CATEGORIES`
    (what ``kaggle competitions list --category`` filters by). ``synthetic``: the files are kagflow's generated
    stand-in, not the competition's data (every report says so). Hidden files (a name starting with ".") are
    not hosted.
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
        public = sorted(p for p in _files(files_dir) if p.name != SOLUTION)
        blobs = {p.name: (check_name(p.name), *store.ingest_file(p), "") for p in public}
        hidden_dir = files_dir / HIDDEN
        rerun = dict(blobs)
        if hidden_dir.is_dir():
            rerun.update({p.name: (check_name(p.name), *store.ingest_file(p), "")
                          for p in _files(hidden_dir)})
        hidden = store.root / "competitions" / slug
        hidden.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(solution, hidden / (SOLUTION + ".tmp"))
        os.replace(hidden / (SOLUTION + ".tmp"), hidden / SOLUTION)
        with store.tx() as db:
            row = db.execute("SELECT id FROM competitions WHERE slug=?", (slug,)).fetchone()
            if row is None:
                comp_id = db.execute("INSERT INTO competitions (slug, title, metric, created, kernels_only, category, "
                                     "synthetic) VALUES (?, ?, ?, ?, ?, ?, ?)",
                                     (slug, title or slug.replace("-", " ").title(), metric, time.time(),
                                      int(kernels_only), category, int(synthetic))).lastrowid
            else:
                comp_id = row["id"]
                db.execute("UPDATE competitions SET kernels_only=?, metric=?, category=?, synthetic=? WHERE id=?",
                           (int(kernels_only), metric, category, int(synthetic), comp_id))
                db.execute("DELETE FROM files WHERE set_kind IN ('competition', ?) AND set_id=?", (RERUN, comp_id))
            for kind, files in (("competition", blobs), (RERUN, rerun)):
                db.executemany("INSERT INTO files VALUES (?, ?, ?, ?, ?, ?, ?)",
                               [(kind, comp_id, n, s, z, d, time.time()) for n, s, z, d in files.values()])
    finally:
        store.close()


def _files(folder: Path) -> list[Path]:
    """The files of ``folder`` a competition hosts: not its sub-folders, not hidden (dot) files."""
    return sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))


def check_competition_files(files_dir: Path, metric: str = "log_loss") -> None:
    """Refuse (DataError naming the file, the column or row, and the fix) what the scorer could not use: a missing or
    malformed ``solution.csv`` (an id, then the values ``metric`` scores: for log loss numbers in [0, 1], summing to
    1 per row when there are several columns; for accuracy and macro-F1 one label column; for ROC AUC a 0/1 truth
    holding both classes) for exactly the ids of the test set a submission is scored on (``hidden/test.csv``, else
    ``test.csv``), a ``sample_submission.csv`` with other columns or values the metric cannot read."""
    def refuse(path: Path, problem: str) -> DataError:
        return DataError(f"{path.name}: {problem}", context=f"file {path}",
                         hint=f"fix {path.name}, then host the folder again: kagflow local competition --files "
                              f"{files_dir} --metric {scorer.name}")

    scorer = metrics.get(metric)
    solution = files_dir / SOLUTION
    if not solution.is_file():
        raise refuse(solution, "is missing: a local competition needs its hidden solution (id, then the columns "
                               "its metric scores: sample_submission.csv's columns, with the true values)")
    try:
        header, rows = _read(solution, SOLUTION)
        truth = [scorer.truth_row(SOLUTION, row_id, header[1:], values) for row_id, (_, values) in rows.items()]
    except ScoreError as exc:
        raise refuse(solution, str(exc).removeprefix(SOLUTION + " ")) from None
    if len(header) < 2 or (scorer.columns and len(header) - 1 != scorer.columns):
        wanted = f"{scorer.columns} value column" if scorer.columns else "at least one value column"
        raise refuse(solution, f"has {len(header) - 1} value column(s) after its id ({', '.join(header)}); "
                               f"{scorer.title} scores {wanted}")
    try:
        scorer.score(truth, truth)  # e.g. ROC AUC of a truth holding one class only
    except ScoreError as exc:
        raise refuse(solution, f"cannot be scored by {scorer.title}: {exc}") from None
    sample = files_dir / SAMPLE
    if sample.is_file():
        try:
            sample_header, sample_rows = _read(sample, SAMPLE)
            if sample_header != header:
                raise ScoreError(f"columns {sample_header} are not the solution's {header}")
            for row_id, (_, values) in sample_rows.items():
                scorer.row(SAMPLE, row_id, header[1:], values)
        except ScoreError as exc:
            raise refuse(sample, str(exc).removeprefix(SAMPLE + " ")) from None
    test = next((p for p in (files_dir / HIDDEN / "test.csv", files_dir / "test.csv") if p.is_file()), None)
    ids = _column(test, header[0]) if test is not None else None
    if test is not None and ids is None:
        raise refuse(test, f"has no column {header[0]!r}, the id column of {SOLUTION} (its first column)")
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
        return None  # an unreadable test.csv is the project's check to report (kagflow check)


def hosted_competition(data_dir: os.PathLike | str, slug: str) -> Optional[Hosted]:
    """What the local Kaggle of ``data_dir`` hosts as ``slug`` (None: nothing, or no local Kaggle there yet). Reads
    the data folder; starts nothing."""
    if not (Path(data_dir) / DATABASE).is_file():
        return None
    store = Store(data_dir)
    try:
        row = store.one("SELECT * FROM competitions WHERE slug=?", slug)
        if row is None:
            return None
        files = {f["name"]: store.blob_path(f["sha256"]) for f in store.files_of("competition", row["id"])}
        return Hosted(slug, metrics.get(row["metric"]).name, bool(row["synthetic"]), files)
    finally:
        store.close()


def hosted_slugs(data_dir: os.PathLike | str) -> list[str]:
    """Every competition the local Kaggle of ``data_dir`` hosts."""
    if not (Path(data_dir) / DATABASE).is_file():
        return []
    store = Store(data_dir)
    try:
        return [r["slug"] for r in store.all("SELECT slug FROM competitions ORDER BY slug")]
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


def _read(path: Path, what: str) -> tuple[list[str], dict[str, tuple[int, list[str]]]]:
    """(header, {id: (line, values after the id)}): a solution (or sample) whose rows are refused, in the local
    Kaggle's words, unless each has the header's number of values and a new id."""
    return _parse(path, what, lambda row_id, line: f"{what} has a duplicate id {row_id!r}")


def _parse(path: Path, what: str, duplicate) -> tuple[list[str], dict[str, tuple[int, list[str]]]]:
    reader = None
    try:
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.reader(f)
            header = next(reader, None)
            if not header:
                raise ScoreError(f"{what} is empty")
            rows: dict[str, tuple[int, list[str]]] = {}
            for row in reader:
                if not row:
                    continue
                line = reader.line_num
                if len(row) != len(header):
                    raise ScoreError(f"{what} line {line} has {len(row)} values; the header has {len(header)}")
                if row[0] in rows:
                    raise ScoreError(duplicate(row[0], line))
                rows[row[0]] = (line, row[1:])
    except UnicodeDecodeError:
        raise ScoreError(f"{what} is not UTF-8 text") from None
    except csv.Error as exc:  # e.g. a field over the csv module's limit (an unclosed quote swallowing the file)
        raise ScoreError(f"{what} line {reader.line_num if reader else 1}: {exc}") from None
    return [h.strip() for h in header], rows


def _position(cells: list[str], index: int) -> int:
    """The character column where cell ``index`` of a CSV line starts (1-based), as Kaggle's parser counts."""
    return sum(len(c) + 1 for c in cells[:index]) + 1


def _read_submission(path: Path, expected: list[str], scorer: metrics.Metric
                     ) -> tuple[list[str], dict[str, tuple[int, list[str]]]]:
    """A submission parsed as Kaggle's submission parser does, refused in its words: every unexpected column and
    every required column not found, a key given twice, a value that is not a number where the metric reads
    numbers."""
    key = expected[0]
    header, rows = _parse(path, "Submission", lambda row_id, line: (
        f"ERROR: The value {row_id!r} in the key column {key!r} has already been defined (Line {line}, Column 1)"))
    errors = [f"ERROR: Unexpected Column: {name!r} (Line 1, Column {_position(header, k)})"
              for k, name in enumerate(header) if name not in expected]
    errors += [f"ERROR: Required column {name!r} could not be found" for name in expected if name not in header]
    if header and header[0] != key and not errors:
        errors.append(f"ERROR: {key!r} must be the first column (the key column), not {header[0]!r}")
    if errors:
        raise ScoreError("\n".join(errors))
    if scorer.facts.reads in (PROBABILITIES, NUMBERS):
        for row_id, (line, values) in rows.items():
            for k, cell in enumerate(values):
                try:
                    float(cell)
                except ValueError:
                    raise ScoreError(f"ERROR: Could not parse {cell!r} into expected type of Double (Line {line}, "
                                     f"Column {_position([row_id, *values], k + 1)})") from None
    return header, rows


def score_submission(solution: os.PathLike | str, submission: os.PathLike | str, metric: str = "log_loss") -> float:
    """``metric``'s score of ``submission`` against ``solution``; :class:`ScoreError` in Kaggle's words if it is
    malformed.

    Checks, as Kaggle's scorer: the solution's columns (in any order after the id; each unexpected or missing one
    named), each key once, numbers where the metric reads numbers, the solution's number of rows, every id of the
    solution, then each row's values as the metric needs them (for log loss: numbers in [0, 1], no NaN, each row
    summing to 1 within ``metrics.ROW_SUM_TOLERANCE``). Then the metric scores every row.
    """
    scorer = metrics.get(metric)
    sol_header, sol_rows = _read(Path(solution), "solution")
    if not Path(submission).is_file():
        raise ScoreError(f"Submission file {Path(submission).name!r} was not found in the notebook's output")
    sub_header, sub_rows = _read_submission(Path(submission), sol_header, scorer)
    if len(sub_rows) != len(sol_rows):
        raise ScoreError(f"Evaluation Exception: Submission must have {len(sol_rows)} rows")
    missing = sorted(sol_rows.keys() - sub_rows.keys())
    if missing:
        raise ScoreError(f"ERROR: Unable to find {len(missing)} required key values in the {sol_header[0]!r} column "
                         f"(e.g. {missing[:3]})")
    order = [sub_header.index(c) - 1 for c in sol_header[1:]]
    truth, predicted = [], []
    for row_id, (_, values) in sol_rows.items():
        raw = sub_rows[row_id][1]
        predicted.append(scorer.row("Submission", row_id, sol_header[1:], [raw[i] for i in order]))
        truth.append(scorer.truth_row("Solution", row_id, sol_header[1:], values))  # hosted before it was checked
    return scorer.score(truth, predicted)
