"""Token-budgeted model inputs: every text column of the task (LMSYS: the prompt and both responses) always fits
inside ``max_length``, laid out by a prompt template and ending on one fixed token that the score head pools.

``Encoding`` is how ([train]'s truncation keys, written beside the adapter as ``encoding.json`` so inference reads
exactly what training read): the Jinja ``prompt_template`` places each text column (its headers, the order, an
instruction suffix); the fixed text it renders costs its tokens out of the budget, and ``append_eos`` ends every
row with the tokenizer's EOS, so the pooled (last non-pad) token is the same decision token for every row.
Each column gets a share of the rest (``text_shares``, default ``Task.text_weights``; water-filling: a short part
gives its unused share to the others), so response_b is never cut away by a long response_a. With
``whole_rounds``, where every column of a row holds the same number of turns (LMSYS: prompt[i], response_a[i],
response_b[i] are round i), the newest rounds that fit are kept together in every column; otherwise each column
keeps its own last turns. A turn longer than its share keeps its head (``truncation = "head"``) or its head and
tail around ``truncation_marker`` (``"head_tail"``); the marker also stands where earlier turns were dropped.
``Encoding.legacy()`` is kagflow's encoding before these keys (an adapter without ``encoding.json``).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from difflib import get_close_matches
from pathlib import Path

from .task import Task

TURN_SEPARATOR = "\n"
PART_SEPARATOR = "\n\n"
LMSYS = Task.lmsys()
TRUNCATIONS = ("head_tail", "head")
RECORD = "encoding.json"  # beside the adapter: the Encoding it was trained with
# Variables a prompt template sees: each text column by name, ``columns`` ((name, text) pairs in [data] order),
# ``labels`` (the class names in head order) and ``pairwise`` (the task has swap_columns).
LEGACY_TEMPLATE = ("{% for name, text in columns %}{% if not loop.first %}\n\n{% endif %}<{{ name }}>: {{ text }}"
                   "{% endfor %}")
DEFAULT_TEMPLATE = LEGACY_TEMPLATE + "\n\n{% if pairwise %}Which response is better?{% else %}Answer:{% endif %}"


def headers(columns) -> list[str]:
    """The header before each part: ``<prompt>: ``, then ``\\n\\n<response_a>: `` ... (``LEGACY_TEMPLATE``'s)."""
    return [("" if k == 0 else PART_SEPARATOR) + f"<{name}>: " for k, name in enumerate(columns)]


HEADERS = tuple(headers(LMSYS.text_columns))
PART_WEIGHTS = LMSYS.text_weights  # prompt, response_a, response_b: 0.2, 0.4, 0.4


@dataclass(frozen=True)
class Encoding:
    """How rows become input_ids; the field names and defaults are [train]'s (``TrainConfig``'s)."""

    truncation: str = "head_tail"
    whole_rounds: bool = True
    text_shares: tuple[float, ...] = ()  # one per [data] text_columns; (): Task.text_weights
    truncation_marker: str = " [...] "
    prompt_template: str = DEFAULT_TEMPLATE
    append_eos: bool = True

    @classmethod
    def legacy(cls) -> "Encoding":
        """kagflow's encoding before these keys: headers only, last turns per column, heads, no EOS."""
        return cls(truncation="head", whole_rounds=False, truncation_marker="", prompt_template=LEGACY_TEMPLATE,
                   append_eos=False)

    @classmethod
    def of(cls, cfg) -> "Encoding":
        """The encoding of a ``TrainConfig`` (or any object with these fields)."""
        return cls(**{f.name: _plain(getattr(cfg, f.name)) for f in dataclasses.fields(cls)})

    def weights(self, task: Task) -> tuple[float, ...]:
        shares = self.text_shares or task.text_weights
        return tuple(s / sum(shares) for s in shares)

    def check(self, task: Task) -> "Encoding":
        """Itself, or a ValueError naming the [train] key, the problem and the fix."""
        problem = next(self.problems(task), None)
        if problem:
            key, text, fix = problem
            raise ValueError(f"[train] {key} = {_toml(getattr(self, key))}: {text}; {fix}")
        return self

    def problems(self, task: Task):
        """(key, problem, fix) for each key that could not encode ``task``."""
        if self.truncation not in TRUNCATIONS:
            close = get_close_matches(str(self.truncation), TRUNCATIONS, n=1)
            yield ("truncation", "not a truncation mode" + (f" (did you mean {close[0]!r}?)" if close else ""),
                   "write truncation = \"head_tail\" (head and tail of a long text) or \"head\" (its head)")
        shares = self.text_shares
        if shares and (len(shares) != len(task.text_columns) or not all(
                isinstance(s, (int, float)) and not isinstance(s, bool) and s > 0 for s in shares)):
            yield ("text_shares", f"needs one positive share per [data] text_columns ({', '.join(task.text_columns)})",
                   f"write e.g. text_shares = {_toml(tuple(round(w, 3) for w in task.text_weights))}, or [] for "
                   "the default (a swap column twice any other)")
        try:
            _pieces(self.prompt_template, task)
        except ValueError as e:
            yield ("prompt_template", str(e), "place each text column once, e.g. {{ prompt }} or a loop "
                   "{% for name, text in columns %}<{{ name }}>: {{ text }}{% endfor %}")

    def describe(self) -> str:
        return ", ".join(f"{k}={v!r}" for k, v in dataclasses.asdict(self).items() if k != "prompt_template") + \
            f", prompt_template of {len(self.prompt_template)} chars"

    # ---------------------------------------------------------------- the record beside the adapter

    def save(self, adapter_dir) -> Path:
        path = Path(adapter_dir) / RECORD
        path.write_text(json.dumps(dataclasses.asdict(self), indent=1) + "\n")
        return path

    @classmethod
    def load(cls, adapter_dir, *, log: bool = True) -> "Encoding":
        """The encoding an adapter was trained with; without ``encoding.json`` (older adapters), the legacy one."""
        path = Path(adapter_dir) / RECORD
        if not path.is_file():
            if log:
                print(f"encoding: {adapter_dir} has no {RECORD} (trained before kagflow recorded it): the legacy "
                      "encoding (headers only, last turns per column, heads of long turns, no EOS)", flush=True)
            return cls.legacy()
        raw = json.loads(path.read_text())
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(raw) - fields)
        if unknown:
            raise ValueError(f"{path}: unknown key(s) {unknown}: the adapter was trained by a newer kagflow; "
                             "render the inference kernel with that version")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in raw.items()})

    @classmethod
    def of_adapters(cls, adapters, *, log: bool = True) -> "Encoding":
        """The one encoding every adapter of an ensemble was trained with; adapters that differ are refused."""
        encodings = [cls.load(a, log=log) for a in adapters]
        differ = [str(a) for a, e in zip(adapters, encodings) if e != encodings[0]]
        if differ:
            raise ValueError(f"the ensemble's adapters were trained with different encodings ({adapters[0]} and "
                             f"{differ[0]}: compare their {RECORD}): retrain them with the same [train] truncation "
                             "keys, or infer them separately")
        if log:
            print(f"encoding (as trained): {encodings[0].describe()}", flush=True)
        return encodings[0]


