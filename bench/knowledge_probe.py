"""CPU diagnostics for the knowledge check (bench/knowledge.py): what the Gemma 3 270M stand-in knows before any
fine-tuning, and whether that knowledge reaches the token the classifier's score head reads.

1. ``lm``: zero-shot, how often the base language model gives the right answer a higher log-likelihood than a
   wrong one ("Q: <question>\nA:" then " <answer>"): every country's capital against 4 other capitals; one-digit
   products (wrong: a neighbouring product of the table, or the product +-1/2), one-digit sums, two-digit sums
   and differences (wrong: +-1/2/10, the first knowledge set's near misses).
2. ``probe``: a logistic regression (scikit-learn) on frozen features of the classification input exactly as
   kagflow encodes it (``text.encode_rows`` with an ``Encoding``: kagflow's default template or the knowledge
   template's question, with or without the EOS the head pools): the hidden state of the pooled (last) token at a
   few layers, fit on knowledge-set train rows and scored on test rows about held-out countries. Signal there is
   what a LoRA plus score head can start from.

    python bench/knowledge_probe.py --out OUT_DIR                 # both, CPU (2 cores: ~20 min)
    python bench/knowledge_probe.py --out OUT_DIR --skip-lm --n-train 200 --n-test 100 --templates default+eos

Needs the stand-in's converted checkpoint (``ensure_gguf_checkpoint``, as bench/knowledge.py); runs it in fp32 (the
GGUF's Q4_K_M weights dequantised) or, with ``--nf4``, in 4-bit NF4 as the kernels load it. Writes
``knowledge_probe.json`` into OUT_DIR.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from kagflow.classifier.synth import KNOWLEDGE_TEMPLATE  # noqa: E402

# name: (prompt_template (None: kagflow's default), append_eos)
TEMPLATES = {"default+eos": (None, True), "default": (None, False), "instruction+eos": (KNOWLEDGE_TEMPLATE, True),
             "instruction": (KNOWLEDGE_TEMPLATE, False)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--cache", type=Path, default=None, help="the stand-in's converted checkpoint folder")
    parser.add_argument("--lm-items", type=int, default=100, help="questions per arithmetic kind")
    parser.add_argument("--skip-lm", action="store_true")
    parser.add_argument("--n-train", type=int, default=1000, help="probe train rows")
    parser.add_argument("--n-test", type=int, default=300, help="probe test rows")
    parser.add_argument("--templates", nargs="+", default=list(TEMPLATES), choices=list(TEMPLATES))
    parser.add_argument("--skip-probe", action="store_true")
    parser.add_argument("--nf4", action="store_true", help="load the base as the kernels do: 4-bit NF4 "
                                                           "(bitsandbytes, kagflow's quantization_config)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    import torch
    from transformers import AutoModelForCausalLM

    from kagflow.classifier.model import load_tokenizer, quantization_config
    from kagflow.workflow.standins import GEMMA3_270M, ensure_gguf_checkpoint

    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    base = ensure_gguf_checkpoint(GEMMA3_270M, cache=args.cache)
    tokenizer = load_tokenizer(base)
    quantized = {"quantization_config": quantization_config(torch.float32)} if args.nf4 else {}
    model = AutoModelForCausalLM.from_pretrained(str(base), dtype=torch.float32, **quantized).eval()
    results = {"base": str(base), "weights": "4-bit NF4 (as the kernels load it)" if args.nf4 else "float32",
               "source": "the GGUF's Q4_K_M weights, dequantised"}
    if not args.skip_lm:
        results["lm"] = zero_shot(model, tokenizer, args.lm_items)
        _save(args.out, results)
    results["probe"] = {}
    for name in [] if args.skip_probe else args.templates:
        start = time.time()
        results["probe"][name] = probe(model, tokenizer, name, args.n_train, args.n_test)
        print(f"probe {name}: {results['probe'][name]} ({time.time() - start:.0f}s)", flush=True)
        _save(args.out, results)


def _save(out: Path, results: dict) -> None:
    (out / "knowledge_probe.json").write_text(json.dumps(results, indent=1))


TABLE = tuple((a, b) for a in range(3, 10) for b in range(a, 10))  # one-digit products: 3 x 3 .. 9 x 9


def _question(rng: random.Random, kind: str) -> tuple[str, int, int]:
    """(question, right answer, wrong answer) of an arithmetic zero-shot kind."""
    if kind.startswith("mul"):
        a, b = rng.choice(TABLE)
        right = a * b
        if kind == "mul_neighbour":
            wrong = rng.choice([x * y for x, y in ((a, b - 1), (a, b + 1), (a - 1, b), (a + 1, b))
                                if 3 <= min(x, y) and max(x, y) <= 9 and x * y != right])
        else:
            wrong = right + rng.choice((-2, -1, 1, 2))
        return f"What is {a} * {b}?", right, wrong
    if kind == "add1":
        a, b = rng.randint(2, 9), rng.randint(2, 9)
        return f"What is {a} + {b}?", a + b, a + b + rng.choice((-2, -1, 1, 2))
    a, b = rng.randint(10, 99), rng.randint(10, 99)
    if kind == "sub2":
        a, b = max(a, b), min(a, b)
        return f"What is {a} - {b}?", a - b, max(1, a - b + rng.choice((-10, -2, -1, 1, 2, 10)))
    return f"What is {a} + {b}?", a + b, a + b + rng.choice((-10, -2, -1, 1, 2, 10))


def zero_shot(model, tokenizer, n_items: int) -> dict:
    """Capitals: for every country of ``synth.CAPITALS``, the capital against 4 others (the share of countries
    where it beats all 4, and of the pairs it wins); arithmetic: ``n_items`` questions per kind, right against one
    wrong answer (the share won)."""
    import torch

    from kagflow.classifier.synth import CAPITALS

    rng = random.Random(0)
    out = {}
    start = time.time()
    cities, known, pairs = list(CAPITALS.values()), [], 0
    with torch.no_grad():
        for country, city in CAPITALS.items():
            prompt = f"Q: What is the capital of {country}?\nA:"
            right = _log_likelihood(model, tokenizer, prompt, f" {city}")
            wins = sum(right > _log_likelihood(model, tokenizer, prompt, f" {w}")
                       for w in rng.sample([c for c in cities if c != city], 4))
            pairs += wins
            if wins < 4:
                known.append(country)
    out["capital_all_4"] = round(1 - len(known) / len(CAPITALS), 3)
    out["capital_pairs"] = round(pairs / (4 * len(CAPITALS)), 3)
    out["capital_missed"] = known
    print(f"zero-shot capitals: the capital above 4 others for {out['capital_all_4']:.2f} of {len(CAPITALS)} "
          f"countries, {out['capital_pairs']:.3f} of pairs; missed {known} ({time.time() - start:.0f}s)", flush=True)
    for kind in ("mul_neighbour", "mul_pm2", "add1", "add2", "sub2") if n_items else ():
        start = time.time()
        items = [_question(rng, kind) for _ in range(n_items)]
        wins = 0
        with torch.no_grad():
            for question, right, wrong in items:
                scores = [_log_likelihood(model, tokenizer, f"Q: {question}\nA:", f" {x}") for x in (right, wrong)]
                wins += scores[0] > scores[1]
        out[kind] = round(wins / n_items, 3)
        print(f"zero-shot {kind}: right above wrong in {out[kind]:.2f} of {n_items} ({time.time() - start:.0f}s)",
              flush=True)
    return out


def _log_likelihood(model, tokenizer, prompt: str, answer: str) -> float:
    import torch

    head = tokenizer(prompt)["input_ids"]
    full = tokenizer(prompt + answer)["input_ids"]
    hidden = model.model(input_ids=torch.tensor([full])).last_hidden_state[0]
    logits = model.lm_head(hidden[len(head) - 1:len(full) - 1]).log_softmax(-1)
    return float(logits[torch.arange(len(full) - len(head)), torch.tensor(full[len(head):])].sum())


def _rows(n_train: int, n_test: int) -> tuple[list[dict], list[dict]]:
    """Train and test rows of the knowledge set, split by country as write_knowledge_competition does."""
    from kagflow.classifier import synth

    train_countries, test_countries = synth.knowledge_countries(0)
    return (synth.knowledge_rows(n_train, 0, countries=train_countries),
            synth.knowledge_rows(n_test, 1, countries=test_countries))


def features(model, tokenizer, rows: list[dict], template: str | None, eos: bool, layers) -> dict:
    """The pooled (last) token's hidden state at each of ``layers`` for each row, encoded as kagflow trains."""
    import numpy as np
    import torch

    from kagflow.classifier.text import Encoding, encode_rows

    encoding = Encoding(append_eos=eos, **({} if template is None else {"prompt_template": template}))
    parts = [[json.loads(r[c]) for r in rows] for c in ("prompt", "response_a", "response_b")]
    ids = encode_rows(tokenizer, *parts, 256, encoding=encoding)
    out = {layer: [] for layer in layers}
    with torch.no_grad():
        for start in range(0, len(ids), 16):
            batch = ids[start:start + 16]
            width = max(len(x) for x in batch)
            input_ids = torch.tensor([x + [tokenizer.pad_token_id] * (width - len(x)) for x in batch])
            mask = torch.tensor([[1] * len(x) + [0] * (width - len(x)) for x in batch])
            hidden = model.model(input_ids=input_ids, attention_mask=mask, output_hidden_states=True).hidden_states
            last = torch.tensor([len(x) - 1 for x in batch])
            for layer in layers:
                out[layer].append(hidden[layer][torch.arange(len(batch)), last].float().numpy())
    return {layer: np.concatenate(v) for layer, v in out.items()}


def probe(model, tokenizer, template_name: str, n_train: int, n_test: int) -> dict:
    """Held-out accuracy of a logistic regression per layer (labels 0/1: which response is right)."""
    import numpy as np
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    template, eos = TEMPLATES[template_name]
    train, test = _rows(n_train, n_test)
    n_layers = model.config.num_hidden_layers
    layers = sorted({n_layers // 3, n_layers // 2, (2 * n_layers) // 3, (5 * n_layers) // 6, n_layers})
    x_train = features(model, tokenizer, train, template, eos, layers)
    x_test = features(model, tokenizer, test, template, eos, layers)
    y_train, y_test = np.array([r["label"] for r in train]), np.array([r["label"] for r in test])
    out = {"majority": round(float(np.bincount(y_test).max() / len(y_test)), 3)}
    for layer in layers:
        clf = make_pipeline(StandardScaler(), LogisticRegression(C=0.05, max_iter=3000))
        clf.fit(x_train[layer], y_train)
        out[f"layer{layer}"] = round(float((clf.predict(x_test[layer]) == y_test).mean()), 3)
    return out


if __name__ == "__main__":
    main()
