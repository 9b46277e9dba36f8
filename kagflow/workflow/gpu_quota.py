"""The GPU quota guard: before a GPU (or TPU) kernel is pushed, its hours against the week's quota of that kind left.

The estimate is the kernel's previous version's run time as its log measured it, or, for a kernel
that never ran, its session timeout (the most it can use). Beyond the quota left the push is refused
unless forced; a Kaggle that does not report the quota is never a reason to refuse.

The hub (the official client) is imported inside the verbs that talk to it: the CLI's start stays fast.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Optional

from kagflow.rules import slugs
from kagflow.rules.kaggle import quota_kind

if TYPE_CHECKING:
    from kagflow.hub.gateway import Gateway
from kagflow.errors import HubError, QuotaError


@dataclass(frozen=True)
class Estimate:
    seconds: float
    basis: str  # what the estimate rests on, for the message


def hours(seconds: float) -> str:
    return f"{seconds / 3600:.2f} h"


def estimate_run(gw: "Gateway", handle: slugs.KernelHandle, timeout: int) -> Estimate:
    """The previous version's measured run time, else ``timeout`` seconds."""
    from kagflow.hub.kernels import kernel_version_info, run_seconds

    previous = kernel_version_info(gw, handle)
    if previous is not None and previous.version and previous.status in ("COMPLETE", "ERROR"):
        measured = run_seconds(gw, handle, previous.version)
        if measured:
            return Estimate(measured, f"version {previous.version}'s measured run time")
    return Estimate(float(timeout), f"its timeout of {timeout} s (no finished version to measure)")


def guard_gpu_push(gw: "Gateway", name: str, handle: slugs.KernelHandle, accelerator: str, timeout: int, *,
                   force: bool = False, log: Optional[Callable[[str], None]] = None) -> Optional[Estimate]:
    """Refuse (QuotaError) a GPU or TPU push of kernel ``name`` whose estimate exceeds that quota's hours left,
    unless ``force``.

    Says the estimate and what is left in one line; returns the estimate (None for a CPU push or
    a target that does not report a quota)."""
    from kagflow.hub.kernels import accelerator_quota

    log = log or gw.log
    kind = quota_kind(accelerator)
    if kind is None:
        return None
    try:
        quota = accelerator_quota(gw).get(kind)
    except HubError as e:
        log(f"{kind} quota unknown ({e.message}); pushing {handle} without the quota check")
        return None
    if quota is None:
        return None
    estimate = estimate_run(gw, handle, timeout)
    line = (f"{kind} quota: {handle} needs about {hours(estimate.seconds)} ({estimate.basis}); "
            f"{hours(quota.left)} of {hours(quota.allowed)} left this week")
    if estimate.seconds <= quota.left:
        log(line)
        return estimate
    if force:
        log(f"warning: {line}: pushing anyway (--force)")
        return estimate
    raise QuotaError(f"pushing {handle} would go past the weekly {kind} quota",
                     context=f"estimate {hours(estimate.seconds)} ({estimate.basis}); used {hours(quota.used)} of "
                             f"{hours(quota.allowed)}, {hours(quota.left)} left",
                     hint=f"lower [kernels.{name}] timeout, wait for the renewal (kagflow status shows when), "
                          f"or push anyway: kagflow kernel push {name} --force")
