"""Synthetic competition data for any task (kagflow.toml's ``[data]``), with the real data's quirks and a signal
the tiny model learns.

Signal, pairwise tasks (``swap_columns``, LMSYS): a marker word opening the last turn of the first swap column
(class 0, A wins), of the second (class 1, B wins), or of both (class 2, a tie); any further class has its own marker
word in both. Other tasks: each class has its own marker word, opening the last turn of one of the text columns.
Cells are JSON lists of turns (``text_format="turns"``, LMSYS) or plain text (``"plain"``, WSDM). The default task
writes exactly what it always has (LMSYS's class shares, columns and quirks).

Quirks: only those the real data has (KAGGLE-FACTS.md), so a rehearsal never fails a notebook Kaggle runs:
null entries in a turn list, empty turns, identical responses (ties), both responses ``[null]``, and, in the
train file only, escapes that decode to lone surrogates. Not in the hidden test set: a public notebook (the
4th-place LMSYS inference) that crashes on a lone surrogate scored on Kaggle's hidden test, so the local test
set must not have one. Never: truncated JSON or a missing cell (the real files have neither; the classifier's
handling of such rows is tested on rows written for it).
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Optional

from .task import TOP_K, Task
from .text import headers

MARKER = "zorblax"
CLASS_WEIGHTS = (0.36, 0.35, 0.29)  # A / B / tie; the quirk rows add ~2.5% ties: 35/34/31 as train.csv
MODELS = ("gpt-4-0613", "claude-2.1", "llama-2-70b-chat", "gemini-pro", "mistral-medium", "vicuna-13b")
TEXT_FORMATS = ("turns", "plain")
EXTRA_COLUMNS = ("model_a", "model_b")  # what a pairwise train file also holds (unread, as the real ones)
_SYLLABLES = ("ka", "lo", "mi", "ne", "ru", "ta", "po", "se", "di", "fu", "ga", "he", "ji", "mo", "va", "wi")
_EXTRA = ("café", "naïve", "über", "🙂", "日本", "€5", "x=1;", "(a+b)", "http://e.x/y")
LMSYS = Task.lmsys()


def vocabulary() -> list[str]:
    """The fixed word list every synthetic text draws from (independent of the seed)."""
    rng = random.Random(1234)
    words = {"".join(rng.choice(_SYLLABLES) for _ in range(rng.randint(1, 3))) for _ in range(600)}
    return sorted(words - {MARKER}) + list(_EXTRA)


def corpus(seed: int = 0, n_rows: int = 400):
    """Lines of synthetic text to train the tiny tokenizer on."""
    rng = random.Random(seed)
    words = vocabulary()
    parts = headers(LMSYS.text_columns)
    for _ in range(n_rows):
        yield parts[0] + _sentence(rng, words, 3, 12)
        yield parts[1] + MARKER + " " + _sentence(rng, words, 10, 40)
        yield parts[2] + _sentence(rng, words, 10, 40) + " " + MARKER


def class_markers(task: Task) -> tuple[str, ...]:
    """The marker word of each class (pairwise tasks: classes 0-2 share ``MARKER``, placed by class); every one is
    a single token of the tiny tokenizer and no other synthetic text holds it."""
    words = vocabulary()[:-len(_EXTRA)]
    n = task.n_labels
    own = tuple(words[(k * len(words)) // n] for k in range(n))
    return (MARKER,) * min(n, 3) + own[3:] if task.pairwise else own


def write_synthetic_competition(out_dir, *, n_train: int = 1200, n_test: int = 200, seed: int = 0,
                                n_public: Optional[int] = None, task: Task | None = None,
                                text_format: str = "turns") -> dict:
    """Write the train and test files of ``task`` (default: LMSYS), sample_submission.csv and a separate
    solution.csv, both in the task's submission format; return their paths.

    ``n_public``: as in a code competition, the test file and sample_submission.csv hold only the first
    ``n_public`` test rows, and the whole test set (``n_test`` rows, what a submission is re-run on)
    goes to hidden/<test file> and hidden/sample_submission.csv (paths ``hidden_test``, ``hidden_sample``).
    ``text_format``: "turns" (each text cell a JSON list of turns) or "plain" (plain text).
    """
    import pandas as pd

    task = task or LMSYS
    if text_format not in TEXT_FORMATS:
        raise ValueError(f"text_format = {text_format!r}: use one of {', '.join(TEXT_FORMATS)}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    ids = rng.sample(range(10_000, 10_000_000), n_train + n_test)
    rows = [_row(rng, i, task, text_format, test=k >= n_train) for k, i in enumerate(ids)]
    train, test = rows[:n_train], rows[n_train:]
    extra = [c for c in EXTRA_COLUMNS if task.pairwise and c not in (*task.text_columns, task.id_column)]
    texts = lambda r: {task.id_column: r["id"], **{c: r[c] for c in task.text_columns}}  # noqa: E731
    paths = {"train": out / task.train_file, "test": out / task.test_file,
             **{name: out / f"{name}.csv" for name in ("sample_submission", "solution")}}
    pd.DataFrame([{task.id_column: r["id"], **{c: r[c] for c in (*extra, *task.text_columns)}, **_labels(task, r)}
                  for r in train]).to_csv(paths["train"], index=False)
    tests = [(paths["test"], paths["sample_submission"], test if n_public is None else test[:n_public])]
    if n_public is not None:
        (out / "hidden").mkdir(exist_ok=True)
        hidden = out / "hidden"
        paths["hidden_test"], paths["hidden_sample"] = hidden / task.test_file, hidden / "sample_submission.csv"
        tests.append((paths["hidden_test"], paths["hidden_sample"], test))
    for test_path, sample_path, part in tests:
        pd.DataFrame([texts(r) for r in part]).to_csv(test_path, index=False)
        pd.DataFrame([{task.id_column: r["id"], **_sample(task)} for r in part]).to_csv(sample_path, index=False)
    pd.DataFrame([{task.id_column: r["id"], **_solution(task, r["label"])} for r in test]).to_csv(
        paths["solution"], index=False)
    return paths


def _labels(task: Task, row: dict) -> dict:
    """A train row's label cells: one-hot ``label_columns``, or the label's value in ``label_column``."""
    if task.label_columns:
        return {c: int(k == row["label"]) for k, c in enumerate(task.label_columns)}
    return {task.label_column: task.labels[row["label"]]}


def _sample(task: Task) -> dict:
    """sample_submission.csv's cells of a row: a uniform guess in the submission's format."""
    if task.submission == "probabilities":
        return {c: 1 / task.n_labels for c in task.probability_columns}
    if task.submission == "positive_probability":
        return {task.label_column: 0.5}
    return {task.label_column: " ".join(task.labels[:TOP_K if task.metric == "map_at_3" else 1])}


def _solution(task: Task, label: int) -> dict:
    """solution.csv's cells of a row in the submission's format: one-hot probabilities, the label, or whether it is
    the positive (last) label."""
    if task.submission == "probabilities":
        return {c: int(k == label) for k, c in enumerate(task.probability_columns)}
    if task.submission == "positive_probability":
        return {task.label_column: int(label == task.n_labels - 1)}
    return {task.label_column: task.labels[label]}


def _sentence(rng: random.Random, words: list[str], lo: int, hi: int) -> str:
    return " ".join(rng.choice(words) for _ in range(rng.randint(lo, hi)))


def _row(rng: random.Random, row_id: int, task: Task, text_format: str, *, test: bool = False) -> dict:
    """One row: the class, each text column's turns with the class's marker, and a quirk now and then (the LMSYS
    task draws exactly as it always has)."""
    markers = class_markers(task)
    words = [w for w in vocabulary() if w not in markers]
    n = task.n_labels
    label = rng.choices(range(n), weights=CLASS_WEIGHTS if task == LMSYS else [1] * n)[0]
    compared = list(task.swap_columns) if task.pairwise else list(task.text_columns)
    context = [c for c in task.text_columns if c not in compared]
    n_turns = 1 if rng.random() < 0.8 else rng.randint(2, 3)
    turns = {c: [_sentence(rng, words, 3, 12) for _ in range(n_turns)] for c in context}
    long_row = rng.random() < 0.04
    turns.update({c: [_sentence(rng, words, 5, 30) for _ in range(n_turns)] for c in compared})
    if long_row:  # last turns far beyond any max_length
        for c in compared:
            turns[c][-1] = _sentence(rng, words, 500, 900)
    if task.pairwise:
        a, b = compared
        for column, has_marker in ((a, label in (0, 2) or label >= 3), (b, label in (1, 2) or label >= 3)):
            if has_marker:
                turns[column][-1] = f"{markers[label]} {turns[column][-1]}"
    else:
        column = compared[0] if len(compared) == 1 else rng.choice(compared)
        turns[column][-1] = f"{markers[label]} {turns[column][-1]}"
    quirk = rng.random()
    label, ascii_only = _quirk(quirk, task, turns, compared, label, json_turns=text_format == "turns", test=test)
    if text_format == "turns":
        cells = {c: json.dumps(turns[c], ensure_ascii=ascii_only) for c in task.text_columns}
    else:
        cells = {c: "\n".join(t for t in turns[c] if t) for c in task.text_columns}
    return {"id": row_id, "model_a": rng.choice(MODELS), "model_b": rng.choice(MODELS), **cells, "label": label}


def _quirk(quirk: float, task: Task, turns: dict, compared: list, label: int, *, json_turns: bool,
           test: bool = False) -> tuple:
    """(label, whether the cells are written ASCII-only) after the row's quirk, if any, changed ``turns``."""
    tie = task.pairwise and task.n_labels >= 3
    first = task.text_columns[0]
    if quirk < 0.02:  # identical responses are ties
        if tie:
            a, b = compared
            same = turns[a] if MARKER in turns[a][-1] else turns[b]
            label, turns[a], turns[b] = 2, list(same), list(same)
    elif quirk < 0.04:
        if json_turns:
            turns[first].insert(0, None)  # null turn
        else:
            turns[first][0] = "[1] " + turns[first][0]  # plain text that opens like a list
    elif quirk < 0.06:
        for c in compared:
            turns[c].insert(0, "")  # empty turn
    elif quirk < 0.075:  # an escape that decodes to a lone surrogate (the train file only)
        if json_turns and not test:
            turns[compared[0]][0] = turns[compared[0]][0] + " \ud83d"
            return label, True
    elif quirk < 0.08:  # both responses null: no marker anywhere, a tie
        if tie:
            label = 2
            for c in compared:
                turns[c] = [None]
    return label, False


