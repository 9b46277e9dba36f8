"""`kagflow check`: plant each problem, assert its message names file, field and fix."""

import json

import nbformat
import pytest

from kagflow.project.config import load_config
from kagflow.project.edit import set_value
from kagflow.project.sources import resolve_sources
from kagflow.rules import metadata
from kagflow.workflow.check import check_kernel, check_project, pending


def _edit(path, old, new):
    text = path.read_text()
    assert old in text, old
    path.write_text(text.replace(old, new, 1))


@pytest.fixture
def published(project):
    set_value(project, "base_model", "version", 2)
    set_value(project, "adapter_model", "version", 1)
    set_value(project, "wheels", "version", 3)
    return project


def _write_kernel(cfg, name, *, kernelspec=True):
    """What `kagflow kernel render` writes, without the templates."""
    k = cfg.kernel(name)
    folder = cfg.kernel_dir(name)
    src = resolve_sources(cfg, name)
    data = metadata.kernel_metadata(cfg.username, k.title, "nb.ipynb", is_private=k.private,
                                    accelerator=k.accelerator, enable_internet=k.internet,
                                    dataset_sources=src.dataset_sources, model_sources=src.model_sources,
                                    competition_sources=src.competition_sources)
    metadata.write_metadata(folder, metadata.KERNEL_METADATA, data)
    nb = nbformat.v4.new_notebook()
    if kernelspec:
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, folder / "nb.ipynb")
    return folder


def _messages(cfg):
    return [p.render() for p in check_project(cfg)]


def test_clean_project_has_no_problems(published):
    cfg = load_config(published)
    for name in cfg.kernels:
        _write_kernel(cfg, name)
    assert _messages(cfg) == []


def test_unpublished_sources_are_pending_not_problems(project):
    cfg = load_config(project)
    assert _messages(cfg) == []
    todo = {(p.kernel, p.source, p.command) for p in pending(cfg)}
    assert ("infer", "adapter_model", "kagflow model publish adapter") in todo
    assert ("train", "base_model", "kagflow model publish base") in todo


def test_check_kernel_reports_only_that_kernel_and_its_unpublished_sources(published):
    cfg = load_config(published)
    for name in cfg.kernels:
        _write_kernel(cfg, name)
    _edit(published, 'title = "Gemma2 QLoRA arena infer"\nkind = "infer"\naccelerator = "NvidiaTeslaT4"',
          'title = "Gemma2 QLoRA arena infer"\nkind = "infer"\naccelerator = "NvidiaTeslaP100"')
    set_value(published, "adapter_model", "version", 0)
    cfg = load_config(published)
    assert check_kernel(cfg, "train") == []
    infer = [p.render() for p in check_kernel(cfg, "infer")]
    assert any("retired" in m for m in infer)
    assert any("'adapter_model' is referenced but nothing has produced it" in m for m in infer)


def test_a_rendered_kernel_with_a_pending_source_is_not_called_stale(published):
    """The folder lists adapter version 1; the config cannot confirm it: pending, never 'render'
    (which would drop the source)."""
    cfg = load_config(published)
    _write_kernel(cfg, "infer")
    set_value(published, "adapter_model", "version", 0)
    assert [p.render() for p in check_project(load_config(published))] == []


def test_internet_on_in_submission_kernel(published):
    _edit(published, 'kind = "infer"\naccelerator = "NvidiaTeslaT4"\ninternet = false',
          'kind = "infer"\naccelerator = "NvidiaTeslaT4"\ninternet = true')
    msgs = _messages(load_config(published))
    assert any("[kernels.infer] internet" in m and "set internet = false" in m for m in msgs)


def test_competition_kernel_without_gpu(published):
    _edit(published, 'kind = "train"\naccelerator = "NvidiaTeslaT4"', 'kind = "train"\naccelerator = "None"')
    msgs = _messages(load_config(published))
    assert any("[kernels.train] accelerator" in m and "without a GPU" in m for m in msgs)


def test_retired_accelerator(published):
    _edit(published, 'kind = "train"\naccelerator = "NvidiaTeslaT4"', 'kind = "train"\naccelerator = "NvidiaTeslaP100"')
    assert any("retired" in m for m in _messages(load_config(published)))


