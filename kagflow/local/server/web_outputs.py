"""What a kernel version's page shows of its run: parameters, log, output files, images and ``metrics.json``.

Everything here reads the version's sandbox (``runs/<owner>/<slug>/v<N>/``) and its stored source; links
to files are the signed download links of :mod:`kagflow.local.server.transfer` (relative, so a page
opened as ``localhost`` or ``127.0.0.1`` alike loads them), each re-checked on every read.
"""

from __future__ import annotations

import ast
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from kagflow.local.run import mounts
from kagflow.local.run.runner import read_log
from kagflow.local.server import transfer
from kagflow.local.server.access import Grant
from kagflow.local.server.jobs import sandbox_dir
from kagflow.local.server.store import Store

LOG_SHOWN_CHARS = 1 << 20        # the last 1 Mi characters of a log are shown (the whole log is a download)
METRICS_MAX_BYTES = 2 << 20      # a metrics.json larger than this is linked, not tabulated
IMAGES_SHOWN = 12                # inline images per version
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".gif", ".webp")
PARAMETER_TAGS = ("parameters", "injected-parameters")  # papermill's cells, in the order they apply
# terminal control sequences (colours, cursor moves) a log shows as text; live-log.js drops the same
_ANSI = re.compile(r"\x1b(?:\[[0-9;?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)|[@-Z\\-_])")


@dataclass
class Log:
    entries: list              # [{"stream": "stdout"|"stderr", "text": str}], the shown tail
    total: int                 # entries in the whole log (what the live stream skips on a replay)
    cut: int = 0               # characters left out before the shown tail
    url: str = ""              # the whole log.json


@dataclass
class OutputFile:
    name: str
    size: int
    url: str


@dataclass
class Metrics:
    """``metrics.json`` as tables: scalars, the confusion matrix, nested objects flattened, the rest as JSON."""
    name: str
    url: str
    rows: list = field(default_factory=list)        # [(key, text)]
    matrix: Optional[dict] = None                   # {"labels": [...], "rows": [[int, ...], ...]}
    sections: list = field(default_factory=list)    # [(key, [(subkey, text)])]
    records: list = field(default_factory=list)     # [(key, [column], [[text]])]: lists of flat objects
    error: str = ""


def parameters(source: str, kernel_type: str) -> tuple[dict, str]:
    """``({name: repr}, problem)``: the assignments of the notebook's ``parameters`` cell, then of an
    ``injected-parameters`` cell (papermill's override); problem is "" or why they could not be read."""
    if kernel_type != "notebook":
        return {}, ""
    try:
        cells = json.loads(source).get("cells") or []
    except (ValueError, AttributeError) as exc:
        return {}, f"the notebook is not valid JSON ({exc})"
    found: dict = {}
    for tag in PARAMETER_TAGS:
        for cell in cells:
            if tag not in ((cell.get("metadata") or {}).get("tags") or []):
                continue
            text = cell.get("source") or ""
            text = "".join(text) if isinstance(text, list) else str(text)
            try:
                tree = ast.parse(text)
            except SyntaxError as exc:
                return found, f"its {tag} cell does not parse (line {exc.lineno}: {exc.msg})"
            for node in tree.body:
                if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
                    found[node.targets[0].id] = ast.get_source_segment(text, node.value) or "?"
    return found, ""


def changed(now: dict, before: Optional[dict]) -> dict:
    """The parameters of a version that differ from the version before it (none for the first version)."""
    if before is None:
        return {}
    return {k: v for k, v in now.items() if before.get(k) != v}


def display_text(text: str) -> str:
    """A log entry as a terminal would leave it: control sequences dropped, a line rewritten after a carriage
    return (a progress bar) shown as its last state."""
    text = _ANSI.sub("", text)
    if "\r" not in text:
        return text
    lines = text.replace("\r\n", "\n").split("\n")
    return "\n".join(line.rsplit("\r", 1)[-1] for line in lines)


