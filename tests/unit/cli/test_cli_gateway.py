"""CLI commands against the local Kaggle: publish twice (second uploads nothing), wheels push,
the official CLI pass-through, and no credential anywhere in what kagflow wrote or printed."""

from __future__ import annotations

import json
import os

import pytest

from kagflow.cli import main
from kagflow.project.config import load_config
from kagflow.project.edit import set_value
from kagflow.rules import metadata

from local_fixtures import *  # noqa: F401,F403
from local_fixtures import COMPETITION, KEY, USER, run_kagflow
from repo_root import REPO


def kagflow(capsys, *args) -> tuple[int, str]:
    """(exit code, stdout + stderr)."""
    code, out, err = run_kagflow(capsys, *args)
    return code, out + err


@pytest.fixture
def proj(tmp_path, server, monkeypatch):
    from kagflow.project.init import init_project

    path = init_project(tmp_path / "proj", username=USER, competition=COMPETITION)
    monkeypatch.setenv("KAGFLOW_KAGGLE_ENDPOINT", server.url)
    monkeypatch.chdir(path.parent)
    base = path.parent / "hf-base"
    base.mkdir()
    (base / "config.json").write_text(json.dumps({"model_type": "gemma2"}))
    (base / "model.safetensors").write_bytes(os.urandom(2048))
    return path


def test_model_publish_twice_then_pass_through_and_no_secret(proj, capsys, server):
    code, out1 = kagflow(capsys, "model", "publish", "base", "--from", "hf-base")
    assert code == 0, out1
    assert "Published alice/gemma-2-9b-4bit-base/transformers/gemma2-9b-4bit-base/1" in out1
    assert "kagflow: target the local Kaggle at http://127.0.0.1:" in out1  # the target is named
    assert "url: http://127.0.0.1:" in out1 and "www.kaggle.com" not in out1  # local links stay local
    state = json.loads((proj.parent / ".kagflow" / "state-local.json").read_text())
    assert state["models"]["base_model"]["version"] == 1  # local versions live in the state file
    assert "version = 1" not in proj.read_text()

    code, out2 = kagflow(capsys, "model", "publish", "base", "--from", "hf-base")
    assert code == 0 and "Unchanged, nothing uploaded" in out2

    code, out3 = kagflow(capsys, "kaggle", "models", "instances", "versions", "list",
                         "alice/gemma-2-9b-4bit-base/transformers/gemma2-9b-4bit-base")
    assert code == 0, out3
    assert "1" in out3

    cfg = load_config(proj)  # the project's own wheels: titled after its competition by init
    wheels = cfg.wheels_dir()
    wheels.mkdir(parents=True)
    (wheels / "x-1.0-py3-none-any.whl").write_bytes(b"x")
    metadata.write_metadata(wheels, metadata.DATASET_METADATA,
                            metadata.dataset_metadata(USER, cfg.wheels.title, license_name="other"))
    code, out4 = kagflow(capsys, "wheels", "push")
    assert code == 0 and f"Created dataset {cfg.wheels_handle()}" in out4
    code, out5 = kagflow(capsys, "wheels", "push")
    assert code == 0 and "Unchanged" in out5

    code, out6 = kagflow(capsys, "check")
    everything = out1 + out2 + out3 + out4 + out5 + out6
    assert KEY not in everything
    for path in proj.parent.rglob("*"):
        if path.is_file():
            assert KEY.encode() not in path.read_bytes(), path


def test_server_error_is_one_clear_message(proj, capsys, server):
    from kagflow.local.server.faults import FaultRule, Faults

    server.faults = Faults({"*": FaultRule(rate_500=1.0)})
    code, out = kagflow(capsys, "model", "publish", "base", "--from", "hf-base")
    server.faults = None
    assert code == 1
    assert out.count("error:") == 1 and "HTTP 500" in out and "hint:" in out
    assert "Traceback" not in out and KEY not in out


