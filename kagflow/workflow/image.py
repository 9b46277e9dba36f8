"""Probe the real Kaggle image with a tiny kernel and save what it reports."""

from __future__ import annotations

from pathlib import Path

import nbformat

from kagflow.rules import metadata
from kagflow.project.config import Config
from kagflow.hub.gateway import Gateway

PROBE_TITLE = "kagflow image probe"


def write_probe_kernel(config: Config, folder: Path, *, accelerator: str) -> Path:
    from kagflow.rules.image import probe_notebook_source

    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
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

    folder = write_probe_kernel(config, config.root / "kernels" / "kagflow-image-probe", accelerator=accelerator)
    pushed = push_kernel(gw, folder, accelerator=accelerator, timeout=1800)
    status = wait_kernel(gw, pushed.handle, pushed.version, timeout=3600, on_poll=on_poll)
    if status.status != "COMPLETE":
        raise KernelFailedError(f"the image probe kernel ended {status.status}: {status.failure_message}",
                                hint="run `kagflow image probe` again")
    dest, _ = pull_output(gw, pushed.handle, pushed.version, folder)
    img = image_from_probe_output(dest / "image.json")
    return img, save_image(img, out)