# --- The knowledge check: a label that needs real knowledge -------------------------------------------------------

KINDS = ("marker", "knowledge")  # kagflow data synth --kind: the marker-word signal above, or the knowledge check
# Countries and capitals the Gemma 3 270M stand-in knows (bench/knowledge_probe.py: its language model puts the
# capital above 4 other capitals for each), none whose capital repeats the country's name or opening (Mexico City,
# Brasilia, Algiers, Tunis: a string match, not knowledge, would find those).
CAPITALS = {
    "France": "Paris", "Germany": "Berlin", "Italy": "Rome", "Spain": "Madrid", "Portugal": "Lisbon",
    "Japan": "Tokyo", "China": "Beijing", "Russia": "Moscow", "Egypt": "Cairo", "Greece": "Athens",
    "Austria": "Vienna", "Poland": "Warsaw", "Norway": "Oslo", "Sweden": "Stockholm", "Finland": "Helsinki",
    "Denmark": "Copenhagen", "Ireland": "Dublin", "Belgium": "Brussels", "Netherlands": "Amsterdam",
    "Hungary": "Budapest", "Czechia": "Prague", "Turkey": "Ankara", "India": "New Delhi", "Thailand": "Bangkok",
    "Kenya": "Nairobi", "Peru": "Lima", "Argentina": "Buenos Aires", "Chile": "Santiago", "Cuba": "Havana",
    "Canada": "Ottawa", "Australia": "Canberra", "Iran": "Tehran", "Iraq": "Baghdad",
    "Ukraine": "Kyiv", "Romania": "Bucharest", "Bulgaria": "Sofia", "Serbia": "Belgrade", "Croatia": "Zagreb",
    "Switzerland": "Bern", "Colombia": "Bogota", "Vietnam": "Hanoi",
    "Indonesia": "Jakarta", "Philippines": "Manila", "South Korea": "Seoul", "Nigeria": "Abuja",
    "Morocco": "Rabat", "Ethiopia": "Addis Ababa", "Saudi Arabia": "Riyadh",
    "Pakistan": "Islamabad", "Bangladesh": "Dhaka", "Afghanistan": "Kabul", "Syria": "Damascus",
    "Lebanon": "Beirut", "Jordan": "Amman", "Qatar": "Doha", "Nepal": "Kathmandu", "Sri Lanka": "Colombo",
    "Malaysia": "Kuala Lumpur", "North Korea": "Pyongyang", "Mongolia": "Ulaanbaatar", "Venezuela": "Caracas",
    "Ecuador": "Quito", "Uruguay": "Montevideo", "Jamaica": "Kingston", "Ghana": "Accra", "Senegal": "Dakar",
    "Libya": "Tripoli", "Sudan": "Khartoum", "Uganda": "Kampala", "Zimbabwe": "Harare", "Angola": "Luanda",
    "New Zealand": "Wellington", "Iceland": "Reykjavik", "Estonia": "Tallinn", "Latvia": "Riga",
    "Lithuania": "Vilnius", "Slovakia": "Bratislava", "Slovenia": "Ljubljana", "Albania": "Tirana",
    "Belarus": "Minsk", "Armenia": "Yerevan", "Azerbaijan": "Baku", "Uzbekistan": "Tashkent",
    "Cyprus": "Nicosia", "Malta": "Valletta", "Cambodia": "Phnom Penh", "Laos": "Vientiane", "Zambia": "Lusaka",
    "Somalia": "Mogadishu", "Rwanda": "Kigali", "Mali": "Bamako", "Nicaragua": "Managua", "Kazakhstan": "Astana",
    "Oman": "Muscat", "Yemen": "Sanaa", "Bosnia": "Sarajevo", "Montenegro": "Podgorica", "Haiti": "Port-au-Prince",
    "Madagascar": "Antananarivo", "Cameroon": "Yaounde",
}
_CAPITAL_PROMPTS = ("What is the capital of {c}?", "Name the capital city of {c}.",
                    "Which city is the capital of {c}?", "Quick question: the capital of {c} is?")
