"""The quota guard counts a kernel's hours against the quota of its accelerator's kind: GPU or TPU, none for CPU."""

from __future__ import annotations

import pytest

from kagflow.errors import QuotaError
from kagflow.hub import kernels
from kagflow.rules import slugs
from kagflow.workflow import gpu_quota

HANDLE = slugs.KernelHandle("alice", "gemma2-qlora-arena-train")


class _Gateway:
    def __init__(self):
        self.lines = []

    def log(self, line):
        self.lines.append(line)


@pytest.fixture
def quotas(monkeypatch):
    left = {"GPU": kernels.Quota("GPU", 0.0, 30 * 3600.0), "TPU": kernels.Quota("TPU", 19 * 3600.0, 20 * 3600.0)}
    monkeypatch.setattr(kernels, "accelerator_quota", lambda gw: left)
    monkeypatch.setattr(kernels, "kernel_version_info", lambda gw, handle: None)  # never ran: its timeout counts
    return left


def test_a_tpu_push_is_held_to_the_tpu_quota(quotas):
    gw = _Gateway()
    with pytest.raises(QuotaError) as err:
        gpu_quota.guard_gpu_push(gw, "train", HANDLE, "TpuV5E8", 2 * 3600)
    assert "past the weekly TPU quota" in err.value.message and "1.00 h left" in err.value.context
    assert gpu_quota.guard_gpu_push(gw, "train", HANDLE, "NvidiaTeslaT4", 2 * 3600).seconds == 2 * 3600
    assert gw.lines[-1].startswith("GPU quota: alice/gemma2-qlora-arena-train needs about 2.00 h")
    assert gpu_quota.guard_gpu_push(gw, "train", HANDLE, "None", 2 * 3600) is None  # a CPU session
