"""Resumable training state for the fast loop (``fit.fit_lora``): save, find, load, and the time budget.

A checkpoint is a folder ``<checkpoint_dir>/fit-step-000120/`` holding ``state.pt`` (the trainable
weights: LoRA and the score head; optimizer, scheduler and GradScaler state; every rank's RNG
states; the losses so far) and ``fit-state.json`` (step, plan fingerprint), written by rank 0 only,
atomically (a temporary folder renamed into place), so a kernel killed mid-save leaves the previous one.
Resuming looks in the working checkpoint folder and in every folder under the input root (a previous
kernel version's output mounted as a source), and takes the furthest checkpoint whose plan fingerprint
(the rows, their order, the step size) matches this run's.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

MARKER = "fit-state.json"
PREFIX = "fit-step-"


def now() -> float:
    """The clock the time budget reads (one place, so tests can drive it)."""
    return time.monotonic()


@dataclass
class Checkpointing:
    """When and where ``fit_lora`` saves, where it looks for a checkpoint to resume, and when it must stop.

    ``every_steps`` / ``every_seconds``: save after that many steps or seconds (0: never on that count).
    ``keep``: how many checkpoints stay in ``folder`` (None: all). ``search``: extra folders searched
    for a checkpoint to resume (e.g. the input root). ``deadline``: a ``now()`` value by which training
    must have stopped; kept free before it: ``reserve_seconds`` plus the time to evaluate ``reserve_rows``
    rows (half a training row's measured time each: forward only).
    """

    folder: Path | None = None
    every_steps: int = 0
    every_seconds: float = 0.0
    keep: int | None = 2
    search: Sequence[Path] = ()
    deadline: float | None = None
    reserve_seconds: float = 0.0
    reserve_rows: int = 0


def plan_fingerprint(steps: Sequence[Sequence[int]], lengths: Sequence[int], labels: Sequence) -> str:
    """A digest of what a run trains on, in which order: a checkpoint only resumes the same plan."""
    h = hashlib.sha256()
    h.update(json.dumps([list(map(int, s)) for s in steps]).encode())
    h.update(json.dumps([int(x) for x in lengths]).encode())
    h.update(json.dumps([[float(p) for p in x] if isinstance(x, (list, tuple)) else int(x) for x in labels]).encode())
    return h.hexdigest()[:16]


def rng_state() -> dict:
    import numpy as np
    import torch

    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def set_rng_state(state: dict) -> None:
    import numpy as np
    import torch

    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


def trainable_state(model) -> dict:
    return {n: p.detach().cpu().clone() for n, p in model.named_parameters() if p.requires_grad}


def save(folder: Path, *, step: int, fingerprint: str, model, optimizer, scheduler, scaler, rng: list,
         losses: list, keep: int | None) -> Path:
    """Write checkpoint ``step`` into ``folder`` atomically; prune all but the newest ``keep``."""
    import torch

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    final = folder / f"{PREFIX}{step:06d}"
    tmp = folder / f".tmp-{PREFIX}{step:06d}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    torch.save({"trainable": trainable_state(model), "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(), "scaler": scaler.state_dict() if scaler is not None else None,
                "rng": rng, "losses": list(losses)}, tmp / "state.pt")
    (tmp / MARKER).write_text(json.dumps({"step": step, "fingerprint": fingerprint, "world": len(rng)}))
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    if keep is not None:
        for old in sorted(folder.glob(f"{PREFIX}*"))[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
    return final


def find_latest(folders: Sequence[Path], fingerprint: str) -> Path | None:
    """The checkpoint with the highest step for this plan, under any of ``folders`` (searched recursively)."""
    best, best_step = None, -1
    for root in folders:
        root = Path(root)
        if not root.is_dir():
            continue
        for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith(".tmp-"))
            if MARKER not in filenames:
                continue
            try:
                meta = json.loads((Path(dirpath) / MARKER).read_text())
            except (OSError, ValueError):
                continue
            if meta.get("fingerprint") != fingerprint:
                print(f"notice: {dirpath} is a checkpoint of another run (other rows or settings); not resumed",
                      flush=True)
            elif meta["step"] > best_step and (Path(dirpath) / "state.pt").is_file():
                best, best_step = Path(dirpath), meta["step"]
    return best


def load(path: Path, *, model, optimizer, scheduler, scaler, device, rank: int) -> tuple[int, list]:
    """Restore a checkpoint into this process; returns (step, losses)."""
    import torch

    data = torch.load(Path(path) / "state.pt", map_location=device, weights_only=False)
    params = dict(model.named_parameters())
    with torch.no_grad():
        for name, value in data["trainable"].items():
            params[name].copy_(value.to(params[name].device))
    optimizer.load_state_dict(data["optimizer"])
    scheduler.load_state_dict(data["scheduler"])
    if scaler is not None and data["scaler"] is not None:
        scaler.load_state_dict(data["scaler"])
    if rank < len(data["rng"]):
        set_rng_state(_to_cpu(data["rng"][rank]))
    meta = json.loads((Path(path) / MARKER).read_text())
    return int(meta["step"]), list(data["losses"])


def _to_cpu(state: dict) -> dict:
    """RNG states must be CPU byte tensors whatever ``map_location`` did."""
    return {k: (v.cpu() if hasattr(v, "cpu") else v) for k, v in state.items()}
