"""Why each failing test of Kaggle's suites fails on the local Kaggle: the causes, and which tests each explains.

Read from the recorded requests and answers of a run (``tests/peer/.work/run/requests.jsonl``) and the
installed clients' code. A failure with no entry here is printed as UNDIAGNOSED; an entry whose test
now passes is simply not shown.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

FIDELITY, OUTSIDE, REAL_DATA, CLIENT = "fidelity", "outside the workflow", "needs real-world data", "client's own bug"

CATEGORIES = (f"Categories: **{FIDELITY}** (the local Kaggle answers differently from Kaggle: fix it), "
              f"**{OUTSIDE}** (a Kaggle feature kagflow's workflow does not use: answered 405, documented), "
              f"**{REAL_DATA}** (the test checks a fact of Kaggle's production data that no seeding through the "
              f"public API can make), **{CLIENT}** (the suite or the official client fails by itself, whatever the "
              "server answers).")

COUNTING = ""


@dataclass(frozen=True)
class Cause:
    key: str        # short id, also the order of the fix list
    category: str
    title: str
    detail: str     # the Service/Method, what the local Kaggle does, what Kaggle does instead


CAUSES: tuple = ()

# (suite, test) -> (cause key, note)
TESTS: dict = {}

# (kind, ref) -> cause key, for refused seeds
SEEDS: dict = {}

_BY_KEY = {c.key: c for c in CAUSES}


def cause_of(suite: str, test: str) -> Optional[Cause]:
    entry = TESTS.get((suite, test))
    return _BY_KEY[entry[0]] if entry else None


def note_of(suite: str, test: str) -> str:
    entry = TESTS.get((suite, test))
    return entry[1] if entry else ""


def seed_cause(kind: str, ref: str) -> Optional[Cause]:
    key = SEEDS.get((kind, ref))
    return _BY_KEY[key] if key else None


def ranked() -> tuple:
    return CAUSES
