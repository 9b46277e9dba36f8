"""The four metadata writers, and the official client's own pre-request checks on every folder."""

import json

import nbformat
import pytest

from kagflow.errors import NamingError
from kagflow.hub.client import EndpointKaggleApi
from kagflow.rules import metadata, slugs


class ReachedNetwork(Exception):
    """Raised where the official client, its checks passed, would open a connection."""


@pytest.fixture
def offline_api(monkeypatch):
    api = EndpointKaggleApi("http://127.0.0.1:9")
    api.config_values = {api.CONFIG_NAME_USER: "alice", api.CONFIG_NAME_KEY: "x"}

    def no_network(*a, **k):
        raise ReachedNetwork()

    monkeypatch.setattr(api, "build_kaggle_client", no_network)
    monkeypatch.setattr(api, "dataset_status", no_network)
    monkeypatch.setattr(api, "upload_files", no_network)
    return api


def _notebook(path):
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [nbformat.v4.new_code_cell("print('hi')")]
    nbformat.write(nb, path)


def test_kernel_metadata_is_explicit_and_consistent():
    data = metadata.kernel_metadata(
        "alice", "Gemma2 QLoRA arena infer", "nb.ipynb",
        dataset_sources=["alice/kagflow-offline-wheels"],
        model_sources=["alice/gemma-2-9b-4bit-base/Transformers/gemma2-9b-4bit-base/2"],
        competition_sources=["llm-classification-finetuning"])
    assert data["id"] == "alice/gemma2-qlora-arena-infer"
    assert slugs.slugify(data["title"]) == data["id"].split("/")[1]
    assert data["enable_internet"] is False and data["is_private"] is True and data["enable_gpu"] is True
    assert data["model_sources"] == ["alice/gemma-2-9b-4bit-base/transformers/gemma2-9b-4bit-base/2"]
    assert data["machine_shape"] == "NvidiaTeslaT4"


def test_kernel_metadata_cpu_and_tpu():
    cpu = metadata.kernel_metadata("alice", "cpu only kernel", "x.ipynb", accelerator="None")
    assert cpu["enable_gpu"] is False and "machine_shape" not in cpu
    tpu = metadata.kernel_metadata("alice", "tpu kernel here", "x.ipynb", accelerator="TpuV6E8")
    assert tpu["enable_tpu"] is True and tpu["enable_gpu"] is False


def test_kernel_metadata_rejects_bad_input():
    with pytest.raises(NamingError):
        metadata.kernel_metadata("alice", "Gem", "x.ipynb")
    with pytest.raises(NamingError, match="accelerator"):
        metadata.kernel_metadata("alice", "Gemma kernel", "x.ipynb", accelerator="K80")
    with pytest.raises(NamingError, match="no version"):
        metadata.kernel_metadata("alice", "Gemma kernel", "x.ipynb", model_sources=["a/b/transformers/c"])


def test_official_client_accepts_kernel_folder(tmp_path, offline_api):
    data = metadata.kernel_metadata(
        "alice", "Gemma2 QLoRA arena train", "train.ipynb", dataset_sources=["alice/kagflow-offline-wheels"],
        model_sources=["alice/gemma-2-9b-4bit-base/transformers/base/1"],
        competition_sources=["llm-classification-finetuning"])
    metadata.write_metadata(tmp_path, metadata.KERNEL_METADATA, data)
    _notebook(tmp_path / "train.ipynb")
    with pytest.raises(ReachedNetwork):
        offline_api.kernels_push(str(tmp_path))


def test_official_client_rejects_a_broken_kernel_folder(tmp_path, offline_api):
    """The check harness can fail: a missing code file stops the client before the network."""
    data = metadata.kernel_metadata("alice", "Gemma2 QLoRA arena train", "missing.ipynb")
    metadata.write_metadata(tmp_path, metadata.KERNEL_METADATA, data)
    with pytest.raises(ValueError, match="Source file not found"):
        offline_api.kernels_push(str(tmp_path))


def test_title_slug_warning_never_printed(tmp_path, offline_api, capsys):
    metadata.write_metadata(tmp_path, metadata.KERNEL_METADATA,
                            metadata.kernel_metadata("alice", "Ünïcode Gemma_Notebook v2", "nb.ipynb"))
    _notebook(tmp_path / "nb.ipynb")
    with pytest.raises(ReachedNetwork):
        offline_api.kernels_push(str(tmp_path))
    assert "does not resolve to the specified id" not in capsys.readouterr().out


def test_official_client_accepts_dataset_folder(tmp_path, offline_api):
    metadata.write_metadata(tmp_path, metadata.DATASET_METADATA,
                            metadata.dataset_metadata("alice", "kagflow offline wheels", license_name="other"))
    (tmp_path / "a.whl").write_bytes(b"x")
    with pytest.raises(ReachedNetwork):
        offline_api.dataset_create_new(str(tmp_path))


def test_dataset_metadata_rules():
    data = metadata.dataset_metadata("alice", "pip wheels bnb", is_private=True, license_name="CC0-1.0")
    assert data["id"] == "alice/pip-wheels-bnb" and data["isPrivate"] is True
    assert data["licenses"] == [{"name": "CC0-1.0"}]
    with pytest.raises(NamingError, match="20..80"):
        metadata.dataset_metadata("alice", "pip wheels bnb", subtitle="short", license_name="other")
    with pytest.raises(NamingError, match="dataset licence 'CC0' is not one Kaggle accepts") as e:
        metadata.dataset_metadata("alice", "pip wheels bnb", license_name="CC0")
    assert "CC0-1.0" in e.value.hint


def test_official_client_accepts_model_folders(tmp_path, offline_api):
    model_dir = tmp_path / "gemma"
    metadata.write_metadata(model_dir, metadata.MODEL_METADATA,
                            metadata.model_metadata("alice", "Gemma2 arena adapter"))
    with pytest.raises(ReachedNetwork):
        offline_api.model_create_new(str(model_dir))
    inst = slugs.ModelInstanceHandle.parse("alice/gemma2-arena-adapter/Transformers/peft-lora-classifier")
    data = metadata.model_instance_metadata(inst, license_name="MIT")
    assert data["framework"] == "transformers"
    metadata.write_metadata(model_dir / "inst", metadata.MODEL_INSTANCE_METADATA, data)
    (model_dir / "inst" / "adapter_config.json").write_text("{}")
    with pytest.raises(ReachedNetwork):
        offline_api.model_instance_create(str(model_dir / "inst"))


def test_model_metadata_slug_matches_title():
    data = metadata.model_metadata("alice", "Gemma 2 9B 4bit base")
    assert data["slug"] == "gemma-2-9b-4bit-base" == slugs.slugify(data["title"])
    assert isinstance(data["isPrivate"], bool)


def test_write_metadata_is_atomic_and_pretty(tmp_path):
    path = metadata.write_metadata(tmp_path / "sub", "x.json", {"b": 1, "a": "é"})
    assert json.loads(path.read_text(encoding="utf-8")) == {"b": 1, "a": "é"}
    assert "é" in path.read_text(encoding="utf-8")
    assert [p.name for p in path.parent.iterdir()] == ["x.json"]
