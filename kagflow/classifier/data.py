"""Competition CSV loading by the task (robust to the real data's quirks) and stratified folds.

A text cell is a JSON list of turns (LMSYS: ``["turn 1", null]``) or plain text (WSDM), decided per cell: one that
parses as a JSON list of strings and nulls is turns, anything else one turn of plain text, except a cell that opens
like a list of strings but is cut or broken (``["text...``), which is salvaged as one turn and reported.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field

from .task import Task

LONE_SURROGATE = "lone surrogate replaced with U+FFFD"
# A longer turn keeps its head only: the model reads at most max_length tokens of a part (text.fit_turns keeps an
# oversized turn's head), and 1 Mi characters hold more than 8192 tokens of any text whose tokens average under
# 128 characters, so the cut changes no model input while a row of hundreds of megabytes no longer costs
# gigabytes of token ids.
MAX_TURN_CHARS = 1 << 20


@dataclass(frozen=True)
class RowIssue:
    """Why a row did not parse cleanly (``column`` is None for label problems)."""

    id: object
    column: str | None
    reason: str

    def __str__(self) -> str:
        return f"id={self.id}" + (f" {self.column}" if self.column else "") + f": {self.reason}"


@dataclass
class ArenaData:
    """Parsed rows: ``frame`` has id, the task's text columns (lists of turns) and label (the class index, -1 if
    unlabeled); ``unseen_labels``: classes no labeled row has (the model never learns them)."""

    frame: object
    issues: list[RowIssue] = field(default_factory=list)
    skipped_ids: list = field(default_factory=list)
    unseen_labels: list[str] = field(default_factory=list)

    def report(self, limit: int = 20) -> str:
        """A short, printable summary of the issues."""
        lines = [f"{len(self.frame)} rows parsed, {len(self.skipped_ids)} skipped, {len(self.issues)} issues"]
        if self.unseen_labels:
            lines.append(f"  warning: no row has the label(s) {self.unseen_labels}: the model never learns them")
        lines += [f"  {issue}" for issue in self.issues[:limit]]
        if len(self.issues) > limit:
            lines.append(f"  ... and {len(self.issues) - limit} more")
        return "\n".join(lines)


def clean_text(text: str) -> tuple[str, bool]:
    """Replace lone surrogates (which tokenizers cannot encode) with U+FFFD; say whether any were."""
    try:
        text.encode("utf-8")
        return text, False
    except UnicodeEncodeError:
        return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace"), True


LOOKS_LIKE_TURNS = re.compile(r"\[\s*(?:\"|null\b)")  # how a JSON list of turns opens


def parse_turns(cell) -> tuple[list[str], list[str]]:
    """A text cell as a list of turn strings, plus the reasons it was not clean.

    A JSON list of strings and nulls is turns (``null`` turns become empty strings); any other cell is one turn of
    plain text; a cell that opens like a list of turns but does not parse is salvaged as one turn of its raw text."""
    if cell is None or (isinstance(cell, float) and math.isnan(cell)):
        return [], ["missing cell"]
    raw, reasons = str(cell), []
    try:
        value = json.loads(raw)
    except (TypeError, ValueError) as exc:
        value = None
        if LOOKS_LIKE_TURNS.match(raw.lstrip()):
            value = [_salvage(raw)]
            reasons.append(f"invalid JSON ({exc}); kept the raw text")
    if not (isinstance(value, list) and all(t is None or isinstance(t, str) for t in value)):
        value = [raw]  # plain text
    turns = []
    for turn in value:
        text, replaced = clean_text("" if turn is None else turn)
        if replaced and LONE_SURROGATE not in reasons:
            reasons.append(LONE_SURROGATE)
        if len(text) > MAX_TURN_CHARS:
            reasons.append(f"a turn of {len(text)} characters kept to its first {MAX_TURN_CHARS}")
            text = text[:MAX_TURN_CHARS]
        turns.append(text)
    return turns, reasons


def _salvage(raw: str) -> str:
    inner = raw.strip().removeprefix("[").removesuffix("]").strip().removeprefix('"').removesuffix('"')
    try:
        return json.loads(f'"{inner}"')
    except ValueError:
        return inner


def parse_label(values) -> int | None:
    """The class of one-hot label cells (the position of the 1), or None unless exactly one is 1 and the rest 0."""
    try:
        flags = [int(float(v)) for v in values]
    except (TypeError, ValueError):
        return None
    if sorted(flags) != [0] * (len(flags) - 1) + [1]:
        return None
    return flags.index(1)


SOFT_TOLERANCE = 1e-3  # how far a probability target's sum may be from 1 (a CSV's rounded decimals)


def parse_probabilities(values, n: int) -> list[float] | None:
    """``n`` cells as a probability target (each in [0, 1], summing to 1 within SOFT_TOLERANCE, renormalised),
    or None (an empty, non-numeric or out-of-range cell)."""
    try:
        probs = [float(v) for v in values]
    except (TypeError, ValueError):
        return None
    if len(probs) != n or any(not 0 <= p <= 1 for p in probs) or abs(sum(probs) - 1) > SOFT_TOLERANCE:
        return None
    return [p / sum(probs) for p in probs]


def _soft_target(task: Task, row: dict, soft_columns) -> list[float] | None:
    """A row's probability target: its ``soft_columns`` where filled, else its label columns where they hold
    probabilities that are not one-hot; None: the row's hard label is its target."""
    if soft_columns:
        target = parse_probabilities([row[c] for c in soft_columns], task.n_labels)
        if target is not None:
            return target
    if task.label_columns:
        target = parse_probabilities([row[c] for c in task.label_columns], task.n_labels)
        if target is not None and parse_label([row[c] for c in task.label_columns]) is None:
            return target
    return None