def test_missing_source_folder(proj, capsys):
    (proj.parent / "empty").mkdir()
    code, out = kagflow(capsys, "model", "publish", "base", "--from", "empty")
    assert code == 1 and "no model files in" in out and "hint:" in out
    # the adapter from a folder: its final adapter is searched for (it once went straight to the upload)
    code, out = kagflow(capsys, "model", "publish", "adapter", "--from", "empty")
    assert code == 1 and "no adapter (adapter_config.json) in empty" in out and "--from empty" in out


def test_publish_on_kaggle_pins_the_version_in_kagflow_toml(proj, capsys, server, monkeypatch):
    from kagflow.hub.endpoint import Endpoint
    from kagflow.workflow import session, target

    class KaggleHere(target.KaggleTarget):  # Kaggle's rules (versions pinned in kagflow.toml), the local server's API
        def connect(self):
            return Endpoint("kaggle", server.url, USER), ""

    monkeypatch.setattr(session, "choose_target", KaggleHere)
    # Kaggle takes no default licence (Gemma weights are not Apache 2.0): refused, naming the key and the terms
    code, out = kagflow(capsys, "model", "publish", "base", "--from", "hf-base")
    assert code == 1 and "[base_model] license = '': no licence" in out and "key license" in out
    assert "ai.google.dev/gemma/terms" in out and "MIT" in out
    set_value(proj, "base_model", "license", "MIT")
    code, out = kagflow(capsys, "model", "publish", "base", "--from", "hf-base")
    assert code == 0, out
    text = proj.read_text()
    assert "version = 1\n" in text and "# Pinned instance version" in text
    instance = json.loads((proj.parent / "models" / "gemma-2-9b-4bit-base" / "gemma2-9b-4bit-base" /
                           "model-instance-metadata.json").read_text())
    assert instance["licenseName"] == "MIT" and instance["modelInstanceType"] == "ExternalVariant"
    assert instance["externalBaseModelUrl"] == "https://huggingface.co/unsloth/gemma-2-9b-it-bnb-4bit"
    cfg = load_config(proj)
    wheels = cfg.wheels_dir()  # the wheels dataset's version is pinned there too
    wheels.mkdir(parents=True)
    (wheels / "x-1.0-py3-none-any.whl").write_bytes(b"x")
    metadata.write_metadata(wheels, metadata.DATASET_METADATA,
                            metadata.dataset_metadata(USER, cfg.wheels.title, license_name="other"))
    code, out = kagflow(capsys, "wheels", "push")
    assert code == 0, out
    assert "[wheels]" in proj.read_text() and load_config(proj).wheels.version == 1


def _add_import_kernel(proj, name, title, code):
    """A kernel kagflow did not render: its notebook sits in kernels/<slug>/."""
    from kagflow.rules import slugs

    from local_fixtures import write_notebook

    folder = proj.parent / "kernels" / slugs.kernel_slug(title)
    write_notebook(folder / "nb.ipynb", code)
    with open(proj, "a") as f:
        f.write(f'\n[kernels.{name}]\ntitle = "{title}"\nkind = "import"\ncode_file = "nb.ipynb"\n'
                f'accelerator = "None"\nsources = []\n')


def test_kernel_push_wait_failure_exits_nonzero_with_traceback_tail(proj, capsys):
    _add_import_kernel(proj, "broken", "Broken experiment", "x = 1\nraise ValueError('the last line: bad shape')")
    code, out = kagflow(capsys, "kernel", "push", "broken", "--wait")
    assert code == 1, out
    assert "ended ERROR" in out and "the last line: bad shape" in out
    assert out.count("error:") == 1 and "kagflow kernel logs broken" in out

    code, out = kagflow(capsys, "kernel", "status", "broken")
    assert code == 1 and "ERROR" in out
    code, out = kagflow(capsys, "kernel", "logs", "broken", "--lines", "5")
    assert code == 0 and "bad shape" in out


