"""The task (kagflow.toml's ``[data]`` table): which files and columns the model reads, what it predicts, how the
competition scores it and what a submission holds.

``Task()`` is the LMSYS arena (``Task.lmsys()``); ``Task.from_params(data)`` builds one from the ``[data]`` dict a
notebook's parameters cell holds. A task that could not be trained or submitted is refused on construction with one
ValueError naming the key and the fix. Stdlib only: the notebooks build it before the ML stack is imported.

Classes: the position of a row's label in ``labels`` (a ``label_column`` of label values, compared as strings), or of
the column holding its 1 (one-hot ``label_columns``). With ``swap_columns`` (a pairwise task: two of the text
columns), swapping the two texts swaps the first two labels and keeps every other one (a tie) in place.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from difflib import get_close_matches

# metric -> its direction: "higher" or "lower" is better
METRICS = {"log_loss": "lower", "accuracy": "higher", "roc_auc": "higher", "macro_f1": "higher", "map_at_3": "higher"}
SUBMISSIONS = ("probabilities", "label", "positive_probability")
TOP_K = 3  # map_at_3: the labels a row's prediction lists, best first
# Keys of the parsed frame (data.load_arena_csv) besides the text columns: no text column may be named so.
RESERVED_COLUMNS = ("id", "label")
# A compared text (a swap column) gets twice the token share of any other text column (LMSYS: 0.2, 0.4, 0.4).
SWAP_SHARE, TEXT_SHARE = 2, 1


@dataclass(frozen=True)
class Task:
    """One competition's data and scoring; the field names and defaults are ``[data]``'s (LMSYS)."""

    train_file: str = "train.csv"
    test_file: str = "test.csv"
    id_column: str = "id"
    text_columns: tuple[str, ...] = ("prompt", "response_a", "response_b")
    swap_columns: tuple[str, ...] = ("response_a", "response_b")
    label_columns: tuple[str, ...] = ("winner_model_a", "winner_model_b", "winner_tie")
    label_column: str = ""
    labels: tuple[str, ...] = ()
    submission: str = "probabilities"
    metric: str = "log_loss"

    def __post_init__(self) -> None:
        problem = next(_problems(self), None)
        if problem:
            raise ValueError(f"[data] {problem}")

    @classmethod
    def lmsys(cls) -> "Task":
        """LMSYS – Chatbot Arena: three one-hot winner columns, log loss, a probability per class."""
        return cls()

    @classmethod
    def from_params(cls, params: dict) -> "Task":
        """The task of a ``[data]`` dict (a notebook's ``data`` parameter); keys it lacks keep their defaults."""
        if not isinstance(params, dict):
            raise ValueError(f"[data] must be a table of keys, not {type(params).__name__}")
        fields = {f.name: f for f in dataclasses.fields(cls)}
        unknown = [k for k in params if k not in fields]
        if unknown:
            key = unknown[0]
            close = get_close_matches(str(key), fields, n=1)
            raise ValueError(f"[data] has no key {key!r}" + (f" (did you mean {close[0]!r}?)" if close else "")
                             + f"; its keys are {', '.join(fields)}")
        values = {}
        for key, value in params.items():
            if isinstance(fields[key].default, tuple):
                if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
                    raise ValueError(f"[data] {key} = {value!r}: write a list of strings, e.g. "
                                     f"{key} = {_toml(fields[key].default or ('0', '1'))}")
                value = tuple(value)
            elif not isinstance(value, str):
                raise ValueError(f"[data] {key} = {value!r}: write a string, e.g. {key} = {_toml(fields[key].default)}")
            values[key] = value
        return cls(**values)

    def params(self) -> dict:
        """The ``[data]`` dict of this task (lists, as a notebook's parameters cell writes them)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    # ---------------------------------------------------------------- classes

    @property
    def class_names(self) -> tuple[str, ...]:
        """The classes in head order: the one-hot label columns, or the label values."""
        return self.label_columns or self.labels

    @property
    def n_labels(self) -> int:
        return len(self.class_names)

    @property
    def id2label(self) -> dict[int, str]:
        return dict(enumerate(self.class_names))

    @property
    def label2id(self) -> dict[str, int]:
        return {name: i for i, name in enumerate(self.class_names)}

    def label_index(self, value) -> int | None:
        """The class of a ``label_column`` cell (compared as a string, surrounding spaces ignored), or None."""
        return self.label2id.get(str(value).strip()) if self.label_column else None

    # ---------------------------------------------------------------- texts

    @property
    def pairwise(self) -> bool:
        """Two of the texts are compared (``swap_columns``): swap TTA applies."""
        return bool(self.swap_columns)

    @property
    def swap_order(self) -> list[int]:
        """Column order that maps the probabilities of a swapped pass back: the first two labels trade places."""
        return [1, 0, *range(2, self.n_labels)]

    def swapped_columns(self) -> tuple[str, ...]:
        """``text_columns`` with the two swap columns exchanged (the model reads A's text where B's was)."""
        a, b = self.swap_columns
        return tuple(b if c == a else a if c == b else c for c in self.text_columns)

    @property
    def text_weights(self) -> tuple[float, ...]:
        """Each text column's share of the token budget (``text.allocate``): a swap column twice a context one."""
        shares = [SWAP_SHARE if c in self.swap_columns else TEXT_SHARE for c in self.text_columns]
        return tuple(s / sum(shares) for s in shares)

    # ---------------------------------------------------------------- scoring and submission

    @property
    def direction(self) -> str:
        """"higher" or "lower": which way the metric improves."""
        return METRICS[self.metric]

    @property
    def probability_columns(self) -> tuple[str, ...]:
        """The column of each class's probability (a probabilities submission, val_predictions.csv)."""
        return self.class_names

    @property
    def submission_columns(self) -> tuple[str, ...]:
        """submission.csv's header: the id, then one probability per class or the label column."""
        if self.submission == "probabilities":
            return (self.id_column, *self.probability_columns)
        return (self.id_column, self.label_column)


def _problems(task: Task):
    """What makes ``task`` unusable, one message at a time (key, problem, fix)."""
    for key in ("train_file", "test_file", "id_column"):
        if not getattr(task, key).strip():
            yield f"{key} is empty: name the {key.replace('_', ' ')}"
    texts = task.text_columns
    if not texts or any(not c.strip() for c in texts):
        yield f"text_columns = {list(texts)}: name the column(s) the model reads, e.g. [\"text\"]"
    if len(set(texts)) != len(texts):
        yield f"text_columns = {list(texts)} names a column twice"
    own = {task.id_column, *task.label_columns, task.label_column} - {""}
    taken = [c for c in texts if c in own]
    if taken:
        yield f"text_columns = {list(texts)}: {taken[0]!r} is the id or a label column; the model reads texts only"
    reserved = [c for c in texts if c in RESERVED_COLUMNS and c != task.id_column]
    if reserved:
        yield f"text_columns = {list(texts)}: a text column may not be named {reserved[0]!r} (kept for the row's " \
              "id and label): rename the column in the CSV files"
    if task.swap_columns and (len(task.swap_columns) != 2 or len(set(task.swap_columns)) != 2
                              or not set(task.swap_columns) <= set(texts)):
        yield f"swap_columns = {list(task.swap_columns)}: name 2 of text_columns {list(texts)} (the two texts a " \
              "pairwise task compares), or [] for none"
    yield from _label_problems(task)
    if task.submission not in SUBMISSIONS:
        yield f"submission = {task.submission!r}: use one of {', '.join(map(repr, SUBMISSIONS))}"
    elif task.metric not in METRICS:
        close = get_close_matches(task.metric, METRICS, n=1)
        yield f"metric = {task.metric!r}" + (f" (did you mean {close[0]!r}?)" if close else "") + \
              f": use one of {', '.join(METRICS)}"
    else:
        yield from _scoring_problems(task)


def _label_problems(task: Task):
    columns, column, labels = task.label_columns, task.label_column, task.labels
    if columns and (column or labels):
        yield f"label_columns = {list(columns)} and label_column = {column!r} / labels = {list(labels)}: use one " \
              "of them (label_columns = [] for a label column of values)"
    elif columns:
        if len(columns) < 2 or len(set(columns)) != len(columns) or any(not c.strip() for c in columns):
            yield f"label_columns = {list(columns)}: name 2 or more distinct one-hot columns"
        elif task.id_column in columns:
            yield f"label_columns = {list(columns)} holds the id column {task.id_column!r}"
    elif not column.strip():
        yield "no labels: set label_columns (one-hot columns) or label_column and labels (e.g. label_column = " \
              "\"winner\", labels = [\"model_a\", \"model_b\"])"
    elif column == task.id_column:
        yield f"label_column = {column!r} is the id column"
    elif len(labels) < 2 or len(set(labels)) != len(labels):
        yield f"labels = {list(labels)}: list the 2 or more distinct values of label_column {column!r}, e.g. " \
              "labels = [\"0\", \"1\"]"
    elif any(v != v.strip() or not v for v in labels):
        yield f"labels = {list(labels)}: a label is empty or has surrounding spaces"


def _scoring_problems(task: Task):
    n, submission, metric = task.n_labels, task.submission, task.metric
    if submission in ("label", "positive_probability") and not task.label_column:
        yield f"submission = {submission!r} writes label_column: set label_column and labels (label_columns " \
              "suit submission = \"probabilities\")"
    elif submission == "positive_probability" and n != 2:
        yield f"submission = \"positive_probability\" is P(the last label) of a binary task; labels = " \
              f"{list(task.labels)} has {n}"
    elif metric == "log_loss" and submission == "label":
        yield "metric = \"log_loss\" scores probabilities: use submission = \"probabilities\" (or " \
              "\"positive_probability\" for a binary task)"
    elif metric == "roc_auc" and (n != 2 or submission == "label"):
        yield f"metric = \"roc_auc\" needs 2 labels (it has {n}) and a probability submission (submission = " \
              "\"positive_probability\" or \"probabilities\")"
    elif metric == "map_at_3" and (n < TOP_K or submission != "label"):
        yield f"metric = \"map_at_3\" needs {TOP_K} or more labels (it has {n}) and submission = \"label\" (the top " \
              f"{TOP_K} labels per row, space-separated)"
    elif metric == "map_at_3" and any(any(ch.isspace() for ch in v) for v in task.labels):
        yield f"labels = {list(task.labels)}: a map_at_3 submission separates labels by spaces, so no label may " \
              "hold one"


def _toml(value) -> str:
    if isinstance(value, tuple):
        return "[" + ", ".join(f'"{v}"' for v in value) + "]"
    return f'"{value}"'