_ANSWERS = ("The answer is {x}.", "{x}", "It is {x}.", "That would be {x}.", "Sure! {x}.", "I believe it is {x}.")
KNOWLEDGE_WEIGHTS = (0.5, 0.5, 0.0)  # A right / B right / both wrong (a tie): one response is always right
# The [train] prompt_template bench/knowledge.py trains with: kagflow's headers, then the question put outright.
KNOWLEDGE_TEMPLATE = ("{% for name, text in columns %}{% if not loop.first %}\n\n{% endif %}<{{ name }}>: {{ text }}"
                      "{% endfor %}\n\nWhich response answers the prompt correctly, response_a or response_b?")


def knowledge_question(rng: random.Random, countries: list[str]) -> tuple[str, str, list[str]]:
    """(prompt, the correct answer, the wrong answers): the capital of one of ``countries``; wrong: the capital of
    another of them. Wrong answers come from the same countries, so every city is the right answer about as often
    as a wrong one: no city alone says which response is right. (No arithmetic: the stand-in does not know sums or
    products well enough, and the few facts of a times table cannot be held out of train; bench/RESULTS.md.)"""
    country = rng.choice(countries)
    right = CAPITALS[country]
    prompt = rng.choice(_CAPITAL_PROMPTS).format(c=country)
    return prompt, right, [CAPITALS[c] for c in countries if c != country]


