"""The Session, the typed state and the flow's loop over the registry of steps (no server)."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from kagflow.errors import KagflowError
from kagflow.hub.endpoint import Endpoint
from kagflow.project.config import DataConfig, load_config
from kagflow.project.state import KernelRecord, ModelRecord, ProjectState
from kagflow.workflow import flow as flow_module
from kagflow.workflow.session import Session
from kagflow.workflow.steps import STEP_NAMES, Step, StepResult


class FakeSession:
    def __init__(self, root):
        self.state = ProjectState.for_target(root, "local")
        self.endpoint = Endpoint("local", "http://127.0.0.1:1", "alice")
        self.target = SimpleNamespace(kept_running=lambda endpoint: "", data_note=lambda: "")
        self.config = SimpleNamespace(data=DataConfig())
        self.ran: list[str] = []


def _steps(fail=()):
    def make(name):
        def run(session, ctx):
            session.ran.append(name)
            if name in fail:
                raise KagflowError(f"{name} broke", hint="fix it")
            return StepResult(f"{name} done")
        return Step(name, run, name, uploads=False)  # nothing to ask the target first (workflow.online)
    return tuple(make(n) for n in ("a", "b", "c"))


def test_flow_is_a_loop_over_the_registry_resuming_and_redoing(tmp_path, monkeypatch):
    session = FakeSession(tmp_path)
    monkeypatch.setattr(flow_module, "STEPS", _steps(fail={"b"}))
    monkeypatch.setattr(flow_module, "STEP_NAMES", ("a", "b", "c"))
    with pytest.raises(flow_module.FlowStepError) as err:
        flow_module.run_flow(session, log=lambda m: None)
    assert "step 'b' failed: b broke" in err.value.message and "kagflow flow --from b" in err.value.hint
    monkeypatch.setattr(flow_module, "STEPS", _steps())
    report = flow_module.run_flow(session, log=lambda m: None)
    assert session.ran == ["a", "b", "b", "c"] and report.steps_run == ["b", "c"]
    assert report.summaries == {"a": "a done", "b": "b done", "c": "c done"}
    again = flow_module.run_flow(session, from_step="c", log=lambda m: None)
    assert again.steps_run == ["c"] and json.loads(json.dumps(again.to_dict()))["steps_run"] == ["c"]


def test_the_real_registry_names_the_documented_steps():
    assert STEP_NAMES == ("setup", "base", "wheels", "train", "adapter", "infer", "submit")


def test_state_records_from_two_processes_do_not_erase_each_other(tmp_path):
    one, two = ProjectState.for_target(tmp_path, "local"), ProjectState.for_target(tmp_path, "local")
    one.record_model("base_model", ModelRecord("alice/m/transformers/i/1", 1, "d1"))
    two.record_kernel("train", KernelRecord("alice/train", 2, "k2"))
    fresh = ProjectState.for_target(tmp_path, "local")
    assert fresh.model_version("base_model") == 1 and fresh.kernel("train").version == 2
    two.record_output("train", tmp_path / "out", version=2)
    two.record_output("train", tmp_path / "old", version=1)  # not the recorded version: ignored
    assert ProjectState.for_target(tmp_path, "local").kernel("train").output == str(tmp_path / "out")


def test_render_uses_the_versions_the_local_target_has(project):
    """`kagflow kernel render infer` after a local flow keeps its model sources (never [])."""
    session = Session(load_config(project), announce=False)
    base = "alice/gemma-2-9b-4bit-base/transformers/gemma2-9b-4bit-base/3"
    session.state.record_model("base_model", ModelRecord(base, 3))
    session.state.record_model("adapter_model", ModelRecord("x", 2))
    assert session.target.name == "local" and session.config.base_model.version == 3
    rendered = session.render("infer")
    assert rendered.metadata["model_sources"] == [
        "alice/gemma-2-9b-4bit-base/transformers/gemma2-9b-4bit-base/3",
        "alice/gemma2-arena-adapter/transformers/peft-lora-classifier/2"]
    assert not (project.parent / ".kagflow" / "local").exists()  # nothing was started


def test_a_switch_to_real_kaggle_is_announced(project, kaggle_credentials, capsys):
    """target = "auto" with credentials means Kaggle: said on stderr before anything else."""
    endpoint = Session(load_config(project)).endpoint
    assert endpoint.kind == "kaggle" and endpoint.url == "https://www.kaggle.com"
    assert capsys.readouterr().err == ('kagflow: target Kaggle as alice (target = "auto" and Kaggle credentials '
                                       'were found)\n')


def _training_output(root):
    """A training run's output as the train notebook leaves it when the run stopped early (or with
    keep_checkpoints): the final adapter beside the HF Trainer's checkpoints, which hold adapters too."""
    out = root / "kernels" / "train" / "output" / "v1"
    for folder in ("gemma2-adapter", "checkpoints/checkpoint-10", "checkpoints/checkpoint-5"):
        (out / folder).mkdir(parents=True)
        (out / folder / "adapter_config.json").write_text("{}")
    return out


