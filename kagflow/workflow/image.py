"""`kagflow image show|local|probe`: the image wheels are built for, the local Kaggle's, and the real one probed
with a tiny kernel.

The hub (the official client) is imported inside the verbs that talk to it: the CLI's start stays fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from kagflow.project.config import Config
from kagflow.project.edit import set_value
from kagflow.project.lock import locked
from kagflow.rules import metadata
from kagflow.rules.kaggle import DEFAULT_ACCELERATOR, KERNELSPEC
from kagflow.workflow.wheels import target_image

if TYPE_CHECKING:
    from kagflow.hub.gateway import Gateway

PROBE_TITLE = "kagflow image probe"
PROBE_SLUG = "kagflow-image-probe"  # its folder under kernels/
PROBE_ACCELERATOR = DEFAULT_ACCELERATOR  # the machine probed unless one is named
PROBE_OUT = "kaggle-image.json"  # where the probed image is saved (relative to the project) unless named


def write_probe_kernel(config: Config, folder: Path, *, accelerator: str) -> Path:
    import nbformat

    from kagflow.rules.image import probe_notebook_source

    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = dict(KERNELSPEC)
    # relative: the working folder is the cwd on Kaggle (/kaggle/working) and on the local Kaggle alike
    nb.cells = [nbformat.v4.new_code_cell(probe_notebook_source("./image.json"))]
    folder.mkdir(parents=True, exist_ok=True)
    code = "image-probe.ipynb"
    nbformat.write(nb, folder / code)
    metadata.write_metadata(folder, metadata.KERNEL_METADATA, metadata.kernel_metadata(
        config.username, PROBE_TITLE, code, accelerator=accelerator, enable_internet=False))
    return folder


def run_probe(gw: Gateway, config: Config, *, accelerator: str, out: Path, on_poll=None):
    from kagflow.errors import KernelFailedError
    from kagflow.hub.kernels import pull_output, push_kernel, wait_kernel
    from kagflow.rules.image import image_from_probe_output, save_image

    folder = write_probe_kernel(config, config.layout.kernel_dir(PROBE_SLUG), accelerator=accelerator)
    pushed = push_kernel(gw, folder, accelerator=accelerator, timeout=1800)
    status = wait_kernel(gw, pushed.handle, pushed.version, timeout=3600, on_poll=on_poll)
    if status.status != "COMPLETE":
        raise KernelFailedError(f"the image probe kernel ended {status.status}: {status.failure_message}",
                                hint="run `kagflow image probe` again")
    dest, _ = pull_output(gw, pushed.handle, pushed.version, folder)
    img = image_from_probe_output(dest / "image.json")
    return img, save_image(img, out)


def show_image(config: Config, name: str | None = None):
    """The image ``name`` names (default: [wheels] image)."""
    return target_image(config, name or config.wheels.image)


def local_image(say=None):
    """The local Kaggle's image, built once (``say``: each line of its build), then reused."""
    from kagflow.local.run.image import kernel_image

    return kernel_image(say=say)


@locked("image probe")
def probe_image(session, *, accelerator: str, out: str, on_poll=None):
    """Run the image probe kernel, save what it found as ``out`` and make it [wheels] image."""
    config = session.config
    img, path = run_probe(session.gateway, config, accelerator=accelerator, out=config.root / out, on_poll=on_poll)
    set_value(config.path, "wheels", "image", out)
    return img, path
