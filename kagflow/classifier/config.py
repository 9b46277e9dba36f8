"""Run configurations built from a notebook's parameter variables."""

from __future__ import annotations

import dataclasses


def from_namespace(cls, namespace: dict):
    """An instance of dataclass ``cls`` from the entries of ``namespace`` named like its fields."""
    return cls(**{f.name: namespace[f.name] for f in dataclasses.fields(cls) if f.name in namespace})


def defaults(cls) -> dict:
    """Field name -> default of dataclass ``cls`` (tuples as lists, as a notebook writes them)."""
    return {f.name: list(f.default) if isinstance(f.default, tuple) else f.default
            for f in dataclasses.fields(cls)}
