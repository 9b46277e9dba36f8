"""Token-budgeted model inputs: every text column of the task (LMSYS: the prompt and both responses) always fits
inside ``max_length``.

Each part (a text column, under its header ``<name>: ``) gets a share of the token budget (``Task.text_weights``;
water-filling: a short part gives its unused share to the others), so response_b is never cut away by a long
response_a. Within a part, the last turns are kept first; a last turn longer than its share keeps its head.
"""

from __future__ import annotations

from .task import Task

TURN_SEPARATOR = "\n"
PART_SEPARATOR = "\n\n"
LMSYS = Task.lmsys()


def headers(columns) -> list[str]:
    """The header before each part: ``<prompt>: ``, then ``\\n\\n<response_a>: `` ..."""
    return [("" if k == 0 else PART_SEPARATOR) + f"<{name}>: " for k, name in enumerate(columns)]


HEADERS = tuple(headers(LMSYS.text_columns))
PART_WEIGHTS = LMSYS.text_weights  # prompt, response_a, response_b: 0.2, 0.4, 0.4


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


def fit_turns(turns: list[list[int]], budget: int, separator: list[int]) -> list[int]:
    """Join turns within ``budget`` tokens, keeping the last turns; an oversized last turn keeps its head."""
    kept: list[list[int]] = []
    used = 0
    for turn in reversed(turns):
        cost = len(turn) + (len(separator) if kept else 0)
        if used + cost <= budget:
            kept.insert(0, turn)
            used += cost
        elif not kept:
            kept.insert(0, turn[:budget])
            break
        else:
            break
    ids: list[int] = []
    for k, turn in enumerate(kept):
        ids.extend((separator if k else []) + turn)
    return ids


def _joined_length(turns: list[list[int]], separator: list[int]) -> int:
    return sum(len(t) for t in turns) + len(separator) * max(0, len(turns) - 1)


def encode_frame(tokenizer, frame, task: Task, max_length: int, *, swapped: bool = False) -> list[list[int]]:
    """input_ids of every row of a parsed frame (``data.load_arena_csv``) over ``task.text_columns``; ``swapped``:
    with the two swap columns' texts exchanged (the headers stay in place)."""
    sources = task.swapped_columns() if swapped else task.text_columns
    return encode_columns(tokenizer, [frame[c] for c in sources], max_length, names=task.text_columns,
                          weights=task.text_weights)


def encode_rows(tokenizer, prompts, responses_a, responses_b, max_length: int) -> list[list[int]]:
    """``encode_columns`` of LMSYS's three parts (prompt, response_a, response_b), given as lists of turns."""
    return encode_columns(tokenizer, [prompts, responses_a, responses_b], max_length, names=LMSYS.text_columns,
                          weights=LMSYS.text_weights)


def encode_columns(tokenizer, columns, max_length: int, *, names, weights) -> list[list[int]]:
    """input_ids (BOS + headers + budgeted parts) for rows given per column (``names``) as lists of turns; each
    part's share of the budget by ``weights``.

    Text that spells a special token ("<pad>", "<eos>") is encoded as plain text, never as that token."""
    # special-token strings in the data ("<eos>", "<pad>") stay plain text: a row never holds the pad id,
    # so the score head's "last token that is not the pad" is the last real token with either padding side
    enc = lambda texts: tokenizer(list(texts), add_special_tokens=False,  # noqa: E731
                                  split_special_tokens=True)["input_ids"]
    header_ids = enc(headers(names))
    separator = enc([TURN_SEPARATOR])[0]
    bos = [tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []
    budget = max_length - len(bos) - sum(len(h) for h in header_ids)
    if budget < len(names):
        raise ValueError(f"max_length={max_length} leaves no room for text after the headers")

    rows = list(zip(*columns))
    flat = [turn for row in rows for part in row for turn in part]
    flat_ids = iter(enc(flat) if flat else [])
    out = []
    for row in rows:
        parts = [[next(flat_ids) for _ in part] for part in row]
        shares = allocate([_joined_length(p, separator) for p in parts], budget, weights)
        ids = list(bos)
        for header, part, share in zip(header_ids, parts, shares):
            ids.extend(header + fit_turns(part, share, separator))
        out.append(ids)
    return out
