"""Offline wheels datasets: resolve for Kaggle's image with pip, verify offline, write the dataset folder.

Public API (kagflow.workflow.wheels and kagflow.workflow.check use these):

- :func:`build_wheels` → :class:`BuildResult` (``summary_lines()`` is what the CLI prints)
- :func:`manifest_digest` (skip a push when unchanged), :func:`read_manifest`, :func:`check_dataset`
- :func:`dataset_dir` (``wheels/<slug>``), :data:`MANIFEST_NAME`
"""

from kagflow.wheels.build import (
    KAGGLE_PRIVATE_QUOTA_BYTES,
    MANIFEST_NAME,
    BuildResult,
    WheelEntry,
    build_wheels,
    check_dataset,
    dataset_dir,
    format_size,
    manifest_digest,
    read_manifest,
    size_warnings,
)
from kagflow.wheels.piprun import IndexOptions

__all__ = [
    "BuildResult", "IndexOptions", "KAGGLE_PRIVATE_QUOTA_BYTES", "MANIFEST_NAME", "WheelEntry", "build_wheels",
    "check_dataset", "dataset_dir", "format_size", "manifest_digest", "read_manifest", "size_warnings",
]
