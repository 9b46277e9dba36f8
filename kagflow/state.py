"""``.kagflow/state-<target>.json``: what was produced on a target, as typed records.

One record type per thing kagflow makes: model versions, the wheels dataset, kernel versions and
their pulled output, the submission, and each flow step. Every ``record_*`` re-reads the file and
replaces only its own entry (saved atomically), so two kagflow processes never erase each other's
records.
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Callable, Optional

from kagflow.config import Config


@dataclass(frozen=True)
class ModelRecord:
    source: str  # owner/model/framework/instance/version, what a kernel lists
    version: int
    digest: str = ""
    uploaded: bool = False


@dataclass(frozen=True)
class DatasetRecord:
    handle: str
    digest: str = ""


@dataclass(frozen=True)
class KernelRecord:
    handle: str = ""
    version: Optional[int] = None
    digest: str = ""
    output: Optional[str] = None  # the pulled (or locally run) output folder of that version


@dataclass(frozen=True)
class SubmissionRecord:
    ref: str
    kernel: str
    version: int
    status: str
    score: Optional[float] = None


@dataclass(frozen=True)
class VersionRecord:
    """How one pushed kernel version was made: its ``-p`` parameters, accelerator and timeout."""

    params: dict = field(default_factory=dict)
    accelerator: str = ""
    timeout: int = 0
    pushed: float = 0.0  # when, seconds since the epoch


@dataclass(frozen=True)
class FoldRecord:
    """One fold of an ensemble: its training kernel version and output, validation log loss, and the
    adapter version published from it."""

    fold: int
    version: Optional[int] = None
    output: Optional[str] = None
    log_loss: Optional[float] = None
    adapter: str = ""  # owner/model/framework/instance/version


@dataclass(frozen=True)
class StepRecord:
    done: bool = False
    summary: str = ""
    seconds: float = 0.0


def _record(cls, data):
    """A record from its JSON dict; keys this version does not know are ignored."""
    if not isinstance(data, dict):
        return None
    known = {f.name for f in fields(cls)}
    try:
        return cls(**{k: v for k, v in data.items() if k in known})
    except TypeError:
        return None


@dataclass
class ProjectState:
    path: Path
    models: dict[str, ModelRecord] = field(default_factory=dict)
    wheels: Optional[DatasetRecord] = None
    kernels: dict[str, KernelRecord] = field(default_factory=dict)
    submission: Optional[SubmissionRecord] = None
    flow: dict[str, StepRecord] = field(default_factory=dict)
    versions: dict[str, dict[int, VersionRecord]] = field(default_factory=dict)  # kernel -> version -> record
    folds: dict[int, FoldRecord] = field(default_factory=dict)  # the flow's folds (kagflow flow --folds)

    @classmethod
    def for_target(cls, root: Path, kind: str) -> "ProjectState":
        return cls.load(Path(root) / ".kagflow" / f"state-{kind}.json")

    @classmethod
    def load(cls, path: Path) -> "ProjectState":
        state = cls(Path(path))
        state._read()
        return state

    # ------------------------------------------------------------------ reading

    def model_version(self, which: str) -> Optional[int]:
        record = self.models.get(which)
        return record.version if record else None

    def kernel(self, name: str) -> KernelRecord:
        return self.kernels.get(name, KernelRecord())

    def version(self, name: str, version: int) -> VersionRecord:
        return self.versions.get(name, {}).get(int(version), VersionRecord())

    def step_done(self, name: str) -> bool:
        return bool(self.flow.get(name, StepRecord()).done)

    def pinned(self, config: Config) -> Config:
        """``config`` with the model versions recorded here (on the local target they live here,
        not in kagflow.toml)."""
        changes = {which: dataclasses.replace(getattr(config, which), version=version)
                   for which in ("base_model", "adapter_model")
                   if (version := self.model_version(which))}
        return dataclasses.replace(config, **changes) if changes else config

    # ------------------------------------------------------------------ writing

    def record_model(self, which: str, record: ModelRecord) -> None:
        self._update(lambda data: data.setdefault("models", {}).__setitem__(which, asdict(record)))

    def record_wheels(self, record: DatasetRecord) -> None:
        self._update(lambda data: data.__setitem__("wheels", asdict(record)))

    def record_kernel(self, name: str, record: KernelRecord) -> None:
        self._update(lambda data: data.setdefault("kernels", {}).__setitem__(name, asdict(record)))

    def record_output(self, name: str, output: Path, *, version: Optional[int] = None) -> None:
        """The output folder of kernel ``name``: of ``version`` if it is the recorded one, or of a
        local run (``version`` None)."""
        current = self.kernel(name)
        if version is not None and current.version not in (None, version):
            return
        self.record_kernel(name, dataclasses.replace(current, output=str(output),
                                                     version=current.version or version))

    def record_version(self, name: str, version: int, record: VersionRecord) -> None:
        self._update(lambda data: data.setdefault("versions", {}).setdefault(name, {}).__setitem__(
            str(version), asdict(record)))

    def record_fold(self, record: FoldRecord) -> None:
        self._update(lambda data: data.setdefault("folds", {}).__setitem__(str(record.fold), asdict(record)))

    def forget_folds(self) -> None:
        self._update(lambda data: data.pop("folds", None))

    def record_submission(self, record: SubmissionRecord) -> None:
        self._update(lambda data: data.__setitem__("submission", asdict(record)))

    def record_step(self, name: str, record: StepRecord) -> None:
        self._update(lambda data: data.setdefault("flow", {}).__setitem__(name, asdict(record)))

    def forget_steps(self, names) -> None:
        def drop(data):
            for name in names:
                data.get("flow", {}).pop(name, None)
        self._update(drop)

    # ------------------------------------------------------------------ file

    def _raw(self) -> dict:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            return data if isinstance(data, dict) else {}
        except FileNotFoundError:
            return {}
        except ValueError:
            os.replace(self.path, self.path.with_suffix(".json.broken"))
            return {}

    def _read(self, data: Optional[dict] = None) -> None:
        data = self._raw() if data is None else data
        self.models = {k: r for k, v in (data.get("models") or {}).items() if (r := _record(ModelRecord, v))}
        self.wheels = _record(DatasetRecord, data.get("wheels"))
        self.kernels = {k: r for k, v in (data.get("kernels") or {}).items() if (r := _record(KernelRecord, v))}
        self.submission = _record(SubmissionRecord, data.get("submission"))
        self.flow = {k: r for k, v in (data.get("flow") or {}).items() if (r := _record(StepRecord, v))}
        self.folds = {r.fold: r for v in (data.get("folds") or {}).values() if (r := _record(FoldRecord, v))}
        self.versions = {name: {int(n): r for n, v in (versions or {}).items()
                                if str(n).isdigit() and (r := _record(VersionRecord, v))}
                         for name, versions in (data.get("versions") or {}).items() if isinstance(versions, dict)}

    def _update(self, change: Callable[[dict], None]) -> None:
        data = self._raw()
        change(data)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".state.", dir=self.path.parent)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=2, sort_keys=True)
        os.replace(tmp, self.path)
        self._read(data)
