"""``.kagflow/state-<target>.json``: what was produced on a target, as typed records.

One record type per thing kagflow makes: model versions, the wheels dataset, kernel versions and
their pulled output, the submission, and each flow step. Every ``record_*`` re-reads the file and
replaces only its own entry (saved atomically, flushed to disk before the rename), so two kagflow
processes never erase each other's records and a crash never leaves half a file. Reading checks every
record's keys and types: a file cut short or edited wrong is one StateError naming the file and the key,
never a record silently dropped or a step wrongly taken as done.
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
import types
import typing
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path
from typing import Callable, Optional

from kagflow.errors import StateError
from kagflow.project.layout import Layout


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
    version: int = 0  # the version holding those files (0: not known, written by an older kagflow)


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
    """One fold of an ensemble: its training kernel version and output, its validation score by ``metric`` ([data]
    metric when it trained), and the adapter version published from it."""

    fold: int
    version: Optional[int] = None
    output: Optional[str] = None
    score: Optional[float] = None
    metric: str = ""
    adapter: str = ""  # owner/model/framework/instance/version


@dataclass(frozen=True)
class Made:
    """What one flow step made, as the flow's report names it: the kernel version it ran (or submitted) and
    that version's pulled output, what it published, the submission and its score. The next steps and the
    report read these, never the target's latest records, so figures of different versions never meet."""

    version: Optional[int] = None
    output: Optional[str] = None
    sources: list = field(default_factory=list)  # owner/model/framework/instance/version published
    ref: str = ""  # the submission's reference
    score: Optional[float] = None


@dataclass(frozen=True)
class StepRecord:
    done: bool = False
    summary: str = ""
    seconds: float = 0.0
    made: Made = field(default_factory=Made)


_WORDS = {bool: "true or false", int: "a whole number", float: "a number", str: "a string", dict: "a JSON object",
          list: "a list", type(None): "null"}


def _fits(value, tp) -> bool:
    """Whether a JSON value is of the record field type ``tp`` (a bool is no number; an int is a float)."""
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        return any(_fits(value, option) for option in typing.get_args(tp))
    if tp in (int, float) and isinstance(value, bool):
        return False
    return isinstance(value, (int, float) if tp is float else typing.get_origin(tp) or tp)


def _type_words(tp) -> str:
    """``Optional[int]`` -> "a whole number (or null)"."""
    options = typing.get_args(tp) if typing.get_origin(tp) in (typing.Union, types.UnionType) else (tp,)
    words = " or ".join(_WORDS[typing.get_origin(o) or o] for o in options if o is not type(None))
    return words + (" (or null)" if type(None) in options else "")


def _broken(path: Path, message: str, key: str = "") -> StateError:
    return StateError(f"{path.name}{': ' if key else ' '}{message}",
                      context=f"file {path}" + (f", key {key}" if key else ""),
                      hint=f"correct {key or 'it'} (kagflow writes this file: it records what was made on the target), "
                           f"or move it aside and run again: mv {path} {path}.broken")


def _object(value, path: Path, key: str) -> dict:
    """``value`` (at ``key``) as a JSON object; absent (None) is empty."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _broken(path, f"{key} = {json.dumps(value)[:80]} is {_WORDS.get(type(value))}, not a JSON object",
                      key)
    return value


def _record(cls, data, path: Path, key: str):
    """The record ``cls`` from its JSON object at ``key``, every field checked against its type; keys this
    version of kagflow does not know are ignored (a newer one may have written them)."""
    data = _object(data, path, key)
    hints = typing.get_type_hints(cls)
    values = {}
    for f in fields(cls):
        if f.name not in data:
            if f.default is MISSING and f.default_factory is MISSING:
                raise _broken(path, f"{key} is missing the key {f.name!r}", key)
            continue
        value = data[f.name]
        if dataclasses.is_dataclass(hints[f.name]):  # a record inside the record
            values[f.name] = _record(hints[f.name], value, path, f"{key}.{f.name}")
            continue
        if not _fits(value, hints[f.name]):
            raise _broken(path, f"{key}.{f.name} = {json.dumps(value)[:80]} is not {_type_words(hints[f.name])}",
                          f"{key}.{f.name}")
        values[f.name] = value
    return cls(**values)


def _records(cls, data: dict, path: Path, key: str) -> dict:
    """``{name: record}`` of the JSON object ``data[key]`` (absent: empty)."""
    return {name: _record(cls, value, path, f"{key}.{name}")
            for name, value in _object(data.get(key), path, key).items()}


def _version_number(name: str, path: Path, key: str) -> int:
    if not name.isdigit():
        raise _broken(path, f"{key} has the key {name!r}, not a version number", key)
    return int(name)


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
        """The state file of target ``kind`` ("kaggle" or "local") in the project at ``root``."""
        return cls.load(Layout(Path(root)).state_file(kind))

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

    def made(self, step: str) -> Made:
        """What flow step ``step`` made when it last ran (nothing when it never did)."""
        return self.flow.get(step, StepRecord()).made

    def model_versions(self) -> dict[str, int]:
        """``{which: version}`` of every model recorded here, and of the wheels dataset ("wheels")."""
        versions = {which: record.version for which, record in self.models.items()}
        if self.wheels is not None and self.wheels.version:
            versions["wheels"] = self.wheels.version
        return versions

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
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return {}
        except (OSError, UnicodeDecodeError) as exc:
            raise _broken(self.path, f"cannot be read: {exc}") from None
        try:
            data = json.loads(text)
        except ValueError as exc:
            where = "it is empty" if not text.strip() else f"line {exc.lineno} column {exc.colno}: {exc.msg}"
            raise _broken(self.path, f"is not valid JSON ({where}); was it cut short or edited?") from None
        if not isinstance(data, dict):
            raise _broken(self.path, f"must hold a JSON object, not {_WORDS.get(type(data))}")
        return data

    def _read(self, data: Optional[dict] = None) -> None:
        data = self._raw() if data is None else data
        path = self.path
        models = _records(ModelRecord, data, path, "models")
        wheels = _record(DatasetRecord, data["wheels"], path, "wheels") if data.get("wheels") is not None else None
        kernels = _records(KernelRecord, data, path, "kernels")
        submission = (_record(SubmissionRecord, data["submission"], path, "submission")
                      if data.get("submission") is not None else None)
        flow = _records(StepRecord, data, path, "flow")
        folds = {r.fold: r for r in _records(FoldRecord, data, path, "folds").values()}
        by_kernel = _object(data.get("versions"), path, "versions")
        versions = {name: {_version_number(n, path, f"versions.{name}"): _record(VersionRecord, v, path,
                                                                                 f"versions.{name}.{n}")
                           for n, v in _object(by_kernel[name], path, f"versions.{name}").items()}
                    for name in by_kernel}
        self.models, self.wheels, self.kernels, self.submission = models, wheels, kernels, submission
        self.flow, self.folds, self.versions = flow, folds, versions

    def _update(self, change: Callable[[dict], None]) -> None:
        data = self._raw()
        change(data)
        self._read(data)  # what is written must read back
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".state.", dir=self.path.parent)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=2, sort_keys=True)
            f.flush()
            os.fsync(f.fileno())  # on disk before the rename: a crash leaves the old file or the new one
        os.replace(tmp, self.path)
