"""submission.csv: building it and checking it the way the competition does."""

from __future__ import annotations

from pathlib import Path

from . import LABEL_COLUMNS


def make_submission(ids, probs):
    """DataFrame id + the three probability columns, in the given id order."""
    import pandas as pd

    frame = pd.DataFrame(probs, columns=list(LABEL_COLUMNS))
    frame.insert(0, "id", list(ids))
    return frame


def check_submission(submission, test_ids, *, tolerance: float = 1e-6) -> list[str]:
    """Problems that would get the submission rejected or mis-scored (empty list: none)."""
    import numpy as np

    problems = []
    expected = ["id", *LABEL_COLUMNS]
    if list(submission.columns) != expected:
        return [f"columns are {list(submission.columns)}, expected {expected}"]
    if list(submission["id"]) != list(test_ids):
        problems.append("ids differ from test.csv's ids or their order")
    values = submission[list(LABEL_COLUMNS)].to_numpy(dtype=float)
    if not np.isfinite(values).all():
        problems.append("probabilities contain NaN or inf")
    elif ((values < 0) | (values > 1)).any():
        problems.append("probabilities outside [0, 1]")
    worst = float(np.abs(values.sum(axis=1) - 1).max()) if len(values) else 0.0
    if worst > tolerance:
        problems.append(f"rows do not sum to 1 (worst deviation {worst:.2e})")
    return problems


def write_submission(ids, probs, path, *, test_ids=None) -> Path:
    """Write submission.csv; raise ValueError if it fails ``check_submission``."""
    frame = make_submission(ids, probs)
    problems = check_submission(frame, list(ids) if test_ids is None else test_ids)
    if problems:
        raise ValueError("invalid submission: " + "; ".join(problems))
    path = Path(path)
    frame.to_csv(path, index=False)
    return path
