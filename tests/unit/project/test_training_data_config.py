"""[train] training data keys in kagflow.toml: typed, checked by `kagflow check` with the key and the fix, local
extra files' headers read before any upload, their datasets mounted by the train kernel."""

import json

import pytest

from kagflow.errors import ConfigError
from kagflow.project.config import load_config
from kagflow.project.edit import set_value
from kagflow.project.sources import resolve_sources
from kagflow.workflow.check import check_project

from local_fixtures import *  # noqa: F401,F403  (the local Kaggle: server)

LMSYS_HEADER = "id,prompt,response_a,response_b,winner_model_a,winner_model_b,winner_tie\n"


def problems(path, key):
    return [p for p in check_project(load_config(path)) if key in p.field or key in p.message]


def test_defaults_are_off_and_check_clean(project):
    t = load_config(project).train
    assert (t.extra_train_files, t.swap_augmentation, t.soft_labels, t.pseudo_label_files) == ((), 0.0, False, ())
    assert not problems(project, "swap_augmentation") and not problems(project, "extra_train_files")


@pytest.mark.parametrize("key, value, expect", [
    ("swap_augmentation", 1.5, "is not a probability"),
    ("soft_label_columns", ["t_a", "t_b", "t_tie"], "set soft_labels = true"),
    ("extra_train_files", ["nope.csv"], "neither a local file nor owner/slug/file.csv"),
    ("pseudo_label_files", ["alice/preds"], "neither a local file nor owner/slug/file.csv"),
])
def test_bad_values_are_refused_with_the_fix(project, key, value, expect):
    set_value(project, "train", key, value)
    found = problems(project, key)
    assert found and expect in found[0].message + found[0].fix, found


def test_swap_augmentation_needs_swap_columns(project):
    set_value(project, "train", "swap_augmentation", 0.5)
    assert not problems(project, "swap_augmentation")
    set_value(project, "data", "swap_columns", [])
    found = problems(project, "swap_augmentation")
    assert found and "has none" in found[0].message and "swap_columns" in found[0].fix


def test_soft_label_columns_one_per_label(project):
    set_value(project, "train", "soft_labels", True)
    set_value(project, "train", "soft_label_columns", ["t_a", "t_b"])
    found = problems(project, "soft_label_columns")
    assert found and "[data] has 3 labels" in found[0].message


def test_a_wrong_type_is_refused_on_load(project):
    set_value(project, "train", "swap_augmentation", "often")
    with pytest.raises(ConfigError, match="swap_augmentation"):
        load_config(project)


def test_extra_files_mount_their_datasets_and_render_as_dataset_refs(project):
    folder = project.parent / "extra-data"
    folder.mkdir()
    (folder / "dataset-metadata.json").write_text(json.dumps({"id": "alice/extra-rows", "title": "extra rows"}))
    (folder / "more.csv").write_text(LMSYS_HEADER + '1,"[""p""]","[""a""]","[""b""]",1,0,0\n')
    set_value(project, "train", "extra_train_files", ["extra-data/more.csv", "bob/arena-33k/part/rows.csv"])
    set_value(project, "train", "pseudo_label_files", ["carol/infer-out/submission.csv"])
    config = load_config(project)
    assert not problems(project, "extra_train_files")
    assert config.recipe("train", stand_in=False)["extra_train_files"] == ["alice/extra-rows/more.csv",
                                                                           "bob/arena-33k/part/rows.csv"]
    datasets = resolve_sources(config, "train").dataset_sources
    assert {"alice/extra-rows", "bob/arena-33k", "carol/infer-out"} <= set(datasets)
    assert "alice/extra-rows" not in resolve_sources(config, "infer").dataset_sources


def test_a_local_extra_file_missing_a_column_is_refused_before_upload(project):
    folder = project.parent / "extra-data"
    folder.mkdir()
    (folder / "dataset-metadata.json").write_text(json.dumps({"id": "alice/extra-rows"}))
    (folder / "more.csv").write_text("id,prompt,response_a,winner_model_a,winner_model_b,winner_tie\n")
    set_value(project, "train", "extra_train_files", ["extra-data/more.csv"])
    found = [p for p in check_project(load_config(project)) if "more.csv" in p.file]
    assert found and "missing columns ['response_b']" in found[0].message
    (project.parent / "loose.csv").write_text(LMSYS_HEADER)
    set_value(project, "train", "extra_train_files", ["loose.csv"])
    found = problems(project, "extra_train_files")
    assert found and "outside any dataset folder" in found[0].message and "kaggle datasets create" in found[0].fix


def test_a_dataset_made_with_the_client_on_the_local_kaggle_feeds_the_train_kernel(tmp_path, server, monkeypatch):
    """The rehearsal's chain short of a notebook run: the user's local dataset folder, created on the local Kaggle
    with the official client, is checked, mounted by the train kernel (its sources) and found under the input root
    where a run mounts it (/kaggle/input/datasets/owner/slug), its rows read in [data]'s schema."""
    from kagflow.classifier.extra import load_extra
    from kagflow.classifier.paths import find_dataset_file
    from kagflow.hub.client import build_api
    from kagflow.project.init import init_project

    from local_fixtures import USER, write_dataset

    proj = init_project(tmp_path / "proj", username=USER)
    rows = LMSYS_HEADER + '1,"[""p""]","[""a""]","[""b""]",1,0,0\n2,"[""q""]","[""c""]","[""d""]",0,0,1\n'
    folder = write_dataset(proj.parent / "extra", "extra-rows", {"rows.csv": rows})
    monkeypatch.setenv("KAGGLE_USERNAME", USER)
    api = build_api(server.url)
    api.dataset_create_new(str(folder), quiet=True, public=False)
    set_value(proj, "train", "extra_train_files", ["extra/rows.csv"])
    config = load_config(proj)
    assert not [p for p in check_project(config) if "extra" in p.field or "rows.csv" in p.file]
    assert f"{USER}/extra-rows" in resolve_sources(config, "train").dataset_sources
    ref = config.recipe("train", stand_in=False)["extra_train_files"][0]
    mount = tmp_path / "input" / "datasets" / USER / "extra-rows"
    api.dataset_download_files(f"{USER}/extra-rows", path=str(mount), unzip=True, quiet=True)
    frame = load_extra([find_dataset_file(ref, root=tmp_path / "input")], config.data.task())
    assert frame["id"].tolist() == ["1", "2"] and frame["label"].tolist() == [0, 2]
