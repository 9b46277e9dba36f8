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


def failed_exchange(exchanges: list) -> dict | None:
    """The last refused exchange of a failed test (an HTTP error, or HTTP 200 with ``error`` in the body), else its
    last exchange; None when the test sent nothing (it failed in the client or before any request)."""
    refused = [e for e in exchanges if _refused(e)]
    entry = (refused or exchanges or [None])[-1]
    if entry is None:
        return None
    path = entry["url"].split("//", 1)[-1].split("/", 1)[-1]
    return {"method": entry["method"], "path": "/" + path, "body": entry["body"], "status": entry["status"],
            "answer": entry["answer"], "exchanges": len(exchanges)}


def _counts(suite: dict) -> tuple[int, int]:
    tests = suite["tests"]
    return sum(t["outcome"] == "passed" for t in tests), len(tests)


def summary(doc: dict) -> str:
    lines = ["", f"{'suite':32} {'passed':>8} {'baseline':>9}"]
    for suite in doc["suites"]:
        passed, total = _counts(suite)
        lines.append(f"{suite['suite']:32} {passed:>4}/{total:<3} {suite['baseline'][0]:>5}/{suite['baseline'][1]}")
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
        return "(no request: failed in the client)"
    body = f" `{_md(request['body'], 160)}`" if request["body"] else ""
    return f"{request['method']} `{_md(request['path'], 120)}`{body}"


def _answer_cell(request: dict | None, test: dict) -> str:
    if request is None:
        return _md(test["message"].strip().splitlines()[-1] if test["message"].strip() else "")
    return f"{request['status']} `{_md(request['answer'])}`"


def markdown(doc: dict) -> str:
    out = ["# Kaggle's public test suites against kagflow's local Kaggle", "",
           "Written by `tests/peer/run.py` (`make peer`); the diagnoses come from `tests/peer/diagnoses.py`.", "",
           f"Run {doc['date']}, kagflow `{doc['kagflow_commit'][:12]}`; suites from "
           + ", ".join(f"{name} `{r['commit']}`" for name, r in doc["repos"].items())
           + "; clients " + ", ".join(f"{k} {v}" for k, v in doc["clients"].items()) + ".", "",
           f"Time: {doc['seconds']['total']} s in all (seeding {doc['seconds']['seed']} s"
           + "".join(f", {s['suite']} {s['seconds']} s" for s in doc["suites"]) + ").", "",
           "| suite | passed | failed | skipped | the issue's baseline |", "| --- | --- | --- | --- | --- |"]
    for suite in doc["suites"]:
        passed, total = _counts(suite)
        skipped = sum(t["outcome"] == "skipped" for t in suite["tests"])
        out.append(f"| {suite['suite']} | {passed}/{total} | {total - passed - skipped} | {skipped} | "
                   f"{suite['baseline'][0]}/{suite['baseline'][1]} |")
    out += ["", diagnoses.COUNTING, ""]
    failed_seeds = [s for s in doc["seeds"] if not s["ok"]]
    out += ["## Seeding", "", f"{len(doc['seeds']) - len(failed_seeds)} of {len(doc['seeds'])} resources created "
            "(`seed_data.py`)." + (" Refused:" if failed_seeds else ""), ""]
    for s in failed_seeds:
        cause = diagnoses.seed_cause(s["kind"], s["ref"])
        out.append(f"- {s['kind']} `{s['ref']}`: {_md(s['error'], 400)}"
                   + (f" — **{cause.category}**: {cause.title}" if cause else " — UNDIAGNOSED"))
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
            out.append(f"| `{_md(test['test'], 120)}` | {_request_cell(test.get('request'))} | "
                       f"{_answer_cell(test.get('request'), test)} | {diagnosis}{'. ' + _md(note, 600) if note else ''} |")
        out.append("")
    out += ["## The fix list (most valuable first)", "", diagnoses.CATEGORIES, ""]
    for cause in diagnoses.ranked():
        tests = causes.get(cause.key, [])
        seeds = [f"seed {s['kind']} {s['ref']}" for s in failed_seeds if (c := diagnoses.seed_cause(s["kind"], s["ref"]))
                 and c.key == cause.key]
        if not tests and not seeds:
            continue
        out += [f"### {cause.key}. {cause.title} ({cause.category}; {len(tests)} test(s))", "", cause.detail, "",
                "Fails: " + "; ".join(f"`{t}`" for t in seeds + tests), ""]
    return "\n".join(out).rstrip() + "\n"


def write(doc: dict, json_path: Path, md_path: Path) -> None:
    json_path.write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
    md_path.write_text(markdown(doc), encoding="utf-8")
