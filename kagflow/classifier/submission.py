"""submission.csv by the task's ``submission`` format: building it and checking it the way the competition does.

    probabilities         the id, then one probability per class (named as the task's ``probability_columns``)
    label                 the id, then the most probable label in ``label_column`` (``map_at_3``: the top 3
                          labels, best first, space-separated: Kaggle's MAP@3 format)
    positive_probability  the id, then P(the last label) in ``label_column`` (binary tasks)
"""

from __future__ import annotations

from pathlib import Path

from .task import TOP_K, Task


def make_submission(ids, probs, task: Task | None = None):
    """DataFrame of ``task``'s submission (default: LMSYS) from class probabilities, in the given id order."""
    import numpy as np
    import pandas as pd

    task = task or Task()
    probs = np.asarray(probs, dtype=np.float64)
    if task.submission == "probabilities":
        frame = pd.DataFrame(probs, columns=list(task.probability_columns))
    elif task.submission == "positive_probability":
        frame = pd.DataFrame({task.label_column: probs[:, -1]})
    else:
        from .metrics import top_k

        k = TOP_K if task.metric == "map_at_3" else 1
        names = task.class_names
        frame = pd.DataFrame({task.label_column: [" ".join(names[c] for c in row) for row in top_k(probs, k)]})
    frame.insert(0, task.id_column, list(ids))
    return frame


def check_submission(submission, test_ids, task: Task | None = None, *, tolerance: float = 1e-6) -> list[str]:
    """Problems that would get the submission rejected or mis-scored (empty list: none)."""
    import numpy as np

    task = task or Task()
    problems = []
    expected = list(task.submission_columns)
    if list(submission.columns) != expected:
        return [f"columns are {list(submission.columns)}, expected {expected}"]
    if list(submission[task.id_column]) != list(test_ids):
        problems.append(f"ids differ from {task.test_file}'s ids or their order")
    if task.submission == "label":
        known = set(task.class_names)
        bad = [v for v in submission[task.label_column] if not v or not set(str(v).split()) <= known]
        if bad:
            problems.append(f"{len(bad)} row(s) hold a value that is not one of labels {list(task.class_names)}: "
                            f"{bad[0]!r}")
        return problems
    values = submission[expected[1:]].to_numpy(dtype=float)
    if not np.isfinite(values).all():
        problems.append("probabilities contain NaN or inf")
    elif ((values < 0) | (values > 1)).any():
        problems.append("probabilities outside [0, 1]")
    if task.submission == "probabilities":
        worst = float(np.abs(values.sum(axis=1) - 1).max()) if len(values) else 0.0
        if worst > tolerance:
            problems.append(f"rows do not sum to 1 (worst deviation {worst:.2e})")
    return problems


def write_submission(ids, probs, path, *, task: Task | None = None, test_ids=None) -> Path:
    """Write submission.csv; raise ValueError if it fails ``check_submission``."""
    frame = make_submission(ids, probs, task)
    problems = check_submission(frame, list(ids) if test_ids is None else test_ids, task)
    if problems:
        raise ValueError("invalid submission: " + "; ".join(problems))
    path = Path(path)
    frame.to_csv(path, index=False)
    return path
