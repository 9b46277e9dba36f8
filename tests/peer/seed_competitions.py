"""Host the suites' competitions on the local server: ``python seed_competitions.py DATA_DIR RESULT_JSON``.

Kaggle's public API cannot create a competition, so this is the one seed that uses kagflow's own
hosting call (the one behind ``kagflow local competition``), run in kagflow's environment while the
server runs. These are file-submission competitions (``kernels_only=False``); each records the rules
acceptances of ``seed_data`` (downloads answer 403 to the others, as on Kaggle).
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import seed_data as data

from kagflow.local.server.competition import SOLUTION, accept_rules, install_competition


def seed(data_dir: str, comp: data.Competition) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        for name, text in {**comp.files, SOLUTION: comp.solution}.items():
            (Path(tmp) / name).write_text(text, encoding="utf-8")
        install_competition(data_dir, comp.slug, tmp, title=comp.title, kernels_only=False, metric=comp.metric,
                            category=comp.category)
    for user in comp.accepted_by:
        accept_rules(data_dir, comp.slug, user)


def main(data_dir: str, result_path: str) -> int:
    results = []
    for comp in data.COMPETITIONS:
        try:
            seed(data_dir, comp)
            results.append({"kind": "competition", "ref": comp.slug, "ok": True, "error": ""})
        except Exception as exc:  # recorded; the suites then show what it costs
            results.append({"kind": "competition", "ref": comp.slug, "ok": False,
                            "error": f"{type(exc).__name__}: {exc}"})
        print(f"seed competition {comp.slug}: {'ok' if results[-1]['ok'] else results[-1]['error']}", flush=True)
    Path(result_path).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
