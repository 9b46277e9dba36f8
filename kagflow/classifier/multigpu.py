"""Several GPUs: one model copy per device for inference, accelerate/torchrun for training.

Inference follows the LMSYS winners on Kaggle's T4 x2: the length-sorted rows are dealt to the
devices alternately (so each gets the same mix of long and short rows), every device runs its own
model copy in a thread, and the probabilities are merged back into the input order.
"""

from __future__ import annotations

import os
import shlex
import sys
import threading
from typing import Callable, Sequence


def visible_devices() -> list[str]:
    """``cuda:0`` … for every visible GPU, else ``["cpu"]``."""
    try:
        import torch

        if torch.cuda.is_available():
            return [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    except ImportError:
        pass
    return ["cpu"]


def split_for_devices(lengths: Sequence[int], n_devices: int) -> list[list[int]]:
    """Row indices per device: sorted by length (longest first), dealt round-robin.

    Every index appears exactly once; with one device the single part holds all rows.
    Uneven counts differ by at most one row, and each part's total length is balanced.
    """
    if n_devices < 1:
        raise ValueError("n_devices must be at least 1")
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    return [order[d::n_devices] for d in range(n_devices)]


def merge_parts(n_rows: int, parts: Sequence[tuple[Sequence[int], "object"]]):
    """Put each part's rows of probabilities back at their indices (n_rows x k float64 array).

    Fails loudly if an index is missing or predicted twice, so a lost shard can never pass as a
    submission.
    """
    import numpy as np

    merged, seen = None, np.zeros(n_rows, dtype=bool)
    for indices, probs in parts:
        probs = np.asarray(probs, dtype=np.float64)
        if len(indices) != len(probs):
            raise ValueError(f"a part has {len(indices)} indices but {len(probs)} rows of probabilities")
        if merged is None:
            merged = np.full((n_rows, probs.shape[1] if probs.ndim == 2 else 3), np.nan)
        idx = np.asarray(indices, dtype=np.int64)
        if len(idx) and (idx.min() < 0 or idx.max() >= n_rows):
            raise ValueError("a part holds an index outside the rows")
        if seen[idx].any() or len(set(idx.tolist())) != len(idx):
            raise ValueError("a row was predicted twice")
        seen[idx] = True
        merged[idx] = probs
    if merged is None:
        merged = np.zeros((n_rows, 3))
    if not seen.all():
        missing = np.flatnonzero(~seen)
        raise ValueError(f"{len(missing)} row(s) have no prediction, e.g. index {int(missing[0])}")
    return merged


def run_on_devices(devices: Sequence[str], parts: Sequence[Sequence[int]],
                   work: Callable[[str, Sequence[int]], "object"]):
    """Run ``work(device, indices)`` for every part, one thread per GPU; re-raise the first error."""
    results: list = [None] * len(parts)
    errors: list = []

    def target(k: int) -> None:
        try:
            results[k] = work(devices[k], parts[k])
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
            errors.append(exc)

    if len(parts) == 1 or not _separate_accelerators(devices[:len(parts)]):
        for k in range(len(parts)):  # one CPU: threads would only contend (and bnb's CPU path is not thread-safe)
            target(k)
            if errors:
                break
    else:
        threads = [threading.Thread(target=target, args=(k,), name=f"predict-{devices[k]}")
                   for k in range(len(parts))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    if errors:
        raise errors[0]
    return results


def _separate_accelerators(devices: Sequence[str]) -> bool:
    return len(set(devices)) == len(devices) and not any(str(d).startswith("cpu") for d in devices)


def predict_proba_multi(load_model: Callable[[str], "object"], token_ids: Sequence[Sequence[int]], *,
                        pad_token_id: int, token_budget: int = 16384, devices: Sequence[str] | None = None):
    """Probabilities for every row, using one model copy (``load_model(device)``) per device."""
    from .predict import predict_proba

    devices = list(devices or visible_devices())
    parts = split_for_devices([len(t) for t in token_ids], len(devices))

    def work(device: str, indices: Sequence[int]):
        model = load_model(device)
        return predict_proba(model, [token_ids[i] for i in indices], pad_token_id=pad_token_id,
                             token_budget=token_budget)

    results = run_on_devices(devices, parts, work)
    return merge_parts(len(token_ids), list(zip(parts, results)))


# --------------------------------------------------------------------------- training launch

def launch_command(module: str, args: Sequence[str], *, n_gpus: int, mixed_precision: str = "no",
                   python: str | None = None, main_port: int | None = None) -> list[str]:
    """The command that trains on ``n_gpus``: ``accelerate launch`` (DDP, one process per GPU, each
    with its own copy of the 4-bit base) for several GPUs, plain python for one or none."""
    python = python or sys.executable
    if n_gpus <= 1:
        return [python, "-m", module, *args]
    command = [python, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", str(n_gpus),
               "--num_machines", "1", "--mixed_precision", mixed_precision, "--dynamo_backend", "no"]
    if main_port:
        command += ["--main_process_port", str(main_port)]
    return command + ["-m", module, *args]


def local_rank() -> int:
    """This process's GPU under accelerate/torchrun (0 when not launched distributed)."""
    return int(os.environ.get("LOCAL_RANK", "0"))


def distributed_device_map() -> dict | None:
    """``device_map`` for a DDP process: the whole model on its own GPU (``{"": LOCAL_RANK}``)."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        return {"": local_rank()}
    return None


def format_command(command: Sequence[str]) -> str:
    return " ".join(shlex.quote(c) for c in command)