def test_kernel_push_wait_pull_then_unchanged(proj, capsys):
    _add_import_kernel(proj, "hello", "Hello experiment", "open('out.txt', 'w').write('hi')\nprint('ok')")
    code, out = kagflow(capsys, "kernel", "push", "hello", "--wait")
    assert code == 0 and "Pushed alice/hello-experiment version 1" in out and "COMPLETE" in out
    assert out.lower().count("pushed alice/hello-experiment") == 1  # the result once, not once per layer
    code, out = kagflow(capsys, "kernel", "pull", "hello")
    assert code == 0 and "out.txt" in out and "output/v1" in out
    with pytest.raises(SystemExit) as done:
        main(["kernel", "status", "hello", "--json"])
    status = json.loads(capsys.readouterr().out)  # stdout holds one object; stderr names the target
    assert done.value.code == 0 and status["status"] == "COMPLETE" and status["version"] == 1 and status["ok"]
    code, out = kagflow(capsys, "kernel", "push", "hello")
    assert code == 0 and "Unchanged alice/hello-experiment version 1" in out


def test_kernel_import_normalises_and_registers(proj, capsys, server, tmp_path):
    from kagflow.hub.client import build_api

    from local_fixtures import write_kernel

    folder = write_kernel(tmp_path / "public", "public-gemma-notebook", "print('upstream')",
                          competition_sources=[COMPETITION])
    build_api(server.url).kernels_push(str(folder))
    code, out = kagflow(capsys, "kernel", "import", "alice/public-gemma-notebook", "--as", "upstream")
    assert code == 0, out
    text = proj.read_text()
    assert "[kernels.upstream]" in text and 'kind = "import"' in text
    assert f'"competition:{COMPETITION}"' in text
    code, out = kagflow(capsys, "kernel", "render", "upstream")
    assert code == 0, out
    meta = json.loads((proj.parent / "kernels" / "public-gemma-notebook" / "kernel-metadata.json").read_text())
    assert meta["competition_sources"] == [COMPETITION] and meta["enable_internet"] is False
    nb = json.loads((proj.parent / "kernels" / "public-gemma-notebook" / meta["code_file"]).read_text())
    assert nb["metadata"]["kernelspec"]["name"] == "python3"


def test_kernel_import_refuses_a_name_that_is_not_a_whole_toml_key(proj, capsys):
    before = proj.read_text()
    code, out = kagflow(capsys, "kernel", "import", "alice/public-gemma-notebook", "--as", "upstream\n")
    assert code != 0 and "not a valid TOML key" in out, out
    assert proj.read_text() == before


def test_image_probe_records_the_kernels_image(proj, capsys):
    """`kagflow image probe` pushes a tiny kernel, pulls what it recorded, and targets it."""
    import sys

    code, out = kagflow(capsys, "image", "probe", "--accelerator", "None")
    assert code == 0, out
    saved = json.loads((proj.parent / "kaggle-image.json").read_text())
    assert saved["python_version"] == f"{sys.version_info.major}.{sys.version_info.minor}"
    assert 'image = "kaggle-image.json"' in proj.read_text()
    code, out = kagflow(capsys, "image", "show")
    assert code == 0 and "Image" in out


def test_endpoint_down_fails_with_one_message_naming_it(tmp_path, monkeypatch, capsys, kaggle_env):
    """Nothing listens at the endpoint: `model publish` ends (short test deadline) with one message."""
    import socket

    from kagflow.hub.retry import RetryPolicy
    from kagflow.project.init import init_project

    monkeypatch.setattr(RetryPolicy, "MAX_RETRIES", 10_000)
    monkeypatch.setattr(RetryPolicy, "BASE_WAIT", 0.05)
    monkeypatch.setattr(RetryPolicy, "MAX_WAIT", 0.05)
    monkeypatch.setattr(RetryPolicy, "DEADLINE", 0.5)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{s.getsockname()[1]}"
    path = init_project(tmp_path / "proj", username=USER, competition=COMPETITION)
    monkeypatch.setenv("KAGFLOW_KAGGLE_ENDPOINT", url)
    monkeypatch.chdir(path.parent)
    (path.parent / "hf-base").mkdir()
    (path.parent / "hf-base" / "config.json").write_text("{}")
    code, out = kagflow(capsys, "model", "publish", "base", "--from", "hf-base")
    assert code == 1 and out.count("error:") == 1
    assert f"no answer from {url}" in out and "kagflow local start" in out and "Traceback" not in out