def log_of(store: Store, owner: str, slug: str, number: int, grant: Grant) -> Log:
    path = sandbox_dir(store, owner, slug, number) / "log.json"
    entries = read_log(path)
    shown, size = [], 0
    for entry in reversed(entries):
        if not isinstance(entry, dict):
            continue
        text = str(entry.get("data", ""))
        if size + len(text) > LOG_SHOWN_CHARS and shown:
            break
        shown.append({"stream": "stderr" if entry.get("stream_name") == "stderr" else "stdout",
                      "text": display_text(text)})
        size += len(text)
    shown.reverse()
    cut = sum(len(str(e.get("data", ""))) for e in entries if isinstance(e, dict)) - size
    url = transfer.signed_url(store, "", path, f"{slug}-v{number}-log.json", grant) if path.is_file() else ""
    return Log(shown, len(entries), cut, url)


def output_files(store: Store, owner: str, slug: str, number: int, grant: Grant) -> list[OutputFile]:
    files = mounts.output_files(sandbox_dir(store, owner, slug, number) / "working")
    return [OutputFile(name, path.stat().st_size, transfer.signed_url(store, "", path, name, grant))
            for name, path in files]


def _shallow_first(files: list[OutputFile]) -> list[OutputFile]:
    return sorted(files, key=lambda f: (f.name.count("/"), f.name))


def images(files: list[OutputFile]) -> list[OutputFile]:
    """The output's images, top-level ones first, at most :data:`IMAGES_SHOWN`."""
    return _shallow_first([f for f in files if f.name.lower().endswith(IMAGE_SUFFIXES)])[:IMAGES_SHOWN]


def metrics(store: Store, owner: str, slug: str, number: int, files: list[OutputFile]) -> Optional[Metrics]:
    """The shallowest ``metrics.json`` of the output as tables (None when the output has none)."""
    found = _shallow_first([f for f in files if Path(f.name).name == "metrics.json"])
    if not found:
        return None
    first = found[0]
    out = Metrics(first.name, first.url)
    if first.size > METRICS_MAX_BYTES:
        out.error = f"{first.size} bytes: too large to show here; download it"
        return out
    path = sandbox_dir(store, owner, slug, number) / "working" / first.name
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        out.error = f"not valid JSON ({exc})"
        return out
    if not isinstance(data, dict):
        out.error = f"a JSON {type(data).__name__}, not an object of metrics"
        return out
    _tabulate(data, out)
    return out


def _tabulate(data: dict, out: Metrics) -> None:
    labels, matrix = data.get("labels"), data.get("confusion_matrix")
    if _is_matrix(matrix, labels):
        out.matrix = {"labels": [str(x) for x in labels], "rows": matrix}
    for key, value in data.items():
        if key == "confusion_matrix" and out.matrix is not None or key == "labels" and out.matrix is not None:
            continue
        if isinstance(value, dict):
            out.sections.append((key, [(k, _text(v)) for k, v in value.items()]))
        elif _is_records(value):
            columns = list(dict.fromkeys(k for row in value for k in row))
            out.records.append((key, columns, [[_text(row.get(c)) if c in row else "" for c in columns]
                                               for row in value]))
        else:
            out.rows.append((key, _text(value)))


def _is_records(value) -> bool:
    """A list of objects of plain values (e.g. ``epoch_evals``): one table, a row each."""
    return (isinstance(value, list) and bool(value) and all(isinstance(row, dict) for row in value) and
            all(not isinstance(v, (dict, list)) for row in value for v in row.values()))


def _is_matrix(matrix, labels) -> bool:
    return (isinstance(labels, list) and isinstance(matrix, list) and len(matrix) == len(labels) and
            all(isinstance(r, list) and len(r) == len(labels) and
                all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in r) for r in matrix))


def _text(value) -> str:
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, (int, str)):
        return str(value)
    return json.dumps(value, separators=(", ", ": "))