def _plain(value):
    return tuple(value) if isinstance(value, list) else value


def _toml(value) -> str:
    if isinstance(value, tuple):
        return "[" + ", ".join(map(str, value)) + "]"
    return json.dumps(value)


def _pieces(template: str, task: Task) -> tuple[list[str], list[int]]:
    """(the template's fixed texts, the column each text column's slot holds): len(texts) = len(order) + 1."""
    import jinja2

    slots = [f"\x00{k}\x00" for k in range(len(task.text_columns))]
    env = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True, autoescape=False)
    try:
        rendered = env.from_string(template).render(
            columns=list(zip(task.text_columns, slots)), labels=list(task.class_names), pairwise=task.pairwise,
            **dict(zip(task.text_columns, slots)))
    except jinja2.TemplateError as e:
        raise ValueError(f"the template does not render ({type(e).__name__}: {e})") from None
    found = [(rendered.find(s), k) for k, s in enumerate(slots)]
    missing = [task.text_columns[k] for k, s in enumerate(slots) if rendered.count(s) != 1]
    if missing:
        raise ValueError(f"text column {missing[0]!r} must appear exactly once in the template")
    order = [k for _, k in sorted(found)]
    texts, rest = [], rendered
    for k in order:
        head, rest = rest.split(slots[k])
        texts.append(head)
    return texts + [rest], order


