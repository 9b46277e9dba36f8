"""List calls honour the official client's filters and pages (never "everything"), with opaque page tokens."""

from __future__ import annotations

import json

import pytest

from local_fixtures import *  # noqa: F401,F403
from local_fixtures import USER, wait_kernel, write_dataset, write_kernel


def _dataset(api, tmp_path, slug, files, **meta):
    folder = write_dataset(tmp_path / slug, slug, files)
    data = json.loads((folder / "dataset-metadata.json").read_text())
    data.update(meta)
    (folder / "dataset-metadata.json").write_text(json.dumps(data))
    assert not api.dataset_create_new(str(folder), public=True, quiet=True).error


def _refs(datasets):
    return sorted(d.ref.split("/")[1] for d in datasets)


def test_dataset_list_filters(api, tmp_path):
    _dataset(api, tmp_path, "csv-cc-small", {"a.csv": "1\n"}, keywords=["nlp"])
    _dataset(api, tmp_path, "json-gpl-data", {"b.json": "{}" + " " * 500}, licenses=[{"name": "GPL-2.0"}])
    _dataset(api, tmp_path, "parquet-other", {"c.parquet": "PAR1"}, licenses=[{"name": "other"}])
    everything = ["csv-cc-small", "json-gpl-data", "parquet-other"]
    assert _refs(api.dataset_list()) == everything
    assert _refs(api.dataset_list(file_type="csv")) == ["csv-cc-small"]
    assert _refs(api.dataset_list(file_type="json")) == ["json-gpl-data"]
    assert _refs(api.dataset_list(file_type="bigQuery")) == []  # BigQuery datasets are Kaggle's own
    assert _refs(api.dataset_list(license_name="cc")) == ["csv-cc-small"]
    assert _refs(api.dataset_list(license_name="gpl")) == ["json-gpl-data"]
    assert _refs(api.dataset_list(license_name="other")) == ["parquet-other"]
    assert _refs(api.dataset_list(tag_ids="nlp")) == ["csv-cc-small"]
    assert _refs(api.dataset_list(tag_ids="nlp,vision")) == []
    assert _refs(api.dataset_list(min_size=100)) == ["json-gpl-data"]
    assert _refs(api.dataset_list(max_size=100)) == ["csv-cc-small", "parquet-other"]
    assert _refs(api.dataset_list(search="parquet")) == ["parquet-other"]
    assert _refs(api.dataset_list(user="bob")) == []
    assert _refs(api.dataset_list(mine=True)) == everything
    assert [d.ref.split("/")[1] for d in api.dataset_list(sort_by="published")] == everything[::-1]
    assert _refs(api.dataset_list(page=1)) == everything and api.dataset_list(page=2) == []  # 20 a page


def test_dataset_filters_the_local_kaggle_cannot_answer_are_refused(server):
    import requests

    from local_fixtures import KEY
    resp = requests.post(f"{server.url}/api/v1/datasets.DatasetApiService/ListDatasets",
                         json={"group": "DATASET_SELECTION_GROUP_UPVOTED"}, auth=(USER, KEY), timeout=10)
    assert resp.status_code == 400 and "votes" in resp.json()["message"]


def test_page_tokens_are_opaque_and_junk_reads_as_the_first_page(api, tmp_path):
    """kaggle-cli's test_commands.sh pages with --page-token=abcd on Kaggle; tokens the server issued page on."""
    _dataset(api, tmp_path, "many-files", {f"f{i}.csv": f"{i}\n" for i in range(5)})
    first = api.dataset_list_files(f"{USER}/many-files", page_size=2)
    assert [f.name for f in first.files] == ["f0.csv", "f1.csv"] and not first.next_page_token.isdigit()
    second = api.dataset_list_files(f"{USER}/many-files", page_size=2, page_token=first.next_page_token)
    assert [f.name for f in second.files] == ["f2.csv", "f3.csv"]
    junk = api.dataset_list_files(f"{USER}/many-files", page_size=2, page_token="abcd")
    assert [f.name for f in junk.files] == ["f0.csv", "f1.csv"]


def test_kernel_list_filters_and_pages(api, tmp_path):
    for slug, kind in (("first-notebook", "notebook"), ("second-script", "script"), ("third-notebook", "notebook")):
        folder = write_kernel(tmp_path / slug, slug, "open('out.csv', 'w').write('x')" if kind == "notebook" else "")
        if kind == "script":
            (folder / "script.py").write_text("print(1)\n")
            meta = json.loads((folder / "kernel-metadata.json").read_text())
            meta.update(code_file="script.py", kernel_type="script")
            (folder / "kernel-metadata.json").write_text(json.dumps(meta))
        api.kernels_push(str(folder))
        wait_kernel(api, f"{USER}/{slug}")
    slugs_of = lambda kernels: sorted(k.ref.split("/")[1] for k in kernels)  # noqa: E731
    assert slugs_of(api.kernels_list(mine=True)) == ["first-notebook", "second-script", "third-notebook"]
    assert slugs_of(api.kernels_list(mine=True, kernel_type="script")) == ["second-script"]
    assert slugs_of(api.kernels_list(mine=True, language="r")) == []
    assert slugs_of(api.kernels_list(mine=True, output_type="data")) == ["first-notebook", "third-notebook"]
    assert slugs_of(api.kernels_list(parent_kernel=f"{USER}/first-notebook")) == []  # the API cannot fork
    newest = [k.ref.split("/")[1] for k in api.kernels_list(mine=True, sort_by="dateCreated")]
    assert newest == ["third-notebook", "second-script", "first-notebook"]
    assert [k.ref.split("/")[1] for k in api.kernels_list(mine=True, sort_by="dateCreated", page=2, page_size=2)] \
        == ["first-notebook"]


@pytest.mark.parametrize("route,body", [
    ("competitions.CompetitionApiService/ListDataFiles", {"competitionName": "llm-classification-local"}),
    ("models.ModelApiService/ListModels", {}),
])
def test_junk_page_tokens_are_never_a_400(server, route, body):
    import requests

    from local_fixtures import KEY
    resp = requests.post(f"{server.url}/api/v1/{route}", json={**body, "pageToken": "abcd", "pageSize": 3},
                         auth=(USER, KEY), timeout=10)
    assert resp.status_code == 200, resp.text
