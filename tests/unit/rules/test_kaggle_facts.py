"""kagflow's Kaggle facts (kagflow.rules.kaggle) and the metadata files it writes (kagflow.rules.metadata), held to
kaggle-cli's docs (docs/*.md, parsed) and to the installed official client and kagglesdk (what they read, accept and
warn about): a fact Kaggle changes fails here, naming it, rather than on Kaggle."""

from __future__ import annotations

import ast
import inspect
import os
import re
from functools import cache
from pathlib import Path

import pytest

from kagflow.hub.client import KaggleApi, kaggle_api_extended
from kagflow.rules import kaggle, metadata, slugs

DOCS = Path(os.environ.get("KAGGLE_CLI_REPO", "")) / "docs" if os.environ.get("KAGGLE_CLI_REPO") else \
    Path(__file__).with_name("data") / "kaggle-cli-docs"


def _doc(name: str) -> str:
    return (DOCS / name).read_text(encoding="utf-8")


def _bullets_after(text: str, heading: str) -> list[str]:
    """The items of the first list after the line starting with ``heading``, at its first item's depth (``*`` or
    ``-``; an item's continuation lines, e.g. a URL, are skipped)."""
    lines = text[text.index(heading):].splitlines()[1:]
    out, depth = [], None
    for line in lines:
        item = re.match(r"^(\s*)[*-]\s+(.*\S)\s*$", line)
        if item:
            indent = len(item.group(1))
            if depth is None:
                depth = indent
            if indent < depth:
                break
            if indent == depth:
                out.append(item.group(2))
        elif depth is not None and line.strip() and not line.startswith((" ", "\t", "http")):
            break
    return out


def _fields(text: str, heading: str) -> set[str]:
    """The backquoted field names that start the items of the list after ``heading``."""
    return {m.group(1) for b in _bullets_after(text, heading) if (m := re.match(r"`([A-Za-z_]+)`", b))}


def _example_keys(text: str, filename: str) -> list[str]:
    """The top-level keys of the docs' first example of ``filename``, in order."""
    example = text[text.index(f"Here's a basic example for `{filename}`"):]
    example = example[example.index("```"):][3:]
    example = example[:example.index("```")]
    return re.findall(r'^\s{2}"(\w+)":', example, flags=re.MULTILINE)


# --------------------------------------------------------------------------- accelerators, sessions

def test_accelerators_are_docs_kernels_md_list():
    documented = _bullets_after(_doc("kernels.md"), "Accelerators available as of")
    assert set(kaggle.ACCELERATORS) - {"None"} == set(documented)
    assert kaggle.DEFAULT_ACCELERATOR == "NvidiaTeslaT4"  # T4 x2, what competition kernels run on


def test_retired_accelerators_are_the_installed_clients_with_its_replacements():
    retired = kaggle_api_extended._RETIRED_ACCELERATORS  # the client warns about each on a push
    for shape, instead in kaggle.RETIRED_ACCELERATORS.items():
        assert shape.lower() in retired and f"({instead})" in retired[shape.lower()], shape
    assert {s for s in kaggle.ACCELERATORS if s.lower() in retired} == set(kaggle.RETIRED_ACCELERATORS)


def test_image_pinning_types_are_the_ones_the_client_accepts():
    assert kaggle.IMAGE_PINNING_TYPES == tuple(KaggleApi.valid_push_pinning_types)
    assert kaggle.DEFAULT_IMAGE_PINNING == "original"


def test_session_limits():
    assert kaggle.SESSION_S == 12 * 3600 and kaggle.COMPETITION_RUN_S == 9 * 3600
    assert kaggle.DEFAULT_TIMEOUT_S <= kaggle.COMPETITION_RUN_S


# --------------------------------------------------------------------------- licences, instance types

def test_model_licences_are_docs_models_metadata_md_list():
    assert list(kaggle.MODEL_LICENSES) == _bullets_after(_doc("models_metadata.md"), "### Licenses")
    assert "Gemma" not in " ".join(kaggle.MODEL_LICENSES)  # Google's Gemma terms are not among them


def test_dataset_licences_are_docs_datasets_metadata_md_list():
    documented = [re.match(r"`([^`]+)`", b).group(1) for b in _bullets_after(_doc("datasets_metadata.md"),
                                                                              "## Licenses")]
    assert list(kaggle.DATASET_LICENSES) == documented


def test_instance_types_are_kagglesdks_enum_as_the_client_looks_them_up():
    from kagglesdk.models.types.model_enums import ModelInstanceType

    api = KaggleApi()
    looked_up = {api.lookup_enum(ModelInstanceType, ModelInstanceType.MODEL_INSTANCE_TYPE_UNSPECIFIED, name)
                 for name in kaggle.INSTANCE_TYPES}
    assert looked_up == set(ModelInstanceType)
    with pytest.raises(KeyError):  # docs/models_metadata.md says "internal variant": the enum has no such member
        api.lookup_enum(ModelInstanceType, ModelInstanceType.MODEL_INSTANCE_TYPE_UNSPECIFIED, "InternalVariant")


# --------------------------------------------------------------------------- the metadata files, field by field

_META_NAMES = ("meta_data", "metadata", "meta")


@cache
def _client_functions() -> dict:
    tree = ast.parse(inspect.getsource(KaggleApi))
    return {n.name: n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)}


