"""Kaggle's figures and names, each written once: machines (accelerators), session limits, the site's URL."""

from __future__ import annotations

KAGGLE_URL = "https://www.kaggle.com"

# `machine_shape` values a kernel may ask for ("None": no accelerator)
ACCELERATORS = ("NvidiaTeslaT4", "NvidiaTeslaT4Highmem", "NvidiaTeslaP100", "NvidiaL4", "NvidiaL4X1",
                "NvidiaH100", "NvidiaRtxPro6000", "TpuV38", "TpuVmV38", "TpuV5E8", "TpuV6E8", "None")
DEFAULT_ACCELERATOR = "NvidiaTeslaT4"  # Kaggle's T4 x2: what competition kernels run on
RETIRED_ACCELERATORS = ("NvidiaTeslaP100",)
GPU_ACCELERATORS = tuple(a for a in ACCELERATORS if a.startswith("Nvidia"))
TPU_ACCELERATORS = tuple(a for a in ACCELERATORS if a.startswith("Tpu"))
PRE_AMPERE_ACCELERATORS = ("NvidiaTeslaT4", "NvidiaTeslaT4Highmem", "NvidiaTeslaP100")  # sm75 / sm60: no flex attention

GPU_SESSION_S = 32400  # the longest run of a GPU notebook: 9 hours

# A notebook's kernelspec: without one Kaggle fails it with "No kernel name found"
KERNELSPEC = {"name": "python3", "display_name": "Python 3", "language": "python"}
