"""The weekly accelerator quota (``kaggle quota``): kernel runs with a GPU (or TPU) use it up.

Kaggle gives each user about 30 GPU hours a week, renewed every Saturday 00:00 UTC. Here a run's
accelerator time is its run time (start to finish, or to now while it runs) when its settings ask for
an accelerator (``enable_gpu``/``enable_tpu`` or a ``machine_shape`` such as ``NvidiaTeslaT4``); the
use is summed per kernel owner from the run records, so it survives restarts.
"""

from __future__ import annotations

import json
import time
from datetime import datetime, timedelta, timezone
from typing import Optional

from kagflow.local.server.store import Store

WEEK_S = 7 * 24 * 3600


def accelerator(settings: dict) -> Optional[str]:
    """``"gpu"``, ``"tpu"`` or None for a kernel version's settings."""
    shape = (settings.get("machine_shape") or "").lower()
    if shape.startswith(("nvidia", "gpu")):
        return "gpu"
    if shape.startswith("tpu"):
        return "tpu"
    if shape in ("", "none") and settings.get("enable_gpu"):
        return "gpu"
    if shape in ("", "none") and settings.get("enable_tpu"):
        return "tpu"
    return None


def week_start(now: float) -> float:
    """The last Saturday 00:00 UTC at or before ``now`` (when Kaggle renews the quota)."""
    day = datetime.fromtimestamp(now, tz=timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)
    return (day - timedelta(days=(day.weekday() - 5) % 7)).timestamp()


def used_seconds(store: Store, owner: str, kind: str, now: Optional[float] = None) -> float:
    """Accelerator seconds ``owner``'s runs of ``kind`` used since this week's renewal."""
    now = time.time() if now is None else now
    since = week_start(now)
    total = 0.0
    for row in store.all("SELECT v.settings, v.started, v.finished FROM kernel_versions v JOIN kernels k ON "
                         "k.id = v.kernel_id WHERE k.owner=? AND v.started IS NOT NULL AND "
                         "COALESCE(v.finished, ?) > ?", owner, now, since):
        if accelerator(json.loads(row["settings"])) == kind:
            total += max(0.0, (row["finished"] or now) - max(row["started"], since))
    return total