def knowledge_rows(n_rows: int, seed: int = 0, *, countries: list[str] | None = None,
                   label_weights=KNOWLEDGE_WEIGHTS) -> list[dict]:
    """LMSYS rows whose label needs knowledge: one response answers the prompt correctly and the other wrongly
    (class 0 when A is right, 1 when B is), or, with a tie share in ``label_weights``, both wrongly with different
    answers (class 2). Both responses draw their template independently of the label, so nothing but the answer's
    truth tells the classes apart."""
    rng = random.Random(seed)
    countries = sorted(countries or CAPITALS)
    rows = []
    ids = rng.sample(range(10_000, 10_000_000), n_rows)
    for row_id in ids:
        prompt, right, wrong = knowledge_question(rng, countries)
        label = rng.choices(range(3), weights=label_weights)[0]
        w1, w2 = rng.sample(wrong, 2)
        answers = {0: (right, w1), 1: (w1, right), 2: (w1, w2)}[label]
        a, b = (rng.choice(_ANSWERS).format(x=x) for x in answers)
        rows.append({"id": row_id, "model_a": rng.choice(MODELS), "model_b": rng.choice(MODELS),
                     "prompt": json.dumps([prompt]), "response_a": json.dumps([a]), "response_b": json.dumps([b]),
                     "label": label})
    return rows