def test_two_concurrent_publishes_end_with_one_version_and_no_crash(proj, server):
    """Two processes publish the same base model at once: the project lock serialises them."""
    import subprocess
    import sys

    from kagflow.hub.client import build_api
    from kagflow.local.server.faults import FaultRule, Faults

    # each upload answers late, so without the lock both processes find no version and upload
    server.faults = Faults({"upload": FaultRule(rate_slow=1.0, slow_seconds=1.0)})
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    procs = [subprocess.Popen([sys.executable, "-m", "kagflow", "model", "publish", "base", "--from", "hf-base"],
                              cwd=proj.parent, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for _ in range(2)]
    outs = [p.communicate(timeout=300)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    assert sum("Published" in o for o in outs) == 1 and sum("Unchanged" in o for o in outs) == 1, outs
    versions = build_api(server.url).model_instance_versions_list(
        "alice/gemma-2-9b-4bit-base/transformers/gemma2-9b-4bit-base").version_list.versions
    assert [v.version_number for v in versions] == [1]


def test_kernel_push_fails_naming_another_users_private_source(proj, capsys, server, tmp_path):
    """Kaggle refuses a source its owner keeps private (invalid_dataset_sources); `kagflow kernel push`
    exits 1 with one message naming the source and the fix, and a public source of the same user is fine."""
    from kagflow.hub.client import build_api

    from local_fixtures import write_dataset

    bob = build_api(server.url)
    bob.config_values.update(username="bob", key="bob-key")
    for slug, private in (("bob-secret-data", True), ("bob-open-data", False)):
        folder = write_dataset(tmp_path / slug, slug, {"rows.csv": "x\n1\n"}, owner="bob")
        meta = json.loads((folder / "dataset-metadata.json").read_text())
        meta["isPrivate"] = private
        (folder / "dataset-metadata.json").write_text(json.dumps(meta))
        bob.dataset_create_new(str(folder), quiet=True, public=not private)

    _add_import_kernel(proj, "peek", "Peek experiment", "import os; print(os.listdir('/kaggle/input'))")
    proj.write_text(proj.read_text().replace(
        'sources = []\n', 'sources = ["dataset:bob/bob-secret-data", "dataset:bob/bob-open-data"]\n'))
    code, out = kagflow(capsys, "kernel", "push", "peek")
    assert code == 1, out
    error = out.split("error:", 1)[1]
    assert out.count("error:") == 1 and "hint:" in error and "kagflow kernel push" in error
    assert "dataset bob/bob-secret-data" in error and "bob-open-data" not in error


def test_kernel_push_options_get_the_configs_checks(proj, capsys, server):
    """--accelerator and --timeout are checked as [kernels.NAME] is: refused before anything is pushed."""
    _add_import_kernel(proj, "hello", "Hello experiment", "print('ok')")
    code, out = kagflow(capsys, "kernel", "push", "hello", "--accelerator", "NvidiaTeslaK80")
    assert code == 1 and "kagflow kernel push hello --accelerator: accelerator: unknown accelerator" in out
    code, out = kagflow(capsys, "kernel", "push", "hello", "--timeout", str(13 * 3600))
    assert code == 1 and "past Kaggle's 12 h session limit" in out and "--timeout" in out
    from requests.exceptions import HTTPError

    from kagflow.hub.client import build_api

    with pytest.raises(HTTPError) as err:  # nothing was pushed
        build_api(server.url).kernels_status("alice/hello-experiment")
    assert err.value.response.status_code == 404