def test_the_adapter_is_the_final_one_not_a_kept_checkpoint(project):
    """Publishing (and a local inference run) take the shallowest adapter folder, as the inference notebook
    does; sorted paths put checkpoints/checkpoint-10 before gemma2-adapter."""
    session = Session(load_config(project), announce=False)
    out = _training_output(project.parent)
    session.state.record_output("train", out)
    assert session.adapter_dir() == out / "gemma2-adapter"
    assert session.adapter_dir(str(out / "checkpoints")) == out / "checkpoints" / "checkpoint-10"  # the newest
    # sub-folders are published with the adapter (as Kaggle unpacks them): an adapter above a checkpoint is refused
    nested = project.parent / "nested"
    for folder in (nested, nested / "checkpoint-3"):
        folder.mkdir(parents=True)
        (folder / "adapter_config.json").write_text("{}")
    with pytest.raises(KagflowError) as err:
        session.adapter_dir(str(nested))
    assert "holds 1 other adapter(s) below it (checkpoint-3)" in err.value.message and "--from" in err.value.hint


@pytest.mark.parametrize("output, message", [
    (None, "no training output to take the adapter from"),
    ("gone", "training output {root}/gone does not exist"),
    ("empty", "no adapter (adapter_config.json) in {root}/empty or below it"),
])
def test_a_missing_adapter_names_the_state_file_and_the_commands(project, output, message):
    session = Session(load_config(project), announce=False)
    root = project.parent
    (root / "empty").mkdir()
    if output:
        session.state.record_output("train", root / output)
    with pytest.raises(KagflowError) as err:
        session.adapter_dir()
    assert err.value.message == message.format(root=root)
    assert str(session.state.path) in err.value.context
    assert "kagflow kernel pull train" in err.value.hint and "--from DIR" in err.value.hint


def test_publish_adapter_from_a_training_output_takes_its_final_adapter(project, monkeypatch):
    """`kagflow model publish adapter --from DIR` given a whole training output publishes its adapter folder,
    not the folder with the kept checkpoints (optimizer states) in it; a folder with no adapter is refused
    before any upload."""
    from kagflow.hub import models as hub_models

    published = []

    def fake_publish(gateway, ihandle, model_dir, instance_dir, source, notes=""):
        published.append(source)
        return SimpleNamespace(source="alice/a/transformers/x/1", handle=SimpleNamespace(version=1), digest="d",
                               uploaded=True)

    monkeypatch.setattr(hub_models, "publish_model", fake_publish)
    monkeypatch.setattr(hub_models, "model_description", lambda gateway, handle: None)  # no such model yet
    monkeypatch.setattr(Session, "gateway", None)
    session = Session(load_config(project), announce=False)
    out = _training_output(project.parent)
    session.publish("adapter_model", source=out)  # what `kagflow model publish adapter --from` passes
    session.publish("adapter_model", source=out / "gemma2-adapter")
    assert published == [out / "gemma2-adapter", out / "gemma2-adapter"]
    (project.parent / "notes").mkdir()
    with pytest.raises(KagflowError) as err:
        session.publish("adapter_model", source=project.parent / "notes")
    assert "no adapter (adapter_config.json)" in err.value.message and "--from" in err.value.context
    assert len(published) == 2
    assert not (project.parent / ".kagflow" / "local").exists()  # no local Kaggle was started (none left running)


def test_the_flow_probes_kaggles_image_or_says_why_not(project):
    """On Kaggle a shipped snapshot is probed first (the probe's image.json becomes [wheels] image); an image probed
    earlier is used and said so; the local Kaggle's own image needs no probe."""
    from kagflow.workflow.target import KaggleTarget, LocalTarget

    probes = []

    def probe_image(*, accelerator, out):
        probes.append((accelerator, out))
        return SimpleNamespace(name="kaggle-probed", python_version="3.12"), project.parent / out

    session = SimpleNamespace(probe_image=probe_image)
    image, how = KaggleTarget(load_config(project)).flow_wheels_image(session)
    assert probes == [("NvidiaTeslaT4", "kaggle-image.json")] and image == "kaggle-image.json"
    assert "Kaggle's image probed now (kaggle-probed, Python 3.12)" in how and "'kaggle-gpu' was not used" in how
    from kagflow.project.edit import set_value

    set_value(project, "wheels", "image", "kaggle-image.json")
    image, how = KaggleTarget(load_config(project)).flow_wheels_image(session)
    assert len(probes) == 1 and image == "kaggle-image.json" and "probed earlier (not probed again" in how
    image, how = LocalTarget(load_config(project), "http://127.0.0.1:1").flow_wheels_image(session)
    assert image == "local-kaggle" and "nothing to probe" in how and len(probes) == 1
