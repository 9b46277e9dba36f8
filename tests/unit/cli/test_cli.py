"""The command line: help, init, check, and errors printed once with their fix."""

import subprocess
import sys

import pytest
from click.testing import CliRunner

from kagflow.cli import cli, main


def run(args, **kw):
    return CliRunner().invoke(cli, args, catch_exceptions=False, **kw)


def test_help_lists_every_command_group():
    result = run(["--help"])
    assert result.exit_code == 0
    for group in ("init", "check", "wheels", "model", "kernel", "submit", "local", "flow", "kaggle", "data"):
        assert f"  {group} " in result.output, group
    for group in ("wheels", "model", "kernel", "local"):
        sub = run([group, "--help"])
        assert sub.exit_code == 0 and "Commands:" in sub.output


def test_python_dash_m_kagflow():
    out = subprocess.run([sys.executable, "-m", "kagflow", "--version"], capture_output=True, text=True)
    assert out.returncode == 0 and "kagflow" in out.stdout


def test_init_then_check(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert run(["init", "--username", "bob"]).exit_code == 0
    assert (tmp_path / "kagflow.toml").is_file()
    for folder in ("wheels", "kernels", "models"):
        assert (tmp_path / folder / "README.md").is_file()
    result = run(["check"])
    assert result.exit_code == 0, result.output  # nothing published yet: pending, not a problem
    assert "pending: [kernels.train] base_model: not produced yet; `kagflow model publish base`" in result.output
    assert "no problems found" in result.output
    assert not (tmp_path / ".kagflow" / "local").exists()  # check starts no local Kaggle


def test_check_json_is_one_object(tmp_path, monkeypatch):
    import json

    monkeypatch.chdir(tmp_path)
    run(["init", "--username", "bob"])
    for args in (["check", "--json"], ["--json", "check"]):
        result = run(args)
        assert result.exit_code == 0
        report = json.loads(result.output)
        assert report["ok"] is True and report["problems"] == [] and report["target"] == "the local Kaggle"
        assert {(p["kernel"], p["source"]) for p in report["pending"]} == {
            ("train", "base_model"), ("infer", "base_model"), ("infer", "adapter_model"),
            ("train", "wheels"), ("infer", "wheels")}  # the wheels dataset is pinned to a version once pushed


def test_error_as_json(tmp_path, monkeypatch, capsys):
    import json

    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_:
        main(["kernel", "render", "nope", "--json"])
    assert exit_.value.code == 1
    out = capsys.readouterr()
    error = json.loads(out.out)["error"]
    assert error["type"] == "ConfigError" and "kagflow init" in error["hint"]


def test_init_refuses_to_overwrite(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    run(["init"])
    with pytest.raises(SystemExit) as exit_:
        main(["init"])
    assert exit_.value.code == 1
    err = capsys.readouterr().err
    assert err.count("error:") == 1 and "already exists" in err and "--force" in err


def test_config_error_printed_once_with_hint(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    run(["init"])
    toml = tmp_path / "kagflow.toml"
    toml.write_text(toml.read_text().replace("lr = 2e-4", "lr = 'fast'"))
    with pytest.raises(SystemExit) as exit_:
        main(["check"])
    assert exit_.value.code == 1
    err = capsys.readouterr().err
    assert err.count("error:") == 1
    assert "[train] lr" in err and "hint: write it as lr = 0.0002" in err
    assert "Traceback" not in err


def test_no_config_error(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit):
        main(["check"])
    assert "kagflow init" in capsys.readouterr().err


def test_unknown_kernel_name(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    run(["init"])
    with pytest.raises(SystemExit):
        main(["kernel", "render", "nope"])
    err = capsys.readouterr().err
    assert "no kernel named 'nope'" in err and "train" in err
