"""The gateway against the local Kaggle through the official client: publish, push, wait, pull,
submit; with 30% of requests failing, every command succeeds and creates exactly one version."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kagflow.hub import competitions, datasets, kernels, models
from kagflow.local.server.faults import FaultRule, Faults
from kagflow.rules import metadata, slugs
from kagflow.workflow.model import publish_files

from local_fixtures import *  # noqa: F401,F403
from local_fixtures import COMPETITION, USER, write_kernel

FLAKY = FaultRule(rate_429=0.15, rate_500=0.15, retry_after=0)
SEED = int(__import__("os").environ.get("KAGFLOW_FAULT_SEED", "0"))


def _model_files(folder: Path, payload: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps({"model_type": "gemma2"}))
    (folder / "model.safetensors").write_text(payload * 1000)
    return folder


def _versions(gw, cfg, which="base_model"):
    return models.latest_version(gw, cfg.instance_handle(which))


def test_publish_creates_model_instance_then_versions_and_skips_unchanged(gw, cfg, tmp_path):
    files = _model_files(tmp_path / "base", "a")
    first = publish_files(gw, cfg, "base_model", files, license_name="MIT")
    assert first.uploaded and first.handle.version == 1
    assert first.source == "alice/gemma-2-9b-4bit-base/transformers/gemma2-9b-4bit-base/1"
    meta_dir = cfg.root / "models" / "gemma-2-9b-4bit-base"
    assert metadata.read_metadata(meta_dir / "model-metadata.json")["slug"] == "gemma-2-9b-4bit-base"
    inst_meta = metadata.read_metadata(meta_dir / "gemma2-9b-4bit-base" / "model-instance-metadata.json")
    assert inst_meta["framework"] == "transformers"

    again = publish_files(gw, cfg, "base_model", files, license_name="MIT")
    assert not again.uploaded and again.handle.version == 1

    (files / "model.safetensors").write_text("b" * 1000)
    second = publish_files(gw, cfg, "base_model", files, license_name="MIT")
    assert second.uploaded and second.handle.version == 2
    assert _versions(gw, cfg) == 2


def test_publish_with_flaky_server_creates_exactly_one_version(gw, cfg, tmp_path, server):
    server.faults = Faults({"*": FLAKY, "upload": FLAKY}, seed=3 + SEED)
    files = _model_files(tmp_path / "base", "z")
    result = publish_files(gw, cfg, "base_model", files, license_name="MIT")
    again = publish_files(gw, cfg, "base_model", files, license_name="MIT")
    server.faults = None
    assert result.handle.version == 1 and not again.uploaded
    assert _versions(gw, cfg) == 1


def test_crash_after_upload_rerun_creates_no_duplicate(gw, cfg, tmp_path, server):
    """The create request lands but its answer is lost (dropped): the retry looks first."""
    server.faults = Faults({"CreateModelInstanceVersion": FaultRule(rate_drop=1.0, limit=1)}, seed=0)
    files = _model_files(tmp_path / "base", "c")
    publish_files(gw, cfg, "base_model", files, license_name="MIT")
    (files / "model.safetensors").write_text("d" * 1000)
    result = publish_files(gw, cfg, "base_model", files, license_name="MIT")
    server.faults = None
    assert result.handle.version == 2 and _versions(gw, cfg) == 2


def test_dataset_push_create_skip_version(gw, tmp_path, server):
    folder = tmp_path / "wheels"
    folder.mkdir()
    (folder / "a-1.0-py3-none-any.whl").write_bytes(b"wheel-bytes")
    metadata.write_metadata(folder, metadata.DATASET_METADATA,
                            metadata.dataset_metadata(USER, "kagflow offline wheels", license_name="other"))
    server.faults = Faults({"*": FLAKY, "upload": FLAKY}, seed=5 + SEED)
    first = datasets.push_dataset(gw, folder)
    assert first.uploaded and first.created
    assert not datasets.push_dataset(gw, folder).uploaded
    (folder / "b-1.0-py3-none-any.whl").write_bytes(b"more")
    second = datasets.push_dataset(gw, folder)
    server.faults = None
    assert second.uploaded and not second.created
    files = gw.api.dataset_list_files(f"{USER}/kagflow-offline-wheels").dataset_files
    assert {f.name for f in files} >= {"a-1.0-py3-none-any.whl", "b-1.0-py3-none-any.whl"}


def test_dataset_push_records_the_version_it_made(gw, tmp_path):
    folder = tmp_path / "wheels"
    folder.mkdir()
    (folder / "a-1.0-py3-none-any.whl").write_bytes(b"one")
    metadata.write_metadata(folder, metadata.DATASET_METADATA,
                            metadata.dataset_metadata(USER, "kagflow offline wheels", license_name="other"))
    assert datasets.push_dataset(gw, folder).version == 1
    assert datasets.push_dataset(gw, folder).version == 1  # unchanged: the version holding these files
    (folder / "a-1.0-py3-none-any.whl").write_bytes(b"two")
    assert datasets.push_dataset(gw, folder).version == 2


def test_sub_folders_go_up_as_kaggle_unpacks_them_never_dropped(gw, cfg, tmp_path):
    """A sub-folder is uploaded as one archive Kaggle unpacks back into the folder; the client's ignore patterns
    (.cache/ of a Hugging Face download, .git/) are left out, and a change below a sub-folder is a new version."""
    folder = tmp_path / "wheels"
    (folder / "extra" / "deep").mkdir(parents=True)
    (folder / ".cache" / "huggingface").mkdir(parents=True)
    (folder / "a-1.0-py3-none-any.whl").write_bytes(b"wheel")
    (folder / "extra" / "notes.txt").write_text("sub")
    (folder / "extra" / "deep" / "x.bin").write_bytes(b"deeper")
    (folder / ".cache" / "huggingface" / "lock").write_text("never uploaded")
    metadata.write_metadata(folder, metadata.DATASET_METADATA,
                            metadata.dataset_metadata(USER, "kagflow offline wheels", license_name="other"))
    logged = []
    gw.log = logged.append
    first = datasets.push_dataset(gw, folder)
    files = {f.name for f in gw.api.dataset_list_files(f"{USER}/kagflow-offline-wheels").dataset_files}
    assert {"a-1.0-py3-none-any.whl", "extra/notes.txt", "extra/deep/x.bin"} <= files
    assert not any(".cache" in name for name in files) and first.files == 3
    assert any("1 sub-folder(s) (extra; 2 files)" in line for line in logged)
    (folder / "extra" / "deep" / "x.bin").write_bytes(b"changed")
    assert datasets.push_dataset(gw, folder).version == 2

    weights = _model_files(tmp_path / "base", "w")
    (weights / "original").mkdir()
    (weights / "original" / "params.json").write_text("{}")
    published = publish_files(gw, cfg, "base_model", weights, license_name="MIT")
    listed = gw.api.model_instance_version_files(published.source, page_size=100).files
    assert "original/params.json" in {f.name for f in listed}


def test_kernel_push_wait_pull_and_no_duplicate_push(gw, tmp_path, server):
    folder = write_kernel(tmp_path / "k", "hello-kernel",
                          "open('result.txt','w').write('42'); print('done')",
                          "import json; json.dump({'accuracy': 0.9}, open('metrics.json','w'))")
    server.faults = Faults({"*": FLAKY}, seed=11 + SEED)
    pushed = kernels.push_kernel(gw, folder)
    handle = slugs.KernelHandle.parse(f"{USER}/hello-kernel")
    status = kernels.wait_kernel(gw, handle, pushed.version, timeout=120)
    again = kernels.push_kernel(gw, folder)
    server.faults = None
    assert status.status == "COMPLETE"
    assert again.version == pushed.version == 1 and not again.pushed
    dest, pulled = kernels.pull_output(gw, handle, 1, folder)
    assert pulled and (dest / "result.txt").read_text() == "42"
    assert "done" in kernels.log_text(dest / "hello-kernel.log")
    (dest / "result.txt").write_text("mine")
    _, pulled_again = kernels.pull_output(gw, handle, 1, folder)
    assert not pulled_again and (dest / "result.txt").read_text() == "mine"  # never overwritten


def test_submit_kernel_once_and_read_score(gw, tmp_path, server):
    folder = write_kernel(
        tmp_path / "inf", "infer-kernel",
        "import pandas as pd, glob\n"
        "found = glob.glob('/kaggle/input/**/test.csv', recursive=True)\n"
        "t = pd.read_csv(found[0]) if found else None\n"
        "import os\n"
        "root = os.environ.get('KAGFLOW_INPUT_ROOT', '/kaggle/input')\n"
        "t = pd.read_csv(glob.glob(root + '/**/test.csv', recursive=True)[0])\n"
        "pd.DataFrame({'id': t.id, 'winner_model_a': 0.5, 'winner_model_b': 0.3, 'winner_tie': 0.2})"
        ".to_csv('submission.csv', index=False)",
        competition_sources=[COMPETITION])
    pushed = kernels.push_kernel(gw, folder)
    assert kernels.wait_kernel(gw, pushed.handle, pushed.version, timeout=120).status == "COMPLETE"
    server.faults = Faults({"*": FLAKY}, seed=2 + SEED)
    sub = competitions.submit_kernel(gw, COMPETITION, pushed.handle, pushed.version)
    same = competitions.submit_kernel(gw, COMPETITION, pushed.handle, pushed.version)
    server.faults = None
    assert same.ref == sub.ref
    done = competitions.wait_score(gw, COMPETITION, sub.ref, timeout=60)
    assert done.status == "COMPLETE" and done.public_score is not None and done.public_score > 0
    tagged = [s for s in competitions.list_submissions(gw, COMPETITION) if "kagflow" in s.description]
    assert len(tagged) == 1


def test_normalise_pulled_sources():
    assert kernels.normalise_source("dataset", "datasets/alice/pip-wheels-bnb") == "alice/pip-wheels-bnb"
    assert kernels.normalise_source("model", "models/google/gemma-2/Transformers/gemma-2-9b-it/2") == \
        "google/gemma-2/transformers/gemma-2-9b-it/2"
    assert kernels.normalise_source("competition", "competitions/llm-classification-finetuning") == \
        "llm-classification-finetuning"
    assert kernels.normalise_source("kernel", "https://www.kaggle.com/code/emiz6413/training-gemma") == \
        "emiz6413/training-gemma"


@pytest.mark.parametrize("raw, entries, text", [
    ('[{"stream_name": "stdout", "time": 0.5, "data": "a\\n"}, 7, {"stream_name": "stderr", "time": 2, "data": "b"}]',
     [{"stream_name": "stdout", "time": 0.5, "data": "a\n"}, {"stream_name": "stderr", "time": 2, "data": "b"}],
     "a\nb"),                                                       # Kaggle's JSON list (non-objects skipped)
    ("plain text\nlog\n", [{"data": "plain text\nlog\n"}], "plain text\nlog\n"),  # a plain text log
    ('{"data": "x", "time": 3}', [{"data": '{"data": "x", "time": 3}'}], '{"data": "x", "time": 3}'),  # JSON, no list
    ("[not json", [{"data": "[not json"}], "[not json"),           # junk
    ("", [], ""),                                                   # empty
])
def test_log_parser_both_shapes(tmp_path, raw, entries, text):
    """log_entries is the one parser of a kernel log; log_text reads a pulled log file through it."""
    assert kernels.log_entries(raw) == entries
    (tmp_path / "k.log").write_text(raw, encoding="utf-8")
    assert kernels.log_text(tmp_path / "k.log") == text