def _row_label(task: Task, row: dict) -> tuple[int | None, str]:
    """(class index or None, why not) of a labeled row."""
    if task.label_columns:
        label = parse_label([row[c] for c in task.label_columns])
        values = tuple(str(row[c]) for c in task.label_columns)  # as written (pandas types each column)
        return label, f"labels {values}: not exactly one 1; row skipped"
    value = row[task.label_column]
    if not str(value).strip():
        return None, f"{task.label_column} is empty; row skipped"
    return task.label_index(value), f"{task.label_column} = {value!r} is not one of labels {list(task.labels)}; " \
                                    "row skipped"


def load_arena_csv(path, *, labeled: bool | None = None, task: Task | None = None,
                   soft_columns: tuple[str, ...] | None = None) -> ArenaData:
    """Read a train or test CSV of ``task`` (default: LMSYS). Labeled rows with a bad label are reported by id and
    skipped; no other row is.

    ``soft_columns`` (not None: ``[train] soft_labels``) keeps probability targets: the frame gains a ``target``
    column, a row's probabilities (from ``soft_columns``, one per class, where filled, or label cells holding
    probabilities) or None for a one-hot row; ``label`` is then the target's most probable class.

    A file that cannot be used stops with one ValueError naming it and the column: not a readable CSV (an
    unclosed quote, not UTF-8), a column missing, or labeled rows none of which has a valid label."""
    import pandas as pd

    task = task or Task()
    label_columns = task.label_columns or (task.label_column,)
    texts = task.text_columns
    # ids and labels are strings everywhere ("NA", "" and "007" survive); only an empty text cell is missing
    try:
        raw = pd.read_csv(path, dtype={task.id_column: str, **{c: str for c in (*texts, task.label_column) if c}},
                          keep_default_na=False, na_values={c: [""] for c in texts})
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path}: not UTF-8 text (byte {exc.start}); save it as UTF-8") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        detail = str(exc).strip().rpartition("C error: ")[2]  # pandas: "Error tokenizing data. C error: EOF ..."
        raise ValueError(f"{path}: not a readable CSV ({detail}); an unclosed quote makes one cell "
                         "swallow the rows after it: check the quoting there") from None
    if labeled is None:  # any label column makes it a train file: one missing is refused, not read as a test file
        labeled = any(c in raw.columns for c in label_columns)
    soft = soft_columns is not None and labeled
    expected = (task.id_column, *texts, *(label_columns if labeled else ()), *(soft_columns or () if soft else ()))
    missing = [c for c in expected if c not in raw.columns]
    if missing:
        raise ValueError(f"{path}: missing columns {missing}; found {list(raw.columns)}; the competition's "
                         f"{task.train_file if labeled else task.test_file} has {', '.join(expected)} ([data])")

    records, issues, skipped = [], [], []
    for row in raw.to_dict("records"):
        row_id = row[task.id_column]
        label, target = -1, None
        if labeled:
            label, why = _row_label(task, row)
            target = _soft_target(task, row, soft_columns) if soft else None
            if target is not None:
                label = max(range(len(target)), key=target.__getitem__)
            elif label is None:
                issues.append(RowIssue(row_id, None, why + (" (nor a probability target)" if soft else "")))
                skipped.append(row_id)
                continue
        record = {"id": row_id, "label": label, **({"target": target} if soft else {})}
        for column in texts:
            record[column], reasons = parse_turns(row[column])
            issues += [RowIssue(row_id, column, reason) for reason in reasons]
        records.append(record)
    if labeled and skipped and not records:
        where = ", ".join(task.label_columns) + " (exactly one 1 per row)" if task.label_columns else \
            f"{task.label_column} (one of labels {list(task.labels)})"
        raise ValueError(f"{path}: no row has a valid label in {where}: " + "; ".join(str(i) for i in issues[:3]))
    frame = pd.DataFrame(records, columns=["id", *texts, "label", *(["target"] if soft else [])])
    seen = set(frame["label"]) if labeled else set(range(task.n_labels))
    unseen = [name for k, name in task.id2label.items() if k not in seen]
    return ArenaData(frame=frame, issues=issues, skipped_ids=skipped, unseen_labels=unseen)


def read_ids(path, id_column: str = "id") -> list[str]:
    """The id column of a CSV as strings, exactly as written (``NA``, ``""`` and ``007`` included)."""
    import pandas as pd

    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    if id_column not in frame.columns:
        raise ValueError(f"{path}: no {id_column} column (found {list(frame.columns)}): every test row needs its id "
                         "([data] id_column)")
    return frame[id_column].tolist()


def check_test_ids(ids, path) -> None:
    """Stop with one message when test rows share an id: their predictions could not be told apart."""
    from collections import Counter

    repeated = {value: n for value, n in Counter(ids).items() if n > 1}
    if repeated:
        shown = ", ".join(f"{v!r} ({n} rows)" for v, n in list(repeated.items())[:10])
        raise ValueError(f"{path}: {len(repeated)} id(s) appear on more than one row: {shown}; every test "
                         "row needs its own id, or the submission cannot be scored")


def stratified_fold(labels, n_splits: int, fold_idx: int, seed: int = 42):
    """(train_idx, val_idx) of fold ``fold_idx`` of a shuffled StratifiedKFold."""
    import numpy as np
    from sklearn.model_selection import StratifiedKFold

    if not 0 <= fold_idx < n_splits:
        raise ValueError(f"fold_idx={fold_idx} is outside 0..{n_splits - 1}")
    labels = np.asarray(labels)
    skf = StratifiedKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    train_idx, val_idx = list(skf.split(np.zeros(len(labels)), labels))[fold_idx]
    return train_idx, val_idx