def allocate(lengths, total: int, weights=PART_WEIGHTS) -> list[int]:
    """Split ``total`` tokens among parts of ``lengths``: no part gets more than it needs."""
    share = [0] * len(lengths)
    open_parts = [i for i, n in enumerate(lengths) if n > 0]
    left = total
    while open_parts:
        weight = sum(weights[i] for i in open_parts)
        fits = [i for i in open_parts if lengths[i] <= left * weights[i] / weight]
        if not fits:
            for i in open_parts:
                share[i] = int(left * weights[i] / weight)
            break
        for i in fits:
            share[i] = lengths[i]
            left -= lengths[i]
            open_parts.remove(i)
    return share


def cut(turn: list[int], budget: int, *, truncation: str = "head", marker=()) -> list[int]:
    """``turn`` within ``budget`` tokens: its head, or (``head_tail``) its head and tail around ``marker``."""
    if len(turn) <= budget:
        return turn
    keep = budget - len(marker)
    if truncation == "head" or keep < 2:
        return turn[:budget]
    head = (keep + 1) // 2
    return turn[:head] + list(marker) + turn[len(turn) - (keep - head):]


def fit_turns(turns: list[list[int]], budget: int, separator: list[int], *, marker=(), truncation: str = "head",
              dropped: bool = False) -> list[int]:
    """Join turns within ``budget`` tokens, keeping the last turns; an oversized last turn is ``cut``. With a
    ``marker``, ``marker + separator`` opens the part where earlier turns (or, ``dropped``, earlier rounds) are
    left out, its tokens counted."""
    prefix = list(marker) + list(separator) if marker else []
    kept: list[list[int]] = []
    used = 0
    marked = False  # the prefix opens the part
    for i in range(len(turns) - 1, -1, -1):
        turn = turns[i]
        reserve = len(prefix) if (i > 0 or dropped) else 0
        cost = len(turn) + (len(separator) if kept else 0)
        if used + cost + reserve <= budget:
            kept.insert(0, turn)
            used += cost
            marked = reserve > 0
        elif not kept:
            if budget - reserve < 1:
                reserve = 0
            kept.insert(0, cut(turn, budget - reserve, truncation=truncation, marker=marker))
            marked = reserve > 0
            break
        else:
            break
    ids: list[int] = list(prefix) if kept and marked else []
    for k, turn in enumerate(kept):
        ids.extend((separator if k else []) + turn)
    return ids


def _joined_length(turns: list[list[int]], separator: list[int]) -> int:
    return sum(len(t) for t in turns) + len(separator) * max(0, len(turns) - 1)


def newest_rounds(parts: list[list[list[int]]], budget: int, separator: list[int], prefix: int) -> int:
    """The first round kept: the oldest from which every round of every part fits ``budget`` (a part that
    drops rounds pays ``prefix`` tokens for its marker); the newest round alone if none fits."""
    n = len(parts[0])
    for k in range(n):
        cost = sum(_joined_length(p[k:], separator) for p in parts) + (prefix * len(parts) if k else 0)
        if cost <= budget:
            return k
    return max(0, n - 1)


