"""Ensembles through the tuned path (``[infer] ensemble``).

"members": ``MemberModels`` holds one member at a time: the base loaded with that member's adapter alone, prepared
like a single adapter (``infer.tuned_for_device``: LoRA merged, layers dense, compiled per the card's recipe),
freed before the next member loads, so the peak memory is one member's.

"average_lora": ``average_adapters`` writes one adapter whose merged delta per layer is the members' mean,
(1/n) sum_i s_i B_i @ A_i (s_i = alpha_i / r_i): the A matrices stacked and the B matrices, scaled by s_i / n, side
by side (rank sum r_i, scaling 1) — exact, unlike averaging A and B separately; every other saved tensor (the
score head) is averaged. The model it gives has the members' mean weights (not their mean probabilities).
"""

from __future__ import annotations

import gc
import json
import shutil
from pathlib import Path

ADAPTER_WEIGHTS = "adapter_model.safetensors"
ADAPTER_CONFIG = "adapter_config.json"


class MemberModels:
    """``get(member)``: member ``member``'s model from ``load(adapter)``, the previous member's dropped first."""

    def __init__(self, adapters, load):
        self.adapters, self._load = list(adapters), load
        self.member, self.model = None, None
        self.loads = 0  # members loaded so far (each once: the passes come member by member)

    def get(self, member: int):
        if member != self.member:
            self.free()
            self.model, self.member = self._load(self.adapters[member]), member
            self.loads += 1
        return self.model

    def free(self) -> None:
        """Drop the member in hand: its compiled layers' caches too (torch.compile keeps graphs and guards per
        code object, shared by every member's layers), so the next member loads into the memory this one held."""
        had = self.model is not None
        self.model = self.member = None
        import torch

        if had:
            import torch._dynamo

            torch._dynamo.reset()
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def _lora_scaling(config: dict, path) -> float:
    for key in ("rank_pattern", "alpha_pattern"):
        if config.get(key):
            raise ValueError(f"{path / ADAPTER_CONFIG}: {key} is set; [infer] ensemble = \"average_lora\" averages "
                             f"adapters of one rank and alpha per layer only: use ensemble = \"members\"")
    for key in ("use_dora", "use_rslora"):
        if config.get(key):
            raise ValueError(f"{path / ADAPTER_CONFIG}: {key} = true is not averaged by [infer] ensemble = "
                             f"\"average_lora\": use ensemble = \"members\"")
    return float(config["lora_alpha"]) / int(config["r"])


def average_adapters(adapters, out_dir) -> Path:
    """One adapter folder (``out_dir``) whose model has the mean weights of the members' merged models."""
    import torch
    from safetensors.torch import load_file, save_file

    paths = [Path(a) for a in adapters]
    configs = [json.loads((p / ADAPTER_CONFIG).read_text()) for p in paths]
    same = ("target_modules", "layers_to_transform", "modules_to_save", "task_type", "peft_type")
    for p, c in zip(paths[1:], configs[1:]):
        for key in same:
            a, b = configs[0].get(key), c.get(key)
            if (sorted(a) if isinstance(a, list) else a) != (sorted(b) if isinstance(b, list) else b):
                raise ValueError(f"{p / ADAPTER_CONFIG}: {key} = {b!r} but {paths[0] / ADAPTER_CONFIG} has {a!r}; "
                                 f"[infer] ensemble = \"average_lora\" needs members with the same LoRA layout: use "
                                 f"ensemble = \"members\"")
    scales = [_lora_scaling(c, p) for c, p in zip(configs, paths)]
    weights = [load_file(str(p / ADAPTER_WEIGHTS)) for p in paths]
    keys = set(weights[0])
    for p, w in zip(paths[1:], weights[1:]):
        if set(w) != keys:
            raise ValueError(f"{p / ADAPTER_WEIGHTS} holds other tensors than {paths[0] / ADAPTER_WEIGHTS} "
                             f"({len(set(w) ^ keys)} differ): use [infer] ensemble = \"members\"")
    n = len(paths)
    out = {}
    for key in sorted(keys):
        if "lora_B" in key and not key.endswith(".weight"):
            raise ValueError(f"{paths[0] / ADAPTER_WEIGHTS}: {key} (a LoRA bias) is not averaged by "
                             f"ensemble = \"average_lora\": use ensemble = \"members\"")
        if "lora_A." in key:
            out[key] = torch.cat([w[key] for w in weights], dim=0).contiguous()
        elif "lora_B." in key:
            out[key] = torch.cat([w[key].float() * (s / n) for w, s in zip(weights, scales)], dim=1) \
                .to(weights[0][key].dtype).contiguous()
        elif "lora_embedding" in key:
            raise ValueError(f"{paths[0] / ADAPTER_WEIGHTS}: {key}: LoRA on embeddings is not averaged by "
                             f"ensemble = \"average_lora\": use ensemble = \"members\"")
        else:  # the score head and any other saved module: the mean weight
            out[key] = (sum(w[key].float() for w in weights) / n).to(weights[0][key].dtype).contiguous()
    rank = sum(int(c["r"]) for c in configs)
    out_dir = Path(out_dir)
    if out_dir.exists():
        shutil.rmtree(out_dir)
    shutil.copytree(paths[0], out_dir, ignore=shutil.ignore_patterns(ADAPTER_WEIGHTS, ADAPTER_CONFIG, "*.bin"))
    (out_dir / ADAPTER_CONFIG).write_text(json.dumps({**configs[0], "r": rank, "lora_alpha": rank}, indent=1))
    save_file(out, str(out_dir / ADAPTER_WEIGHTS))
    print(f"average_lora: {n} adapters averaged into {out_dir} (rank {rank}, the merged deltas' mean)", flush=True)
    return out_dir
