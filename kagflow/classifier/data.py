"""Arena CSV loading (robust to the real data's quirks) and stratified folds."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field

from . import LABEL_COLUMNS

TEXT_COLUMNS = ("prompt", "response_a", "response_b")
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
    """Parsed rows: ``frame`` has id, prompt, response_a, response_b (lists of turns) and label (-1 if unlabeled)."""

    frame: object
    issues: list[RowIssue] = field(default_factory=list)
    skipped_ids: list = field(default_factory=list)

    def report(self, limit: int = 20) -> str:
        """A short, printable summary of the issues."""
        lines = [f"{len(self.frame)} rows parsed, {len(self.skipped_ids)} skipped, {len(self.issues)} issues"]
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


def parse_turns(cell) -> tuple[list[str], list[str]]:
    """A prompt/response cell as a list of turn strings, plus the reasons it was not clean.

    ``null`` turns become empty strings. Unparsable JSON is salvaged as one turn of raw text.
    """
    if cell is None or (isinstance(cell, float) and math.isnan(cell)):
        return [], ["missing cell"]
    reasons = []
    try:
        value = json.loads(cell)
    except (TypeError, ValueError) as exc:
        value = [_salvage(str(cell))]
        reasons.append(f"invalid JSON ({exc}); kept the raw text")
    if not isinstance(value, list):
        reasons.append(f"JSON {type(value).__name__}, not a list")
        value = [] if value is None else [value]
    turns = []
    for turn in value:
        text, replaced = clean_text("" if turn is None else str(turn))
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
    """0/1/2 (A wins / B wins / tie) from the three winner columns, or None unless exactly one is 1."""
    try:
        flags = [int(float(v)) for v in values]
    except (TypeError, ValueError):
        return None
    if sorted(flags) != [0, 0, 1]:
        return None
    return flags.index(1)


def load_arena_csv(path, *, labeled: bool | None = None) -> ArenaData:
    """Read train.csv/test.csv. Labeled rows with a bad label are reported and skipped; no other row is.

    A file that cannot be used stops with one ValueError naming it and the column: not a readable CSV (an
    unclosed quote, not UTF-8), a column missing, or labeled rows none of which has a valid label."""
    import pandas as pd

    # ids are strings everywhere ("NA", "" and "007" survive); only an empty text cell is missing
    try:
        raw = pd.read_csv(path, dtype={"id": str, **{c: str for c in TEXT_COLUMNS}}, keep_default_na=False,
                          na_values={c: [""] for c in TEXT_COLUMNS})
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path}: not UTF-8 text (byte {exc.start}); save it as UTF-8") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        detail = str(exc).strip().rpartition("C error: ")[2]  # pandas: "Error tokenizing data. C error: EOF ..."
        raise ValueError(f"{path}: not a readable CSV ({detail}); an unclosed quote makes one cell "
                         "swallow the rows after it: check the quoting there") from None
    if labeled is None:  # any label column makes it a train.csv: one missing is refused, not read as a test.csv
        labeled = any(c in raw.columns for c in LABEL_COLUMNS)
    expected = ("id", *TEXT_COLUMNS, *(LABEL_COLUMNS if labeled else ()))
    missing = [c for c in expected if c not in raw.columns]
    if missing:
        raise ValueError(f"{path}: missing columns {missing}; found {list(raw.columns)}; the competition's "
                         f"{'train' if labeled else 'test'}.csv has {', '.join(expected)}")

    records, issues, skipped = [], [], []
    for row in raw.itertuples(index=False):
        row = row._asdict()
        label = -1
        if labeled:
            label = parse_label([row[c] for c in LABEL_COLUMNS])
            if label is None:
                values = tuple(str(row[c]) for c in LABEL_COLUMNS)  # as written (pandas types each column)
                issues.append(RowIssue(row["id"], None, f"labels {values}: not exactly one 1; row skipped"))
                skipped.append(row["id"])
                continue
        record = {"id": row["id"], "label": label}
        for column in TEXT_COLUMNS:
            record[column], reasons = parse_turns(row[column])
            issues += [RowIssue(row["id"], column, reason) for reason in reasons]
        records.append(record)
    if labeled and skipped and not records:
        raise ValueError(f"{path}: no row has a valid label in {', '.join(LABEL_COLUMNS)} (exactly one 1 per row): "
                         + "; ".join(str(i) for i in issues[:3]))
    frame = pd.DataFrame(records, columns=["id", *TEXT_COLUMNS, "label"])
    return ArenaData(frame=frame, issues=issues, skipped_ids=skipped)


def read_ids(path) -> list[str]:
    """The ``id`` column of a CSV as strings, exactly as written (``NA``, ``""`` and ``007`` included)."""
    import pandas as pd

    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    if "id" not in frame.columns:
        raise ValueError(f"{path}: no id column (found {list(frame.columns)}): every test row needs its id")
    return frame["id"].tolist()


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
