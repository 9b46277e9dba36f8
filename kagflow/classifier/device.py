"""The device profile: one place that decides precision for every path.

Model loading dtype, bitsandbytes compute dtype, autocast, the GradScaler, the HF Trainer's
``bf16``/``fp16`` flags, ``accelerate launch --mixed_precision`` and ``recipe.recipe_for_device`` all
read it. Native bf16 only on compute capability >= 8.0 (Ampere and later); T4 (7.5), V100 (7.0)
and P100 (6.0) get fp16 with a GradScaler; the CPU fp32.

``torch.cuda.is_bf16_supported()`` is never consulted: it returns True on a T4, because by default it
counts emulation (it only checks that a bf16 tensor can be built), and emulated bf16 is slow and
disagrees with the fp16 that the T4 recipe trains in.
"""

from __future__ import annotations

from dataclasses import dataclass

NATIVE_BF16_CAPABILITY = (8, 0)


@dataclass(frozen=True)
class DeviceProfile:
    """What one device computes in. ``capability`` is None for the CPU."""

    capability: tuple[int, int] | None
    total_mem_gib: float = 0.0
    name: str = "cpu"

    @property
    def cuda(self) -> bool:
        return self.capability is not None

    @property
    def native_bf16(self) -> bool:
        return self.cuda and self.capability >= NATIVE_BF16_CAPABILITY

    @property
    def dtype_name(self) -> str:
        """"bfloat16" (sm80+), "float16" (older GPUs) or "float32" (CPU)."""
        if not self.cuda:
            return "float32"
        return "bfloat16" if self.native_bf16 else "float16"

    @property
    def dtype(self):
        import torch

        return getattr(torch, self.dtype_name)

    @property
    def grad_scaler(self) -> bool:
        """fp16 training needs loss scaling; bf16 and fp32 do not."""
        return self.dtype_name == "float16"

    @property
    def mixed_precision(self) -> str:
        """The value of ``accelerate launch --mixed_precision``."""
        return {"bfloat16": "bf16", "float16": "fp16"}.get(self.dtype_name, "no")

    def trainer_flags(self) -> dict:
        """The HF TrainingArguments precision flags."""
        return {"bf16": self.dtype_name == "bfloat16", "fp16": self.dtype_name == "float16"}

    def describe(self) -> str:
        scaler = " + GradScaler" if self.grad_scaler else ""
        where = f"sm{self.capability[0]}{self.capability[1]}, {self.total_mem_gib:.0f} GiB" if self.cuda else "CPU"
        return f"{self.name} ({where}): {self.dtype_name}{scaler}"


def device_profile(device=None) -> DeviceProfile:
    """The profile of ``device`` (a torch.device, "cuda:1", "cpu"; default: the current CUDA device,
    or the CPU when there is none)."""
    import torch

    if device is None:
        if not torch.cuda.is_available():
            return DeviceProfile(None)
        device = torch.device("cuda", torch.cuda.current_device())
    device = torch.device(device)
    if device.type != "cuda":
        return DeviceProfile(None)
    props = torch.cuda.get_device_properties(device)
    return DeviceProfile((int(props.major), int(props.minor)), props.total_memory / 2**30, str(props.name))
