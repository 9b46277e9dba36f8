"""Temperature calibration (``[infer] temperature``): one T fitted on the out-of-fold predictions by log loss,
applied at inference as softmax(log p / T).

The saved predictions are probabilities, so their logs stand for the logits (softmax is shift-invariant: the same
result). T > 1 softens over-confident predictions, T < 1 sharpens; T never changes a row's argmax, so it only
matters for probabilistic metrics (log loss), and ``fit_temperature`` is for those.
"""

from __future__ import annotations

import math

T_BOUNDS = (0.05, 20.0)  # the range searched for T
EPS = 1e-15


def apply_temperature(probs, temperature: float):
    """softmax(log(probs) / temperature) per row (float64); temperature 1 returns ``probs`` unchanged."""
    import numpy as np

    probs = np.asarray(probs, dtype=np.float64)
    if temperature == 1.0 or not len(probs):
        return probs
    if not (temperature > 0 and math.isfinite(temperature)):
        raise ValueError(f"[infer] temperature = {temperature} is not a positive number")
    z = np.log(np.clip(probs, EPS, 1.0)) / temperature
    z -= z.max(axis=1, keepdims=True)
    p = np.exp(z)
    return p / p.sum(axis=1, keepdims=True)


def log_loss(labels, probs) -> float:
    import numpy as np

    probs = np.asarray(probs, dtype=np.float64)
    p = np.clip(probs[np.arange(len(probs)), np.asarray(labels, dtype=int)], EPS, 1.0)
    return float(-np.log(p).mean())


def fit_temperature(labels, probs) -> float:
    """The T in ``T_BOUNDS`` that minimises the log loss of ``apply_temperature(probs, T)`` against ``labels``
    (bounded scalar search on log T)."""
    from scipy.optimize import minimize_scalar

    lo, hi = (math.log(b) for b in T_BOUNDS)
    best = minimize_scalar(lambda u: log_loss(labels, apply_temperature(probs, math.exp(u))), bounds=(lo, hi),
                           method="bounded", options={"xatol": 1e-4})
    t = math.exp(float(best.x))
    # the search's end points are no better than T = 1 unless they really are
    return t if log_loss(labels, apply_temperature(probs, t)) < log_loss(labels, probs) else 1.0
