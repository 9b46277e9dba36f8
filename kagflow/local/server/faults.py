"""Fault injection: make chosen routes answer 429, 500, slowly, or not at all.

``Faults({"datasets.DatasetApiService/CreateDataset": FaultRule(rate_429=0.5)}, seed=1)``; a route
key is ``Service/Method``, just ``Method``, ``"upload"`` (PUTs to upload URLs), ``"download"``
(GETs of file URLs) or ``"*"``. Decisions come from one seeded RNG, so a test sees the same
sequence every run. ``limit`` caps how many faults a rule injects (e.g. drop only the first upload).
"""

from __future__ import annotations

import random
import threading
from dataclasses import dataclass, field
from typing import Dict, Optional

OK, TOO_MANY, ERROR, SLOW, DROP = "ok", "429", "500", "slow", "drop"


@dataclass
class FaultRule:
    rate_429: float = 0.0
    rate_500: float = 0.0
    rate_slow: float = 0.0
    rate_drop: float = 0.0
    slow_seconds: float = 1.0
    retry_after: int = 1
    limit: Optional[int] = None
    injected: int = field(default=0, compare=False)


class Faults:
    """Per-route fault rules with a deterministic RNG."""

    def __init__(self, rules: Optional[Dict[str, FaultRule]] = None, *, seed: int = 0):
        self.rules = dict(rules or {})
        self._rng = random.Random(seed)
        self._lock = threading.Lock()

    def rule_for(self, route: str) -> Optional[FaultRule]:
        method = route.rsplit("/", 1)[-1]
        return self.rules.get(route) or self.rules.get(method) or self.rules.get("*")

    def decide(self, route: str) -> tuple[str, Optional[FaultRule]]:
        """What to do with one request to ``route``: ``ok``, ``429``, ``500``, ``slow`` or ``drop``."""
        rule = self.rule_for(route)
        if rule is None:
            return OK, None
        with self._lock:
            if rule.limit is not None and rule.injected >= rule.limit:
                return OK, rule
            roll = self._rng.random()
            for action, rate in ((TOO_MANY, rule.rate_429), (ERROR, rule.rate_500), (SLOW, rule.rate_slow),
                                 (DROP, rule.rate_drop)):
                if roll < rate:
                    rule.injected += 1
                    return action, rule
                roll -= rate
        return OK, rule
