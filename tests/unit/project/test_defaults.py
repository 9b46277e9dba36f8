"""defaults.toml, the file `kagflow init` writes, is the config dataclasses' defaults: every table, key and value."""

from __future__ import annotations

import dataclasses

import pytest
import tomllib

from kagflow.project import config as c
from kagflow.project.init import config_text, project_titles

from repo_root import REPO

DEFAULTS = tomllib.loads(c.DEFAULTS_FILE.read_text(encoding="utf-8"))
# the values of one entry, not a default of its table: each kernel's title, kind, sources and timeout (its kind's:
# kaggle.default_timeout, tested below)
PER_ENTRY = ("title", "kind", "sources", "timeout")


def _tables():
    """(where, dataclass, its table in defaults.toml) for every table defaults.toml holds."""
    for name, cls in {**c.TABLES, **c.REQUIRED, **c.STAND_INS}.items():
        yield name, cls, DEFAULTS[name]
    for name, table in DEFAULTS["kernels"].items():
        yield f"kernels.{name}", c.KernelConfig, {k: v for k, v in table.items() if k not in PER_ENTRY}


def _default(f: dataclasses.Field):
    if f.default is not dataclasses.MISSING:
        return f.default
    return f.default_factory() if f.default_factory is not dataclasses.MISSING else dataclasses.MISSING


@pytest.mark.parametrize("where, cls, table", list(_tables()), ids=lambda v: v if isinstance(v, str) else "")
def test_every_key_of_defaults_toml_is_the_dataclass_default(where, cls, table):
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for key, value in table.items():
        assert key in fields, f"[{where}] {key} is in defaults.toml but not a field of {cls.__name__}"
        default = _default(fields[key])
        if default is dataclasses.MISSING:
            continue  # a required key (a model's title): defaults.toml gives the project's value
        expected = list(default) if isinstance(default, tuple) else default
        assert value == expected and isinstance(value, bool) == isinstance(expected, bool), \
            f"[{where}] {key} = {value!r} in defaults.toml, but {cls.__name__}.{key} defaults to {default!r}"


def test_every_table_of_the_config_is_in_defaults_toml():
    assert set(DEFAULTS) == {*c.TABLES, *c.REQUIRED, "kernels", *c.STAND_INS}
    assert set(DEFAULTS["kernels"]) == {c.TRAIN_KERNEL, c.INFER_KERNEL}


def test_a_drifted_default_is_caught(monkeypatch):
    """The check above fails when a dataclass default moves and defaults.toml does not."""
    monkeypatch.setattr(c.InferConfig.__dataclass_fields__["batch_size"], "default", 4)
    with pytest.raises(AssertionError, match=r"\[infer\] batch_size = 8 in defaults.toml"):
        test_every_key_of_defaults_toml_is_the_dataclass_default("infer", c.InferConfig, DEFAULTS["infer"])


def test_init_writes_defaults_toml_with_the_project_names(tmp_path):
    text = config_text(competition="some-competition", username="bob")
    written = tomllib.loads(text)
    assert written["project"]["competition"] == "some-competition" and written["project"]["username"] == "bob"
    titled = {**written, "project": DEFAULTS["project"]}
    for where, title in project_titles("some-competition").items():  # this project's own names
        entry, default = titled, DEFAULTS
        for key in where:
            entry, default = entry[key], default[key]
        assert entry["title"] == title and title.startswith("some-competition ")
        entry["title"] = default["title"]
    assert titled == DEFAULTS
    assert text.count("#") == c.DEFAULTS_FILE.read_text().count("#")  # every comment kept


def test_this_repository_s_kagflow_toml_is_what_init_writes():
    assert (REPO / "kagflow.toml").read_text(encoding="utf-8") == config_text()


def test_a_kernel_table_without_a_timeout_gets_its_kinds():
    """defaults.toml's kernel timeouts are what a table without one gets: train Kaggle's 12 h session, infer the
    competition's 9 h."""
    from kagflow.rules import kaggle

    for name, table in DEFAULTS["kernels"].items():
        assert table["timeout"] == kaggle.default_timeout(table["kind"]), name
    assert (kaggle.default_timeout("train"), kaggle.default_timeout("infer")) == (12 * 3600, 9 * 3600)