def test_public_kernel_with_private_sources(published):
    _edit(published, 'kind = "infer"\naccelerator = "NvidiaTeslaT4"\ninternet = false\nprivate = true',
          'kind = "infer"\naccelerator = "NvidiaTeslaT4"\ninternet = false\nprivate = false')
    msgs = _messages(load_config(published))
    assert any("[kernels.infer] private" in m and "private sources (wheels, base_model, adapter_model)" in m
               for m in msgs)


def test_unknown_kernel_source(published):
    _edit(published, 'sources = ["wheels", "base_model", "competition"]', 'sources = ["kernel:nope", "competition"]')
    msgs = _messages(load_config(published))
    assert any("names kernel 'nope'" in m for m in msgs)


def test_wheels_referenced_without_requirements(published):
    _edit(published, 'requirements = ["peft==0.21.2", "bitsandbytes==0.50.2"]', "requirements = []")
    assert any("[wheels] requirements is empty" in m for m in _messages(load_config(published)))


def test_hand_edited_kernel_metadata_title_mismatch(published):
    cfg = load_config(published)
    folder = _write_kernel(cfg, "train")
    meta = json.loads((folder / metadata.KERNEL_METADATA).read_text())
    meta["title"] = "Gemma2 QLoRA arena training v2"
    (folder / metadata.KERNEL_METADATA).write_text(json.dumps(meta))
    msgs = _messages(cfg)
    assert any("kernel-metadata.json: title" in m and "slugifies to 'gemma2-qlora-arena-training-v2'" in m
               and "kagflow kernel render train" in m for m in msgs)


def test_unversioned_and_uppercase_model_sources_in_file(published):
    cfg = load_config(published)
    folder = _write_kernel(cfg, "infer")
    meta = json.loads((folder / metadata.KERNEL_METADATA).read_text())
    meta["model_sources"] = ["alice/gemma-2-9b-4bit-base/transformers/gemma2-9b-4bit-base",
                             "alice/gemma2-arena-adapter/Transformers/peft-lora-classifier/1"]
    (folder / metadata.KERNEL_METADATA).write_text(json.dumps(meta))
    msgs = _messages(cfg)
    assert any("model_sources" in m and "has no version" in m for m in msgs)
    assert any("model_sources" in m and "not in kagflow's one form" in m and "transformers/peft" in m for m in msgs)


def test_title_too_long_and_missing_flag(published):
    cfg = load_config(published)
    folder = _write_kernel(cfg, "train")
    meta = json.loads((folder / metadata.KERNEL_METADATA).read_text())
    meta["title"] = "x" * 60
    del meta["enable_internet"]
    (folder / metadata.KERNEL_METADATA).write_text(json.dumps(meta))
    msgs = _messages(cfg)
    assert any("must be 5..50 characters" in m for m in msgs)
    assert any("enable_internet is not written" in m for m in msgs)


def test_notebook_without_kernelspec(published):
    cfg = load_config(published)
    _write_kernel(cfg, "train", kernelspec=False)
    assert any("metadata.kernelspec" in m and "No kernel name found" in m for m in _messages(cfg))


def test_model_instance_framework_casing(published):
    cfg = load_config(published)
    inst = cfg.root / "models" / "gemma2-arena-adapter" / "peft-lora-classifier"
    inst.mkdir(parents=True)
    (inst / metadata.MODEL_INSTANCE_METADATA).write_text(json.dumps({
        "ownerSlug": "alice", "modelSlug": "gemma2-arena-adapter", "instanceSlug": "peft-lora-classifier",
        "framework": "Transformers", "licenseName": "Apache 2.0"}))
    msgs = _messages(cfg)
    assert any("framework 'Transformers' is not in the camelCase enum form" in m and "'transformers'" in m
               for m in msgs)


