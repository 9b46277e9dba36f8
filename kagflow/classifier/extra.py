"""Training rows beyond the competition's fold: extra CSVs and pseudo-labels (deduplicated against the competition's
rows, validation fold included, and only ever trained on), and swap augmentation of the training rows.

Frames are ``data.load_arena_csv``'s (id, the text columns as lists of turns, label, and ``target`` where soft
labels are on: a probability list or None). ``[train] extra_train_files`` / ``pseudo_label_files`` entries are
``owner/slug/file.csv`` in a Kaggle dataset the train kernel mounts (``paths.find_dataset_file``), or a path.
"""

from __future__ import annotations

import random
import re
import unicodedata
from dataclasses import dataclass

from .data import load_arena_csv, parse_probabilities, read_ids
from .task import Task

SPACES = re.compile(r"\s+")


def normalise(turns) -> str:
    """A text cell's comparison key: its turns joined, NFKC-normalised, case-folded, runs of spaces made one."""
    text = "\n".join(str(t) for t in turns)
    return SPACES.sub(" ", unicodedata.normalize("NFKC", text).casefold()).strip()


def row_keys(frame, task: Task) -> list[tuple[str, ...]]:
    """Each row's texts (``task.text_columns``, normalised) as one key."""
    return list(zip(*(map(normalise, frame[c]) for c in task.text_columns)))


def _swapped_key(key: tuple[str, ...], task: Task) -> tuple[str, ...]:
    position = {c: i for i, c in enumerate(task.text_columns)}
    return tuple(key[position[c]] for c in task.swapped_columns())


@dataclass
class Deduplicated:
    """Extra rows kept, and how many were dropped for matching a competition row or an earlier extra row."""

    frame: object
    dropped_competition: int
    dropped_repeated: int

    def report(self, name: str) -> str:
        return (f"{name}: {len(self.frame)} rows kept; dropped {self.dropped_competition} matching a competition "
                f"row (training or validation) and {self.dropped_repeated} repeated")


def deduplicate(extra, competition, task: Task) -> Deduplicated:
    """The rows of ``extra`` whose normalised texts match no row of ``competition`` (all of it: the validation fold
    too, so no validation row is trained on) nor an earlier row of ``extra``. For a pairwise task a row with the two
    swap columns exchanged is the same row."""
    base = set(row_keys(competition, task))
    if task.pairwise:
        base |= {_swapped_key(k, task) for k in base}
    own: set = set()
    keep, from_competition, repeated = [], 0, 0
    for i, key in enumerate(row_keys(extra, task)):
        if key in base:
            from_competition += 1
            continue
        if key in own:
            repeated += 1
            continue
        own.add(key)
        if task.pairwise:
            own.add(_swapped_key(key, task))
        keep.append(i)
    return Deduplicated(extra.iloc[keep].reset_index(drop=True), from_competition, repeated)


def swap_augment(frame, task: Task, p: float, seed: int):
    """``frame`` with each row, with probability ``p`` (``random.Random(seed)``), having its two swap columns
    exchanged and its label (and probability target) swapped as swap TTA does (``Task.swap_order``: the first two
    labels trade places, a tie stays). ``p = 0`` returns ``frame`` itself; the count swapped is ``frame.attrs``'
    ``"swapped"``."""
    if not p:
        return frame
    if not task.pairwise:
        raise ValueError("swap_augmentation needs [data] swap_columns (two texts a pairwise task compares)")
    rng = random.Random(seed)
    chosen = [rng.random() < p for _ in range(len(frame))]
    out = frame.copy()
    a, b = task.swap_columns
    order = task.swap_order
    idx = [i for i, c in enumerate(chosen) if c]
    out.iloc[idx, out.columns.get_loc(a)] = frame[b].iloc[idx].values
    out.iloc[idx, out.columns.get_loc(b)] = frame[a].iloc[idx].values
    out["label"] = [order[y] if c else y for y, c in zip(frame["label"], chosen)]
    if "target" in frame.columns:
        out["target"] = [[t[k] for k in order] if c and isinstance(t, list) else t
                         for t, c in zip(frame["target"], chosen)]
    out.attrs["swapped"] = len(idx)
    return out


def load_extra(paths, task: Task, soft_columns=None):
    """The rows of each extra CSV (``[data]``'s schema: a missing column is refused naming the file), one frame."""
    import pandas as pd

    frames = []
    for path in paths:
        data = load_arena_csv(path, labeled=True, task=task, soft_columns=soft_columns)
        print(f"extra train file {path}: {data.report()}", flush=True)
        frames.append(data.frame)
    return pd.concat(frames, ignore_index=True) if frames else None


def pseudo_labels(submission_csv, test_csv, task: Task):
    """Soft-labelled rows: the test rows of ``test_csv`` with the probabilities ``submission_csv`` (a probabilities
    submission: the id, then one column per class) predicts for them, joined by id. Refused with the file and the
    ids when the submission names ids the test file lacks, misses a probability column or holds a row that is not
    a probability distribution."""
    import pandas as pd

    test = load_arena_csv(test_csv, labeled=False, task=task).frame
    sub = pd.read_csv(submission_csv, dtype={task.id_column: str}, keep_default_na=False)
    columns = task.probability_columns
    missing = [c for c in (task.id_column, *columns) if c not in sub.columns]
    if missing:
        raise ValueError(f"{submission_csv}: missing columns {missing}; a pseudo-label file is a probabilities "
                         f"submission ({', '.join((task.id_column, *columns))})")
    known = set(read_ids(test_csv, task.id_column))
    unknown = [i for i in sub[task.id_column] if i not in known]
    if unknown:
        raise ValueError(f"{submission_csv}: {len(unknown)} id(s) are not in {test_csv}: {unknown[:5]}; pseudo-labels "
                         "join the test file's rows by id: use the submission of this competition's test file")
    targets = {}
    for row in sub.to_dict("records"):
        target = parse_probabilities([row[c] for c in columns], task.n_labels)
        if target is None:
            raise ValueError(f"{submission_csv}: id={row[task.id_column]}: {[row[c] for c in columns]} is not a "
                             f"probability per class ({', '.join(columns)}) summing to 1")
        targets[row[task.id_column]] = target
    rows = test[test["id"].isin(targets)].reset_index(drop=True)
    rows["target"] = [targets[i] for i in rows["id"]]
    rows["label"] = [max(range(len(t)), key=t.__getitem__) for t in rows["target"]]
    return rows
