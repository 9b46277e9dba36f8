"""Kaggle's figures and names, each written once: machines (accelerators), session limits, licences, the site's URL.

Sources: kaggle-cli's ``docs/kernels.md`` (accelerators, as of Feb 2026), ``docs/models_metadata.md`` and
``docs/datasets_metadata.md`` (licences), and the installed client (``kaggle.api.kaggle_api_extended``: the retired
accelerators it warns about, the image pinning types it accepts). ``tests/unit/rules/test_kaggle_facts.py`` holds
these to the installed client where it carries them.
"""

from __future__ import annotations

from typing import Optional

KAGGLE_URL = "https://www.kaggle.com"
HUGGING_FACE_URL = "https://huggingface.co"

# --------------------------------------------------------------------------- accelerators

# `machine_shape` values a kernel may ask for: docs/kernels.md's list ("None": no accelerator). Some are only
# lent to the participants of some competitions, some to Kaggle's admins.
ACCELERATORS = ("NvidiaTeslaT4", "NvidiaTeslaT4Highmem", "NvidiaTeslaP100", "NvidiaTeslaA100", "NvidiaL4",
                "NvidiaL4X1", "NvidiaH100", "NvidiaRtxPro6000", "TpuV38", "Tpu1VmV38", "TpuV5E8", "TpuV6E8",
                "None")
DEFAULT_ACCELERATOR = "NvidiaTeslaT4"  # Kaggle's T4 x2 (two 16 GB T4s): what competition kernels run on
# retired shape -> what Kaggle runs the session on instead (the installed client warns about each)
RETIRED_ACCELERATORS = {"NvidiaTeslaP100": "NvidiaTeslaT4", "TpuV38": "TpuV5E8", "Tpu1VmV38": "TpuV5E8"}
GPU_ACCELERATORS = tuple(a for a in ACCELERATORS if a.startswith("Nvidia"))
TPU_ACCELERATORS = tuple(a for a in ACCELERATORS if a.startswith("Tpu"))
# GPUs per session and memory per GPU (GiB, as torch reports it: 15,095 MiB for a T4) of the accelerators whose
# training memory ``kagflow check`` plans; bf16: native bf16 (sm80+), else fp16 + a GradScaler
GPU_CARDS = {"NvidiaTeslaT4": (2, 14.74, False), "NvidiaTeslaT4Highmem": (2, 14.74, False)}
PRE_AMPERE_ACCELERATORS = ("NvidiaTeslaT4", "NvidiaTeslaT4Highmem", "NvidiaTeslaP100")  # sm75 / sm60: no flex attention


def quota_kind(accelerator: str) -> Optional[str]:
    """The weekly quota an accelerator's hours count against ("GPU", "TPU"), None for a CPU session."""
    if accelerator in GPU_ACCELERATORS:
        return "GPU"
    if accelerator in TPU_ACCELERATORS:
        return "TPU"
    return None


# --------------------------------------------------------------------------- sessions

SESSION_S = 12 * 3600  # the longest a Kaggle notebook session runs (GPU, TPU or CPU): 12 hours
COMPETITION_RUN_S = 9 * 3600  # a code competition's notebooks (this one's: GPU or CPU) run at most 9 hours
DEFAULT_TIMEOUT_S = COMPETITION_RUN_S  # a kernel's timeout unless [kernels.NAME] timeout says otherwise


def default_timeout(kind: str) -> int:
    """A kernel's timeout when its table names none: a training kernel has Kaggle's whole 12 h session, any other
    (an inference notebook the competition re-runs) its 9 h."""
    return SESSION_S if kind == "train" else DEFAULT_TIMEOUT_S

# docker_image_pinning_type: "original" keeps a kernel on the image its first version ran on, "latest" moves it
IMAGE_PINNING_TYPES = ("original", "latest")
DEFAULT_IMAGE_PINNING = "original"

# A notebook's kernelspec: without one Kaggle fails it with "No kernel name found"
KERNELSPEC = {"name": "python3", "display_name": "Python 3", "language": "python"}

# --------------------------------------------------------------------------- licences

# model-instance-metadata.json licenseName: docs/models_metadata.md's list. Gemma weights are under Google's Gemma
# terms, which are not on it (nor any other custom licence): a publish needs one of these that the weights allow.
MODEL_LICENSES = (
    "Apache 2.0", "Attribution 3.0 IGO (CC BY 3.0 IGO)", "Attribution 3.0 Unported (CC BY 3.0)",
    "Attribution 4.0 International (CC BY 4.0)", "Attribution-NoDerivatives 4.0 International (CC BY-ND 4.0)",
    "Attribution-NonCommercial 4.0 International (CC BY-NC 4.0)",
    "Attribution-NonCommercial-NoDerivatives 4.0 International (CC BY-NC-ND 4.0)",
    "Attribution-NonCommercial-ShareAlike 3.0 IGO (CC BY-NC-SA 3.0 IGO)", "BSD-3-Clause", "CC BY-NC-SA 4.0",
    "CC BY-SA 3.0", "CC BY-SA 4.0", "CC0: Public Domain",
    "Community Data License Agreement - Permissive - Version 1.0",
    "Community Data License Agreement - Sharing - Version 1.0", "GNU Affero General Public License 3.0",
    "GNU Free Documentation License 1.3", "GNU Lesser General Public License 3.0", "GPL 2", "MIT",
    "ODC Attribution License (ODC-By)", "ODC Public Domain Dedication and Licence (PDDL)", "GPL 3",
)
GEMMA_TERMS_URL = "https://ai.google.dev/gemma/terms"

# dataset-metadata.json licenses[0].name: docs/datasets_metadata.md's list
DATASET_LICENSES = (
    "CC0-1.0", "CC-BY-SA-3.0", "CC-BY-SA-4.0", "CC-BY-NC-SA-4.0", "GPL-2.0", "ODbL-1.0", "DbCL-1.0",
    "copyright-authors", "other", "unknown", "CC-BY-4.0", "CC-BY-NC-4.0", "PDDL", "CC-BY-3.0", "CC-BY-3.0-IGO",
    "US-Government-Works", "CC-BY-NC-SA-3.0-IGO", "CDLA-Permissive-1.0", "CDLA-Sharing-1.0", "CC-BY-ND-4.0",
    "CC-BY-NC-ND-4.0", "ODC-BY-1.0", "LGPL-3.0", "AGPL-3.0", "FDL-1.3", "EU-ODP-Legal-Notice", "apache-2.0",
    "GPL-3.0",
)

# --------------------------------------------------------------------------- model instances

# modelInstanceType: kagglesdk's ModelInstanceType members, as the client's lookup_enum reads them
INSTANCE_TYPES = ("Unspecified", "BaseModel", "KaggleVariant", "ExternalVariant")
EXTERNAL_VARIANT, KAGGLE_VARIANT = "ExternalVariant", "KaggleVariant"

# `-r/--dir-mode` of dataset and model uploads: each sub-folder goes up as one uncompressed archive that Kaggle
# unpacks back into the folder ("zip" compresses; the default, "skip", leaves sub-folders out)
UPLOAD_DIR_MODE = "tar"


def competition_url(slug: str) -> str:
    return f"{KAGGLE_URL}/competitions/{slug}"


def rules_url(slug: str) -> str:
    """Where a competition's rules are accepted (Kaggle answers 403 to its data and submissions until then)."""
    return f"{competition_url(slug)}/rules"


def hugging_face_url(hf_id: str) -> str:
    return f"{HUGGING_FACE_URL}/{hf_id}"