def test_dataset_metadata_id_mismatch(published):
    cfg = load_config(published)
    folder = cfg.root / "wheels" / "kagflow-offline-wheels"
    folder.mkdir(parents=True)
    (folder / metadata.DATASET_METADATA).write_text(json.dumps(
        {"title": "kagflow offline wheels", "id": "alice/pip-wheels-bnb", "licenses": [{"name": "CC0-1.0"}],
         "isPrivate": True}))
    msgs = _messages(cfg)
    assert any("id slug 'pip-wheels-bnb' is not slugify(title)" in m for m in msgs)


def test_all_problems_listed_at_once(project):
    _edit(project, 'kind = "infer"\naccelerator = "NvidiaTeslaT4"\ninternet = false',
          'kind = "infer"\naccelerator = "None"\ninternet = true')
    _edit(project, 'kind = "train"\naccelerator = "NvidiaTeslaT4"', 'kind = "train"\naccelerator = "NvidiaTeslaK80"')
    assert len(check_project(load_config(project))) >= 3


def test_wheels_folder_must_match_its_manifest(published):
    from kagflow.wheels.build import MANIFEST_NAME

    cfg = load_config(published)
    folder = cfg.root / "wheels" / "kagflow-offline-wheels"
    folder.mkdir(parents=True)
    metadata.write_metadata(folder, metadata.DATASET_METADATA,
                            metadata.dataset_metadata("alice", "kagflow offline wheels", license_name="other"))
    (folder / "peft-0.21.2-py3-none-any.whl").write_bytes(b"tampered")
    (folder / MANIFEST_NAME).write_text(json.dumps({"format": "kagflow-wheels-manifest/1", "packages": [
        {"name": "peft", "version": "0.21.2", "filename": "peft-0.21.2-py3-none-any.whl", "sha256": "0" * 64}]}))
    (folder / "extra-1.0-py3-none-any.whl").write_bytes(b"x")
    msgs = _messages(cfg)
    assert any("does not match its sha256" in m and "kagflow wheels build" in m for m in msgs)
    assert any("extra-1.0-py3-none-any.whl is not in the manifest" in m for m in msgs)
    (folder / MANIFEST_NAME).write_text("{}")
    assert any("has format None" in m for m in _messages(cfg))
    (folder / MANIFEST_NAME).unlink()
    assert any("has no manifest" in m for m in _messages(cfg))


@pytest.mark.parametrize("key, value, says, fix", [
    ("optim_type", "lion_32bit", "'lion_32bit' is not one the fast loop", 'train_loop = "trainer"'),
    ("dataloader_num_workers", 2, "the fast loop has no DataLoader", "set dataloader_num_workers = 0"),
    ("attn_implementation", "sdpa", "sdpa drops Gemma 2's attention softcapping", 'attn_implementation = "eager"'),
    ("eval_strategy", "sometimes", "is not epoch, steps or no", 'eval_strategy = "epoch"'),
    ("attn_implementation", "flex_attention", "the training kernel runs on NvidiaTeslaT4",
     'attn_implementation = "eager"'),
    ("time_budget", -5, "time_budget = -5.0 is negative", "time_budget = 0"),
])
def test_train_keys_a_loop_would_not_honour_are_refused(published, key, value, says, fix):
    set_value(published, "train", key, value)
    msgs = [m for m in _messages(load_config(published)) if f"[train] {key}" in m]
    assert len(msgs) == 1 and says in msgs[0] and fix in msgs[0], msgs


@pytest.mark.parametrize("edits, says, fix", [
    ({"quantization": "6bit"}, "quantization = '6bit' is not one of 4bit, 8bit", 'quantization = "4bit"'),
    ({"int8_kernel": "llm-int8"}, "int8_kernel = 'llm-int8' is not one of weight_only, llm_int8",
     'did you mean int8_kernel = "llm_int8"?'),
    ({"quantization": "8bit", "int8_threshold": 0.0}, "int8_threshold = 0.0 is LLM.int8's outlier threshold",
     'write int8_kernel = "llm_int8"'),
    ({"deadline_s": -1}, "deadline_s = -1.0 is negative", "set deadline_s = 0"),
    ({"ensemble": "mean"}, "ensemble = 'mean' is not one of members, average_lora", 'ensemble = "members"'),
    ({"temperature": "fitted"}, "temperature = 'fitted' is not", 'temperature = "none", "oof"'),
    ({"temperature": -1.0}, "temperature = -1.0 is not", 'temperature = "none", "oof"'),
])
def test_infer_keys_the_notebook_would_refuse_are_refused(published, edits, says, fix):
    for key, value in edits.items():
        set_value(published, "infer", key, value)
    msgs = [m for m in _messages(load_config(published)) if "[infer]" in m]
    assert len(msgs) == 1 and says in msgs[0] and fix in msgs[0], msgs


