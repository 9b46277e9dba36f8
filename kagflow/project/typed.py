"""TOML tables -> frozen dataclasses, typed and checked: the one loader behind kagflow.toml and ``-p`` overrides.

A table's keys are a dataclass's fields: their types and defaults are the rules. ``build`` refuses an unknown
key (with a did-you-mean), a wrong type or a missing required key with one ConfigError naming the file, the
table, the key, its value and the fix.
"""

from __future__ import annotations

import dataclasses
import json
import math
import types
import typing
from difflib import get_close_matches
from pathlib import Path

from kagflow.errors import ConfigError

_TYPE_NAMES = {str: "a string", int: "a whole number", float: "a number", bool: "true or false",
               dict: "a table"}


def _type_name(tp) -> str:
    tp = _unoptional(tp)
    if _is_union(tp):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if typing.get_origin(tp) is tuple and typing.get_args(tp)[:1] in ((float,), (int,)):
        return "a list of numbers" if typing.get_args(tp)[0] is float else "a list of whole numbers"
    if tp is tuple or typing.get_origin(tp) is tuple:
        return "a list of strings"
    return _TYPE_NAMES.get(tp, str(tp))


def _example(tp, default) -> str:
    if default is not dataclasses.MISSING and default is not None:
        return toml_value(default)
    return {str: '"..."', int: "1", float: "1.0", bool: "true"}.get(tp, '"..."')


def _unoptional(tp):
    """``int | None`` → ``int`` (TOML has no null, so an optional key is just its type)."""
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    if typing.get_origin(tp) in (typing.Union, types.UnionType) and len(args) == 1:
        return args[0]
    return tp


def _is_union(tp) -> bool:
    return typing.get_origin(tp) in (typing.Union, types.UnionType)


def _coerce(value, tp, where: str, key: str, default, file: Path):
    tp = _unoptional(tp)
    origin = typing.get_origin(tp)
    ok = True
    if _is_union(tp):  # the first of its types that the value is (e.g. "balanced" or [1.0, 2.0, 1.0])
        for option in typing.get_args(tp):
            try:
                return _coerce(value, option, where, key, default, file)
            except ConfigError:
                continue
        ok = False
    elif origin is tuple and typing.get_args(tp)[:1] in ((float,), (int,)):
        item = typing.get_args(tp)[0]
        ok = isinstance(value, list) and all(isinstance(v, (int, float) if item is float else int)
                                             and not isinstance(v, bool) for v in value)
        value = tuple(item(v) for v in value) if ok else value
    elif tp is bool:
        ok = isinstance(value, bool)
    elif tp is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif tp is float:  # TOML's nan and inf are no usable value of any key
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        value = float(value) if ok else value
    elif tp is str:
        ok = isinstance(value, str)
    elif tp is tuple or origin is tuple:
        ok = isinstance(value, list) and all(isinstance(v, str) for v in value)
        value = tuple(value) if ok else value
    elif tp is dict:
        ok = isinstance(value, dict)
    if not ok:
        raise ConfigError(
            f"{file.name}: [{where}] {key} = {toml_value(value)} is not {_type_name(tp)}",
            context=f"file {file}, table [{where}], key {key}",
            hint=f"write it as {key} = {_example(tp, default)}",
        )
    return value


def build(cls, table: dict, where: str, file: Path, *, exclude: tuple[str, ...] = ()):
    """An instance of dataclass ``cls`` from TOML table ``table`` (``[where]`` of ``file``): every key known,
    typed, and present unless it has a default; the first problem is one ConfigError naming the key and the fix."""
    if not isinstance(table, dict):
        raise ConfigError(f"{file.name}: [{where}] must be a table", context=f"file {file}",
                          hint=f"write it as a [{where}] section")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.name not in exclude}
    unknown = [k for k in table if k not in fields]
    if unknown:
        key = unknown[0]
        close = get_close_matches(key, list(fields), n=1)
        raise ConfigError(
            f"{file.name}: unknown key {key!r} in [{where}]",
            context=f"file {file}, value {toml_value(table[key])}; known keys: {', '.join(fields)}",
            hint=f"did you mean {close[0]!r}?" if close else f"remove {key!r}",
        )
    kwargs = {}
    for name, f in fields.items():
        default = f.default if f.default is not dataclasses.MISSING else (
            f.default_factory() if f.default_factory is not dataclasses.MISSING else dataclasses.MISSING)
        if name in table:
            kwargs[name] = _coerce(table[name], hints[name], where, name, default, file)
        elif default is dataclasses.MISSING:
            raise ConfigError(
                f"{file.name}: [{where}] is missing the required key {name!r}",
                context=f"file {file}, table [{where}]",
                hint=f"add {name} = {_example(hints[name], default)} under [{where}]",
            )
    return cls(**kwargs)


def toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {toml_value(v)}" for k, v in value.items()) + " }"
    return json.dumps(str(value))