def _client_reads(*functions: str) -> set[str]:
    """The metadata keys the installed client's ``functions`` read (get_or_fail, get_or_default, get_bool,
    ``meta_data.get``, ``meta_data[...]``), found in its source."""
    nodes = _client_functions()
    keys = set()
    for name in functions:
        for node in ast.walk(nodes[name]):
            if isinstance(node, ast.Call):
                strings = [a.value for a in node.args if isinstance(a, ast.Constant) and isinstance(a.value, str)]
                on_meta = any(isinstance(a, ast.Name) and a.id in _META_NAMES for a in node.args) or (
                    isinstance(node.func, ast.Attribute) and isinstance(node.func.value, ast.Name)
                    and node.func.value.id in _META_NAMES)
                if on_meta and strings:
                    keys.add(strings[0])
            elif isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name) and \
                    node.value.id in _META_NAMES and isinstance(node.slice, ast.Constant):
                keys.add(node.slice.value)
    return keys


INSTANCE = slugs.ModelInstanceHandle.parse("alice/gemma2-arena-adapter/transformers/peft-lora-classifier")
WRITTEN = {  # each file as kagflow writes it, every optional key given
    "kernel": metadata.kernel_metadata("alice", "Gemma2 QLoRA arena train", "nb.ipynb",
                                       dataset_sources=["alice/kagflow-offline-wheels/3"],
                                       model_sources=["alice/base/transformers/inst/1"],
                                       competition_sources=["llm-classification-finetuning"], keywords=["gpu"]),
    "dataset": metadata.dataset_metadata("alice", "kagflow offline wheels", license_name="other",
                                         subtitle="Offline wheels for Kaggle notebooks", description="# wheels"),
    "model": metadata.model_metadata("alice", "Gemma2 arena adapter"),
    "instance": metadata.model_instance_metadata(
        INSTANCE, license_name="MIT", training_data=["https://www.kaggle.com/competitions/x"],
        model_instance_type="KaggleVariant", base_model_instance="alice/base/transformers/inst"),
}
# (client functions that read the file, docs file, the heading of its field list)
READERS = {
    "kernel": (("kernels_push",), "kernels_metadata.md", "We currently support the following metadata fields"),
    "dataset": (("dataset_create_new", "dataset_create_version"), "datasets_metadata.md",
                "* `kaggle datasets create`"),
    "model": (("model_create_new", "model_update"), "models_metadata.md",
              "We currently support the following metadata fields for models."),
    "instance": (("model_instance_create", "model_instance_update"), "models_metadata.md",
                 "We currently support the following metadata fields for model variations."),
}
FILES = {"kernel": metadata.KERNEL_METADATA, "dataset": metadata.DATASET_METADATA, "model": metadata.MODEL_METADATA,
         "instance": metadata.MODEL_INSTANCE_METADATA}
# what kagflow writes that the client does not read from the file, and why
NOT_READ = {
    "dataset": {"isPrivate": "kagflow passes it as the client's `public` argument (hub.datasets.push_dataset)"},
}
# documented or read fields kagflow leaves out, and why
LEFT_OUT = {
    "kernel": {"id_no": "the id (owner/slug) names the kernel", "docker_image": "the pinning type chooses it",
               "enable_tpu": "written (False unless a TPU machine_shape)"},
    "dataset": {"id_no": "the id names the dataset", "resources": "no per-file descriptions or schemas"},
    "model": {"licenseName": "documented for models but read only from the instance's file"},
    "instance": {},
}


@pytest.mark.parametrize("kind", sorted(WRITTEN))
def test_every_key_written_is_one_the_client_reads_and_the_docs_name(kind):
    functions, doc, heading = READERS[kind]
    text = _doc(doc)
    documented = _fields(text, heading) | set(_example_keys(text, FILES[kind]))
    read, written = _client_reads(*functions), set(WRITTEN[kind])
    ignored = written - read - set(NOT_READ.get(kind, {}))
    assert not ignored, f"{kind}: kagflow writes {sorted(ignored)}, which the installed client never reads"
    undocumented = written - documented - {"docker_image_pinning_type", "enable_tpu", "keywords", "isPrivate"}
    assert not undocumented, f"{kind}: kagflow writes {sorted(undocumented)}, which kaggle-cli's docs do not name"
    missing = (read | documented) - written - set(LEFT_OUT[kind])
    assert not missing, f"{kind}: the client reads or the docs name {sorted(missing)}, which kagflow never writes"


def test_the_instance_file_matches_docs_example_key_for_key():
    """docs/models_metadata.md's example model-instance-metadata.json: the same keys, in the same order."""
    assert _example_keys(_doc("models_metadata.md"), metadata.MODEL_INSTANCE_METADATA) == list(WRITTEN["instance"])


def test_values_are_ones_the_client_takes():
    instance = WRITTEN["instance"]
    assert instance["framework"] == "transformers" and instance["licenseName"] in kaggle.MODEL_LICENSES
    assert instance["modelInstanceType"] in kaggle.INSTANCE_TYPES
    assert WRITTEN["kernel"]["docker_image_pinning_type"] in KaggleApi.valid_push_pinning_types
    assert WRITTEN["dataset"]["licenses"] == [{"name": "other"}]
