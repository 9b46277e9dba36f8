"""The peer run's outputs: ``results.json`` (everything measured) and ``RESULTS.md`` (counts, commits, failures
with their diagnoses, and the fix list), plus the summary printed at the end of a run."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import diagnoses

ANSWER_CHARS = 300


def load_requests(path: Path) -> dict:
    """The recorder's exchanges by test tag, in order."""
    by_test = defaultdict(list)
    if path.exists():
        for line in path.read_text(encoding="utf-8").splitlines():
            entry = json.loads(line)
            by_test[entry["test"]].append(entry)
    return by_test


def _refused(entry: dict) -> bool:
    if entry["status"] is None or entry["status"] >= 400:
        return True
    try:
        body = json.loads(entry["answer"] or "")
    except ValueError:
        return False
    return isinstance(body, dict) and bool(body.get("error") or body.get("errorMessage"))


def _compact(entry: dict) -> dict:
    path = entry["url"].split("//", 1)[-1].split("/", 1)[-1]
    return {"method": entry["method"], "path": "/" + path, "body": entry["body"], "status": entry["status"],
            "answer": entry["answer"]}


def exchanges_of(exchanges: list) -> dict:
    """What a failed test's record keeps: its refused exchanges (an HTTP error, or HTTP 200 with ``error`` in the
    body), its last exchange and how many it made."""
    return {"refused": [_compact(e) for e in exchanges if _refused(e)],
            "last": _compact(exchanges[-1]) if exchanges else None, "exchanges": len(exchanges)}


def decisive(test: dict, route: str = "") -> dict | None:
    """The exchange that shows why ``test`` failed: the last refused one on the cause's ``route`` (a refusal that
    comes first, e.g. the GetModel 404 before a create, is expected), else the last refused one, else the last."""
    refused = test.get("refused") or []
    on_route = [e for e in refused if route and route in e["path"]]
    return (on_route or refused or [test.get("last")])[-1]


def _counts(suite: dict) -> tuple[int, int]:
    tests = suite["tests"]
    return sum(t["outcome"] == "passed" for t in tests), len(tests)


def _ceiling(suite: dict) -> int:
    """Tests that pass once every fidelity cause is fixed (the others need real data, or fail by themselves)."""
    fixable = [t for t in suite["tests"] if t["outcome"] == "failed"
               and (c := diagnoses.cause_of(suite["suite"], t["test"])) and c.category == diagnoses.FIDELITY]
    return _counts(suite)[0] + len(fixable)


def summary(doc: dict) -> str:
    lines = ["", f"{'suite':32} {'passed':>8} {'baseline':>9} {'ceiling':>8}"]
    for suite in doc["suites"]:
        passed, total = _counts(suite)
        lines.append(f"{suite['suite']:32} {passed:>4}/{total:<3} {suite['baseline'][0]:>5}/{suite['baseline'][1]:<3} "
                     f"{_ceiling(suite):>4}/{total}")
    failed_seeds = [s for s in doc["seeds"] if not s["ok"]]
    if failed_seeds:
        lines += ["", "seeds refused:"] + [f"  {s['kind']} {s['ref']}: {s['error'][:150]}" for s in failed_seeds]
    lines += ["", "failures (category: cause):"]
    for suite in doc["suites"]:
        for test in suite["tests"]:
            if test["outcome"] == "failed":
                cause = diagnoses.cause_of(suite["suite"], test["test"])
                label = f"{cause.category}: {cause.title}" if cause else "UNDIAGNOSED"
                lines.append(f"  {suite['suite'][:16]:16} {test['test'][:58]:58} {label[:90]}")
    return "\n".join(lines)


def _md(text, limit: int = ANSWER_CHARS) -> str:
    text = "" if text is None else str(text)
    text = text if len(text) <= limit else text[:limit] + "…"
    return text.replace("|", "\\|").replace("\n", " ").replace("`", "'")


def _request_cell(request: dict | None) -> str:
    if request is None:
        return "(none: it failed before any request)"
    body = f" `{_md(request['body'], 160)}`" if request["body"] else ""
    return f"{request['method']} `{_md(request['path'], 120)}`{body}"


def _answer_cell(request: dict | None, test: dict) -> str:
    if request is None:
        return _md(test["message"].strip().splitlines()[-1] if test["message"].strip() else "")
    return f"{request['status']} `{_md(request['answer'])}`"


