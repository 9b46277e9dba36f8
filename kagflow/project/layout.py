"""Every path of a kagflow project, built here and nowhere else.

A project is ``kagflow.toml`` beside the generated folders (``wheels/``, ``kernels/``, ``models/``: one
sub-folder per Kaggle slug), its own ``templates/`` (files there take precedence over the packaged ones)
and kagflow's private ``.kagflow/``: the state file of each target, the project lock, the local Kaggle's
data, the synthetic competition, local runs and build caches.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

CONFIG_FILE = "kagflow.toml"
PRIVATE = ".kagflow"
GENERATED = ("wheels", "kernels", "models")  # `kagflow init` makes them (each with a README); git-ignored
TINY_MODEL = "tiny-gemma2"  # models/<it>/: the tiny stand-in checkpoint


@dataclass(frozen=True)
class Layout:
    """The paths of the project whose ``kagflow.toml`` lies in ``root``."""

    root: Path

    # ------------------------------------------------------------------ what the user edits

    @property
    def config_file(self) -> Path:
        return self.root / CONFIG_FILE

    @property
    def templates(self) -> Path:
        """The project's own notebook templates (``train.ipynb.j2``, ``infer.ipynb.j2``, ``_cells.j2``)."""
        return self.root / "templates"

    # ------------------------------------------------------------------ generated folders

    def generated(self, name: str) -> Path:
        """One of :data:`GENERATED`: ``wheels/``, ``kernels/`` or ``models/``."""
        return self.root / name

    def wheels_dir(self, dataset_slug: str) -> Path:
        """The wheels dataset `kagflow wheels build` writes: ``wheels/<dataset slug>/``."""
        return self.root / "wheels" / dataset_slug

    def kernel_dir(self, kernel_slug: str) -> Path:
        """A kernel's notebook and kernel-metadata.json; pulled outputs under ``output/v<N>/``."""
        return self.root / "kernels" / kernel_slug

    @property
    def models(self) -> Path:
        return self.root / "models"

    def model_dir(self, model_slug: str) -> Path:
        """``models/<model slug>/`` (model-metadata.json; each instance in a sub-folder of its slug)."""
        return self.models / model_slug

    @property
    def tiny_model(self) -> Path:
        return self.models / TINY_MODEL

    # ------------------------------------------------------------------ .kagflow/

    @property
    def private(self) -> Path:
        """``.kagflow/``: never uploaded, hidden from local kernel runs."""
        return self.root / PRIVATE

    def state_file(self, target: str) -> Path:
        """What was made on target ``target`` ("kaggle" or "local")."""
        return self.private / f"state-{target}.json"

    @property
    def lock_file(self) -> Path:
        return self.private / "lock"

    @property
    def local_server_data(self) -> Path:
        """The data folder of the project's background local Kaggle."""
        return self.private / "local"

    def competition_files(self, competition: str) -> Path:
        """The synthetic competition's files (train.csv, test.csv, ..., hidden/, solution.csv)."""
        return self.private / "competition" / competition

    @property
    def runs(self) -> Path:
        """Sandboxes of `kagflow kernel run --local` (removed after each run)."""
        return self.private / "runs"

    @property
    def sources(self) -> Path:
        """Datasets an imported kernel mounts, downloaded once for `kagflow kernel run --local`."""
        return self.private / "sources"

    @property
    def classifier_wheel(self) -> Path:
        return self.private / "classifier-wheel"

    @property
    def wheel_cache(self) -> Path:
        return self.private / "wheel-cache"