def knowledge_countries(seed: int = 0, held_out_countries: int = 25) -> tuple[list[str], list[str]]:
    """(the train rows' countries, the ``held_out_countries`` test rows' countries): ``CAPITALS`` split at random."""
    if not 3 <= held_out_countries <= len(CAPITALS) - 3:
        raise ValueError(f"held_out_countries={held_out_countries}: each split needs three of the "
                         f"{len(CAPITALS)} countries (a right answer and two wrong ones to draw from)")
    countries = sorted(CAPITALS)
    random.Random(seed).shuffle(countries)
    return countries[held_out_countries:], countries[:held_out_countries]


def write_knowledge_competition(out_dir, *, n_train: int = 1200, n_test: int = 200, seed: int = 0,
                                n_public: Optional[int] = None, held_out_countries: int = 25) -> dict:
    """The knowledge check as LLM Classification Finetuning's files (the paths as
    :func:`write_synthetic_competition`'s). The test rows ask about ``held_out_countries`` countries that no train
    row names or answers with (each split's wrong answers are its own countries' capitals), so a model scores on
    the test set only by what it knew before."""
    import pandas as pd

    train_countries, test_countries = knowledge_countries(seed, held_out_countries)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    train = knowledge_rows(n_train, seed, countries=train_countries)
    test = knowledge_rows(n_test, seed + 1, countries=test_countries)
    seen = {r["id"] for r in train}
    test = [r for r in test if r["id"] not in seen]
    task = LMSYS
    paths = {"train": out / task.train_file, "test": out / task.test_file,
             **{name: out / f"{name}.csv" for name in ("sample_submission", "solution")}}
    columns = ("model_a", "model_b", *task.text_columns)
    pd.DataFrame([{"id": r["id"], **{c: r[c] for c in columns}, **_labels(task, r)} for r in train]).to_csv(
        paths["train"], index=False)
    texts = lambda r: {"id": r["id"], **{c: r[c] for c in task.text_columns}}  # noqa: E731
    tests = [(paths["test"], paths["sample_submission"], test if n_public is None else test[:n_public])]
    if n_public is not None:
        hidden = out / "hidden"
        hidden.mkdir(exist_ok=True)
        paths["hidden_test"], paths["hidden_sample"] = hidden / task.test_file, hidden / "sample_submission.csv"
        tests.append((paths["hidden_test"], paths["hidden_sample"], test))
    for test_path, sample_path, part in tests:
        pd.DataFrame([texts(r) for r in part]).to_csv(test_path, index=False)
        pd.DataFrame([{"id": r["id"], **_sample(task)} for r in part]).to_csv(sample_path, index=False)
    pd.DataFrame([{"id": r["id"], **_solution(task, r["label"])} for r in test]).to_csv(paths["solution"], index=False)
    return paths