def markdown(doc: dict) -> str:
    out = ["# Kaggle's public test suites against kagflow's local Kaggle", "",
           "Written by `tests/peer/run.py` (`make peer`); the diagnoses come from `tests/peer/diagnoses.py`.", "",
           f"Run {doc['date']}, kagflow `{doc['kagflow_commit']}`; suites from "
           + ", ".join(f"{name} `{r['commit']}`" for name, r in doc["repos"].items())
           + "; clients " + ", ".join(f"{k} {v}" for k, v in doc["clients"].items()) + ".", "",
           f"Time: {doc['seconds']['total']} s in all (seeding {doc['seconds']['seed']} s"
           + "".join(f", {s['suite']} {s['seconds']} s" for s in doc["suites"]) + ").", "",
           "The suites' own files are unchanged, except: " + ("; ".join(doc["adjustments"]) or "none") + ".", "",
           "| suite | passed | failed | skipped | pytest's tally | the issue's baseline | ceiling |",
           "| --- | --- | --- | --- | --- | --- | --- |"]
    for suite in doc["suites"]:
        passed, total = _counts(suite)
        skipped = sum(t["outcome"] == "skipped" for t in suite["tests"])
        out.append(f"| {suite['suite']} | {passed}/{total} | {total - passed - skipped} | {skipped} | "
                   f"{suite.get('tally') or '-'} | {suite['baseline'][0]}/{suite['baseline'][1]} | "
                   f"{_ceiling(suite)}/{total} |")
    out += ["", diagnoses.COUNTING, "", diagnoses.BASELINE, "", "Ceiling: what passes once every **fidelity** cause below is fixed (and "
            "the seeds they block succeed); the rest need real-world data, are outside the workflow, or fail in the "
            "client itself.", "", diagnoses.TARGETS, ""]
    failed_seeds = [s for s in doc["seeds"] if not s["ok"]]
    out += ["## Seeding", "", f"{len(doc['seeds']) - len(failed_seeds)} of {len(doc['seeds'])} resources created "
            "(`seed_data.py`)." + (" Refused:" if failed_seeds else ""), ""]
    for s in failed_seeds:
        causes_of_seed = diagnoses.seed_causes(s["kind"], s["ref"])
        out.append(f"- {s['kind']} `{s['ref']}`: {_md(s['error'], 400)} — "
                   + ("; ".join(f"**{c.category}** ({c.key}): {c.title}" for c in causes_of_seed) or "UNDIAGNOSED"))
    out.append("")
    causes: dict = defaultdict(list)
    for suite in doc["suites"]:
        failures = [t for t in suite["tests"] if t["outcome"] == "failed"]
        out += [f"## {suite['suite']} ({suite['repo']}, as `{suite['user']}`): {len(failures)} failures", ""]
        if not failures:
            continue
        out += ["| test | request that failed | local answer | diagnosis |", "| --- | --- | --- | --- |"]
        for test in failures:
            cause = diagnoses.cause_of(suite["suite"], test["test"])
            note = diagnoses.note_of(suite["suite"], test["test"])
            if cause:
                causes[cause.key].append(f"{suite['suite']}: {test['test']}")
            diagnosis = (f"**{cause.category}** ({cause.key}): {cause.title}" if cause else "UNDIAGNOSED")
            request = decisive(test, cause.route if cause else "")
            out.append(f"| `{_md(test['test'], 120)}` | {_request_cell(request)} | {_answer_cell(request, test)} | "
                       f"{diagnosis}{'. ' + _md(note, 600) if note else ''} |")
        out.append("")
    out += ["## The fix list (most valuable first)", "", diagnoses.CATEGORIES, "", diagnoses.NOT_SHOWN, ""]
    for cause in diagnoses.ranked():
        tests = causes.get(cause.key, [])
        seeds = [f"seed {s['kind']} {s['ref']}" for s in failed_seeds if cause in diagnoses.seed_causes(s["kind"], s["ref"])]
        if not tests and not seeds:
            continue
        out += [f"### {cause.key}. {cause.title} ({cause.category}; {len(tests)} test(s))", "", cause.detail, "",
                "Fails: " + "; ".join(f"`{t}`" for t in seeds + tests), ""]
    done = [c for c in diagnoses.fixed() if not causes.get(c.key)]
    if done:
        out += ["## Fixed", "", "Fidelity causes found by this runner that no longer fail any test: what was wrong, "
                "what changed, and the kagflow test that guards it.", ""]
        out += [f"- **{c.key}. {c.title}.** {c.detail} *Fixed:* {c.fixed}." for c in done]
    return "\n".join(out).rstrip() + "\n"


def write(doc: dict, json_path: Path, md_path: Path) -> None:
    json_path.write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
    md_path.write_text(markdown(doc), encoding="utf-8")