def test_int8_threshold_passes_with_llm_int8(published):
    for key, value in (("quantization", "8bit"), ("int8_kernel", "llm_int8"), ("int8_threshold", 0.0)):
        set_value(published, "infer", key, value)
    assert not [m for m in _messages(load_config(published)) if "[infer]" in m]


def test_8bit_inference_of_a_fold_ensemble_passes(published):
    """Each member is merged in turn (classifier/ensembling.py), so an 8-bit fold ensemble is no problem."""
    set_value(published, "infer", "quantization", "8bit")
    set_value(published, "train", "folds", [0, 1, 2])
    assert not [m for m in _messages(load_config(published)) if "[infer]" in m]


def test_trainer_loop_takes_any_optimizer(published):
    set_value(published, "train", "optim_type", "lion_32bit")
    set_value(published, "train", "train_loop", "trainer")
    assert not [m for m in _messages(load_config(published)) if "[train]" in m]


def test_attention_rule_reads_the_snapshot_config(published):
    """"auto" is always fine; sdpa is refused only for a soft-capped model, read from the snapshot's config."""
    import json

    def attention_problems():
        return [m for m in _messages(load_config(published)) if "[train] attn_implementation" in m]

    set_value(published, "train", "attn_implementation", "auto")
    assert not attention_problems()
    snapshot = published.parent / "models" / "hf-base"
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").write_text(json.dumps({"model_type": "llama", "num_hidden_layers": 2}))
    set_value(published, "base_model", "local_dir", "models/hf-base")
    set_value(published, "train", "attn_implementation", "sdpa")
    assert not attention_problems()  # the title says Gemma 2; the snapshot is a Llama without softcapping
    (snapshot / "config.json").write_text(json.dumps({"model_type": "gemma2", "attn_logit_softcapping": 50.0}))
    assert len(attention_problems()) == 1


def test_rendered_train_kernel_gets_a_time_budget_from_its_timeout(published):
    from kagflow.classifier.config import TIME_BUDGET_MARGIN
    from kagflow.notebooks.kernel_folder import notebook_params

    cfg = load_config(published)
    params = notebook_params(cfg, "train", resolve_sources(cfg, "train"), tiny=False)
    assert params["time_budget"] == cfg.kernel("train").timeout - TIME_BUDGET_MARGIN
    set_value(published, "train", "time_budget", 3600)
    cfg = load_config(published)
    assert notebook_params(cfg, "train", resolve_sources(cfg, "train"), tiny=False)["time_budget"] == 3600


@pytest.mark.parametrize("kernel, timeout, expect", [
    ("train", 12 * 3600 + 1, "past Kaggle's 12 h session limit"),
    ("infer", 9 * 3600 + 1, "past the 9 h a code competition gives its notebooks"),
])
def test_a_timeout_past_kaggles_limits_is_refused(published, kernel, timeout, expect):
    import re

    toml = published if published.name == "kagflow.toml" else published / "kagflow.toml"
    text = toml.read_text()
    start = text.index(f"[kernels.{kernel}]")
    edited = re.sub(r"(?m)^timeout = \d+$", f"timeout = {timeout}", text[start:], count=1)
    toml.write_text(text[:start] + edited)
    msgs = _messages(load_config(published))
    assert any(f"[kernels.{kernel}] timeout" in m and expect in m for m in msgs), msgs
    assert len(msgs) == 1  # a training kernel may use the whole 12 h session; only the submission's re-run has 9