def encode_frame(tokenizer, frame, task: Task, max_length: int, *, swapped: bool = False,
                 encoding: Encoding | None = None) -> list[list[int]]:
    """input_ids of every row of a parsed frame (``data.load_arena_csv``) over ``task.text_columns``; ``swapped``:
    with the two swap columns' texts exchanged (the headers stay in place). ``encoding``: None is the legacy one."""
    sources = task.swapped_columns() if swapped else task.text_columns
    return encode_columns(tokenizer, [frame[c] for c in sources], max_length, task=task, encoding=encoding)


def encode_rows(tokenizer, prompts, responses_a, responses_b, max_length: int, *,
                encoding: Encoding | None = None) -> list[list[int]]:
    """``encode_columns`` of LMSYS's three parts (prompt, response_a, response_b), given as lists of turns."""
    return encode_columns(tokenizer, [prompts, responses_a, responses_b], max_length, task=LMSYS, encoding=encoding)


def encode_columns(tokenizer, columns, max_length: int, *, task: Task,
                   encoding: Encoding | None = None) -> list[list[int]]:
    """input_ids (BOS + the template's texts + budgeted parts [+ EOS]) for rows given per column of ``task`` as
    lists of turns (``encoding``: None is ``Encoding.legacy()``).

    Text that spells a special token ("<pad>", "<eos>"), in the data or the template, is encoded as plain text,
    never as that token: a row never holds the pad id, so the score head's "last token that is not the pad" is the
    row's last token with either padding side: the EOS, unless the tokenizer pads with its EOS (Llama), where no EOS
    is appended (it would be read as padding) and the template's last token is the pooled one."""
    encoding = (encoding or Encoding.legacy()).check(task)
    weights = encoding.weights(task)
    enc = lambda texts: tokenizer(list(texts), add_special_tokens=False,  # noqa: E731
                                  split_special_tokens=True)["input_ids"] if texts else []
    texts, order = _pieces(encoding.prompt_template, task)
    fixed = [ids if text else [] for text, ids in zip(texts, enc([t or " " for t in texts]))]
    separator = enc([TURN_SEPARATOR])[0]
    marker = enc([encoding.truncation_marker])[0] if encoding.truncation_marker else []
    prefix = len(marker) + len(separator) if marker else 0
    bos = [tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []
    eos = []
    if encoding.append_eos:
        if tokenizer.eos_token_id is None:
            raise ValueError("[train] append_eos = true but the tokenizer has no EOS token: set append_eos = false")
        if tokenizer.eos_token_id != tokenizer.pad_token_id:
            eos = [tokenizer.eos_token_id]
    budget = max_length - len(bos) - len(eos) - sum(len(f) for f in fixed)
    if budget < len(task.text_columns):
        raise ValueError(f"max_length={max_length} leaves no room for text after the template's "
                         f"{max_length - budget} tokens")

    rows = list(zip(*columns))
    flat = [turn for row in rows for part in row for turn in part]
    flat_ids = iter(enc(flat))
    out = []
    for row in rows:
        parts = [[next(flat_ids) for _ in part] for part in row]
        first = 0
        if encoding.whole_rounds and len(parts) > 1 and len({len(p) for p in parts}) == 1 and len(parts[0]) > 1:
            first = newest_rounds(parts, budget, separator, prefix)
            parts = [p[first:] for p in parts]
        lengths = [_joined_length(p, separator) + (prefix if first and p else 0) for p in parts]
        shares = allocate(lengths, budget, weights)
        fitted = [fit_turns(p, s, separator, marker=marker, truncation=encoding.truncation, dropped=first > 0)
                  for p, s in zip(parts, shares)]
        ids = list(bos)
        for text_ids, k in zip(fixed, order):
            ids.extend(text_ids + fitted[k])
        out.append(ids + fixed[-1] + eos)
    return out
