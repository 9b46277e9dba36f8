"""Parameter overrides per push or run, papermill style: ``-p fold_idx=2 -p lr=1e-4``.

Each ``KEY=VALUE`` names a key of the kernel's recipe table ([train] for a training kernel, [infer]
for an inference one) and is typed against it as kagflow.toml is: VALUE is read as a TOML value
(``2``, ``1e-4``, ``true``, ``[1.0, 2.0]``), or as a string when it is not one (``balanced``).
"""

from __future__ import annotations

import dataclasses
from difflib import get_close_matches
from typing import Iterable

import tomllib

from kagflow.errors import ConfigError
from kagflow.project.config import RECIPE_TABLES, Config
from kagflow.project.typed import build


def _keys(cls) -> list[str]:
    return [f.name for f in dataclasses.fields(cls)]


def _value(text: str):
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def parse_overrides(config: Config, name: str, pairs: Iterable[str]) -> dict:
    """``{key: typed value}`` from ``KEY=VALUE`` strings for kernel ``name``; one ConfigError naming
    the bad pair, what is wrong and the fix (with a did-you-mean for a mistyped key)."""
    pairs = list(pairs)
    if not pairs:
        return {}
    kind = config.kernel(name).kind
    if kind not in RECIPE_TABLES:
        raise ConfigError(f"kernel {name!r} is an imported notebook: -p sets only rendered kernels' parameters",
                          context=f"kernel {name}, kind {kind!r}, -p {pairs[0]}",
                          hint="edit the notebook in kernels/ instead, or drop -p")
    table, cls = kind, RECIPE_TABLES[kind]
    values = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"-p {pair!r} is not KEY=VALUE", context=f"kernel {name}, keys of [{table}]",
                              hint=f"write it as -p fold_idx=2 (keys: {', '.join(_keys(cls))})")
        values[key] = _value(text.strip())
    for key in values:
        if key not in _keys(cls):
            close = get_close_matches(key, _keys(cls), n=1)
            raise ConfigError(f"-p {key}={values[key]!r}: {key!r} is not a key of [{table}]",
                              context=f"kernel {name}; keys: {', '.join(_keys(cls))}",
                              hint=f"did you mean -p {close[0]}=...?" if close else "use one of the keys above")
    try:
        built = build(cls, values, table, config.path)
    except ConfigError as e:
        key = next((k for k in values if f"] {k} =" in e.message), "")
        raise ConfigError(f"-p {key}={values.get(key)!r}: " + e.message.split(": ", 1)[-1],
                          context=f"kernel {name}, typed as [{table}] {key} in {config.path.name}",
                          hint=(e.hint or "").replace("write it as ", "write it as -p ").replace(" = ", "=")) from None
    return {k: list(v) if isinstance(v, tuple) else v for k, v in ((k, getattr(built, k)) for k in values)}