def test_push_options_get_the_configs_checks_named_as_options(published):
    """`kagflow kernel push NAME --accelerator X --timeout S`: the checks [kernels.NAME] gets, told as the options'."""
    import dataclasses

    from kagflow.workflow.kernel import _overridden

    cfg = load_config(published)
    for name in cfg.kernels:
        _write_kernel(cfg, name)
    infer = dataclasses.replace(cfg.kernel("infer"), accelerator="NvidiaTeslaK80", timeout=10 * 3600)
    pushed = dataclasses.replace(cfg, kernels={**cfg.kernels, "infer": infer})
    problems = check_kernel(pushed, "infer", overridden=_overridden("NvidiaTeslaK80", 10 * 3600))
    by_field = {p.field: p for p in problems}
    assert set(by_field) == {"accelerator", "timeout"}
    assert by_field["accelerator"].file == "kagflow kernel push infer --accelerator"
    assert "unknown accelerator 'NvidiaTeslaK80'" in by_field["accelerator"].message
    assert "(or pass another --accelerator)" in by_field["accelerator"].fix
    assert by_field["timeout"].file == "kagflow kernel push infer --timeout"
    retired = dataclasses.replace(cfg.kernel("infer"), accelerator="NvidiaTeslaP100")
    [problem] = check_kernel(dataclasses.replace(cfg, kernels={**cfg.kernels, "infer": retired}), "infer",
                             overridden=_overridden("NvidiaTeslaP100", None))
    assert "Kaggle runs the session on NvidiaTeslaT4 instead" in problem.message


def test_a_publish_to_kaggle_needs_a_licence_the_rehearsal_does_not(published, monkeypatch):
    """No licence default on Kaggle (Gemma weights are under Google's Gemma terms, not Apache 2.0): `check` says so
    for each model on the Kaggle target; the local rehearsal publishes its stand-in under its own."""
    from types import SimpleNamespace

    from kagflow.workflow import check as check_module
    from kagflow.workflow.check import check

    monkeypatch.setattr(check_module, "check_data", lambda session: [])  # the data's check has its own tests
    from kagflow.workflow.target import REHEARSAL_LICENSE, KaggleTarget, LocalTarget

    cfg = load_config(published)
    for name in cfg.kernels:
        _write_kernel(cfg, name)
    problems, _ = check(SimpleNamespace(config=cfg, target=KaggleTarget(cfg)))
    assert [p.field for p in problems] == ["[base_model] license", "[adapter_model] license"]
    assert "ai.google.dev/gemma/terms" in problems[0].fix and "'Please specify a license'" in problems[0].message
    assert check(SimpleNamespace(config=cfg, target=LocalTarget(cfg, "http://127.0.0.1:1")))[0] == []
    assert LocalTarget(cfg, "http://127.0.0.1:1").model_license("base_model") == REHEARSAL_LICENSE
    set_value(published, "base_model", "license", "MIT")
    set_value(published, "adapter_model", "license", "MIT")
    cfg = load_config(published)
    assert check(SimpleNamespace(config=cfg, target=KaggleTarget(cfg)))[0] == []


def test_a_hand_edited_instance_file_is_held_to_kaggles_values(published):
    cfg = load_config(published)
    for name in cfg.kernels:
        _write_kernel(cfg, name)
    folder = published.parent / "models" / "gemma2-arena-adapter" / "peft-lora-classifier"
    data = metadata.model_instance_metadata(cfg.instance_handle("adapter_model"), license_name="MIT",
                                            model_instance_type="KaggleVariant",
                                            base_model_instance=str(cfg.instance_handle("base_model")))
    metadata.write_metadata(folder, metadata.MODEL_INSTANCE_METADATA,
                            {**data, "licenseName": "Gemma", "modelInstanceType": "InternalVariant"})
    by_field = {p.field: p for p in check_project(cfg)}
    assert "model licence 'Gemma' is not one Kaggle accepts" in by_field["licenseName"].message
    assert "'KaggleVariant'" in by_field["modelInstanceType"].fix
    metadata.write_metadata(folder, metadata.MODEL_INSTANCE_METADATA, {**data, "baseModelInstance": ""})
    [problem] = check_project(cfg)
    assert problem.field == "baseModelInstance" and "names its base model instance" in problem.message
