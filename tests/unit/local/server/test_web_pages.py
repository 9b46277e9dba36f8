"""The local Kaggle's pages, rendered from a store the real official client filled (web_fixtures.build_site):
each page answers 200 text/html with what it should show, at the URLs the clients print; private things
are "not found" to another user and to nobody; what users wrote is escaped; unknown pages are HTML 404s
while API paths keep answering JSON."""

from __future__ import annotations

import html
import re
import time

import pytest
import requests
from web_fixtures import (
    ADAPTER,
    ADAPTER_INSTANCE,
    ALICE,
    BASE,
    BASE_INSTANCE,
    BOB,
    COMPETITION,
    INFER,
    INJECTION,
    KEYS,
    TRAIN,
    WHEELS,
    client,
    write_notebook_kernel,
)

from kagflow.hub.endpoint import Endpoint
from kagflow.local.server.web import CSP
from kagflow.rules import slugs

from local_fixtures import wait_kernel

PNG = b"\x89PNG\r\n\x1a\n"


def get(server, path: str, user: str | None = None, **kwargs) -> requests.Response:
    with requests.Session() as s:
        s.trust_env = False  # no proxy between us and 127.0.0.1
        return s.get(server.url + path, auth=(user, KEYS[user]) if user else None, timeout=30, **kwargs)


def page(server, path: str, user: str | None = None, status: int = 200) -> str:
    r = get(server, path, user)
    assert r.status_code == status, (path, r.status_code, r.text[:500])
    assert r.headers["Content-Type"] == "text/html; charset=utf-8", path
    assert r.headers["Content-Security-Policy"] == CSP and r.headers["X-Content-Type-Options"] == "nosniff"
    return r.text


def links(text: str, pattern: str) -> list[str]:
    return [html.unescape(m) for m in re.findall(r'(?:src|href)="(%s)"' % pattern, text)]


def test_index_lists_what_the_viewer_may_see(web_site):
    mine = page(web_site, "/", ALICE)
    for text in ("LLM Classification Finetuning", f"{ALICE}/{TRAIN}", f"{ALICE}/{INFER}", f"{BOB}/arena-baseline",
                 f"{ALICE}/{ADAPTER}", f"{ALICE}/{BASE}", f"{ALICE}/{WHEELS}", f"{BOB}/arena-extra-pairs",
                 "signed in as <b>alice</b>"):
        assert text in mine, text
    assert re.search(rf'/code/{ALICE}/{TRAIN}/versions/3">v3</a>.*?COMPLETE.*?NvidiaTeslaT4', mine, re.S)
    public = page(web_site, "/")
    assert f"{BOB}/arena-baseline" in public and f"{BOB}/arena-extra-pairs" in public
    for private in (TRAIN, INFER, ADAPTER, BASE, WHEELS):
        assert private not in public, private
    assert "kagflow local open" in public


def test_kernel_page_shows_versions_log_output_images_and_metrics(web_site):
    text = page(web_site, f"/code/{ALICE}/{TRAIN}", ALICE)
    for number in (1, 2, 3):
        assert f'/code/{ALICE}/{TRAIN}/versions/{number}">v{number}</a>' in text
    assert "<code>fold_idx=2</code> <code>lr=0.0001</code>" in text  # v3's parameters changed since v2
    assert "<code>fold_idx=1</code>" in text and "first version" in text
    assert "NvidiaTeslaT4" in text and "ran 0m" in text
    assert "step 40/40" in text and "fold 2 of 5" in text and 'class="stderr">warning: the tiny' in text
    for name in ("confusion_matrix.png", "loss_curve.png", "metrics.json", "val_predictions.csv",
                 "gemma2-adapter/adapter_config.json"):
        assert f"download>{name}</a>" in text, name
    assert "<th>log_loss</th><td>1.0161</td>" in text and "<th>macro_f1</th>" in text
    assert "<th>A_wins</th><th>B_wins</th><th>tie</th>" in text  # the confusion matrix as a table
    image = links(text, r'/files/[^"]+/confusion_matrix\.png')
    assert image and f'<img src="{html.escape(image[0])}"' in text
    got = get(web_site, image[0])  # through the signed download link and its access check
    assert got.status_code == 200 and got.content.startswith(PNG)
    curve = links(text, r'/files/[^"]+/loss_curve\.png')  # training's loss curve beside it, inline too
    assert curve and f'<img src="{html.escape(curve[0])}"' in text and 'alt="loss_curve.png"' in text
    assert get(web_site, curve[0]).content.startswith(PNG)
    assert f'/datasets/{ALICE}/{WHEELS}"' in text and f'/models/{ALICE}/{BASE}/transformers/{BASE_INSTANCE}/1"' in text
    first = page(web_site, f"/code/{ALICE}/{TRAIN}/versions/1", ALICE)
    assert "fold 0 of 5" in first and "fold 2 of 5" not in first
    v2 = web_site.store.one("SELECT v.id FROM kernel_versions v JOIN kernels k ON k.id = v.kernel_id WHERE k.slug=? "
                            "AND v.number=2", TRAIN)["id"]
    assert "fold 1 of 5" in page(web_site, f"/code/{ALICE}/{TRAIN}?scriptVersionId={v2}", ALICE)


def test_inference_kernel_page_shows_its_submissions(web_site):
    text = page(web_site, f"/code/{ALICE}/{INFER}", ALICE)
    scores = re.findall(r'/submissions#(\d+)">#\d+</a> ([0-9.]+)', text)
    assert len(scores) == 2 and all(0 < float(s) < 2 for _, s in scores)
    assert "rows predicted with tta=True" in text and "download>submission.csv</a>" in text


def test_model_page_shows_instances_versions_files_licence_and_base(web_site):
    for path in (f"/models/{ALICE}/{ADAPTER}", f"/models/{ALICE}/{ADAPTER}/transformers/{ADAPTER_INSTANCE}",
                 f"/models/{ALICE}/{ADAPTER}/Transformers/{ADAPTER_INSTANCE}/2"):
        text = page(web_site, path, ALICE)
        assert ADAPTER_INSTANCE in text and "Apache 2.0" in text
        assert f'href="/models/{ALICE}/{BASE}/transformers/{BASE_INSTANCE}"' in text  # the base model link
        assert "Files of version 2" in text and "fold 1" in text and "Initial version" in text
        assert f'/code/{ALICE}/{INFER}">' in text  # used by the inference notebook
    v1 = page(web_site, f"/models/{ALICE}/{ADAPTER}/transformers/{ADAPTER_INSTANCE}/1", ALICE)
    assert "Files of version 1" in v1
    file_link = links(v1, r"/files/[^\"]+/adapter_config\.json")[0]
    assert get(web_site, file_link).content == b'{"r": 16}'
    base = page(web_site, f"/models/{ALICE}/{BASE}/transformers/{BASE_INSTANCE}/1", ALICE)
    assert "config.json" in base and "model.safetensors" in base


def test_dataset_page_shows_versions_and_files(web_site):
    latest = page(web_site, f"/datasets/{ALICE}/{WHEELS}", ALICE)
    assert "bitsandbytes for the T4 image" in latest and "Files of version 2" in latest
    assert "bitsandbytes-0.45.0-py3-none-manylinux_2_24_x86_64.whl" in latest and "CC0-1.0" in latest
    first = page(web_site, f"/datasets/{ALICE}/{WHEELS}/versions/1", ALICE)
    assert "Files of version 1" in first and "bitsandbytes-0.45.0" not in first.split("Files of version 1")[1]
    assert f'/code/{ALICE}/{TRAIN}">' in latest  # used by


def test_competition_leaderboard_and_submissions(web_site):
    overview = page(web_site, f"/competitions/{COMPETITION}", ALICE)
    assert "You accepted the rules" in overview and "download>train.csv</a>" in overview
    assert "solution.csv" not in overview  # hidden, as on Kaggle
    board = page(web_site, f"/competitions/{COMPETITION}/leaderboard")  # public
    teams = re.findall(r'<td class="num">(\d+)</td><td>(\w+)</td><td class="num score">([0-9.]+)</td>', board)
    assert [t[1] for t in teams] == ["alice", "carol", "dave", "erin", "bob"], teams  # by best score
    assert [float(t[2]) for t in teams] == sorted(float(t[2]) for t in teams)
    mine = page(web_site, f"/competitions/{COMPETITION}/submissions", ALICE)
    for number in (1, 2):
        assert f'/code/{ALICE}/{INFER}/versions/{number}">{ALICE}/{INFER} v{number}</a>' in mine
    assert f"{ADAPTER} v2" in mine and 'class="badge best">best' in mine and "adapter v1" in mine
    assert re.search(r"Best public score: <b class=\"score\">" + teams[0][2], mine)
    bobs = page(web_site, f"/competitions/{COMPETITION}/submissions", BOB)
    assert "file bob-1.csv" in bobs and INFER not in bobs
    nobody = page(web_site, f"/competitions/{COMPETITION}/submissions", status=401)
    assert "kagflow local open" in nobody and INFER not in nobody


PRIVATE = (f"/code/{ALICE}/{TRAIN}", f"/code/{ALICE}/{TRAIN}/versions/2", f"/code/{ALICE}/{INFER}",
           f"/models/{ALICE}/{ADAPTER}", f"/models/{ALICE}/{ADAPTER}/transformers/{ADAPTER_INSTANCE}/1",
           f"/models/{ALICE}/{BASE}", f"/datasets/{ALICE}/{WHEELS}", f"/datasets/{ALICE}/{WHEELS}/versions/1")


@pytest.mark.parametrize("viewer", [None, BOB])
def test_private_pages_are_not_found_to_others(web_site, viewer):
    for path in PRIVATE:
        text = page(web_site, path, viewer, status=404)
        assert "not found" in text and "Gemma2" not in text, path
    text = page(web_site, f"/code/{BOB}/arena-baseline", viewer)  # public: anyone
    assert "a public baseline" in text
    assert page(web_site, f"/datasets/{BOB}/arena-extra-pairs", viewer)
    assert page(web_site, f"/competitions/{COMPETITION}/leaderboard", viewer)


def test_the_urls_clients_print_are_served(web_site):
    """What the server's ``url`` fields, kagflow's handles (Endpoint.link) and kagglehub's to_url() name."""
    alice = client(web_site.url, ALICE)
    adapter = f"{ALICE}/{ADAPTER}/transformers/{ADAPTER_INSTANCE}"
    urls = [alice.model_get(f"{ALICE}/{ADAPTER}").url, alice.model_instance_get(adapter).url,
            *[v.url for v in alice.model_instance_versions_list(adapter).version_list.versions],
            *[c.url for c in alice.competitions_list().competitions],
            *[s.url for s in alice.competition_submissions(COMPETITION)],
            alice.dataset_list(user=ALICE)[0].url]
    target = Endpoint("local", web_site.url, ALICE)
    urls += [target.link(h) for h in (slugs.KernelHandle(ALICE, TRAIN), slugs.DatasetHandle(ALICE, WHEELS),
                                      slugs.ModelHandle(ALICE, ADAPTER),
                                      slugs.ModelHandle(ALICE, ADAPTER).instance("transformers", ADAPTER_INSTANCE),
                                      slugs.ModelInstanceVersionHandle.parse(f"{adapter}/2"))]
    urls += [f"{web_site.url}/code/{ALICE}/{TRAIN}/versions/2", f"{web_site.url}/datasets/{ALICE}/{WHEELS}/versions/2"]
    assert len(urls) >= 13
    for url in urls:
        assert url.startswith(web_site.url + "/"), url
        page(web_site, url[len(web_site.url):].split("#")[0], ALICE)


def test_what_users_wrote_is_escaped(web_site):
    for path in (f"/code/{BOB}/arena-baseline", f"/datasets/{BOB}/arena-extra-pairs"):
        text = page(web_site, path)
        assert INJECTION not in text and "<script>alert" not in text and "<img src=x" not in text
        assert INJECTION in html.unescape(text), path  # shown, as text


def test_unknown_pages_are_html_and_api_paths_json(web_site):
    for path in ("/nope", f"/code/{ALICE}", f"/code/{ALICE}/{TRAIN}/versions/9", "/competitions/no-such-one",
                 f"/models/{ALICE}/{ADAPTER}/transformers/no-such-instance", "/static/kagflow-local/nope.js"):
        assert "404" in page(web_site, path, ALICE, status=404), path
    api = get(web_site, "/api/v1/no/such")
    assert api.status_code == 404 and api.headers["Content-Type"] == "application/json" and api.json()["code"] == 404
    post = requests.post(web_site.url + "/api/v1/kernels.KernelsApiService/NoSuchMethod", json={}, timeout=30)
    assert post.status_code == 404 and post.headers["Content-Type"] == "application/json"
    assert client(web_site.url, ALICE).kernels_status(f"{ALICE}/{TRAIN}").status.name == "COMPLETE"  # the API works


def test_page_of_a_running_kernel_follows_its_log(web_site, tmp_path):
    alice = client(web_site.url, ALICE)
    alice.kernels_push(str(write_notebook_kernel(tmp_path / "k", ALICE, "slow-running-notebook", "Slow notebook",
                                                 ["import time\nprint('started', flush=True)\ntime.sleep(600)"])))
    ref = f"{ALICE}/slow-running-notebook"
    try:
        text = ""
        for _ in range(600):
            text = page(web_site, f"/code/{ref}", ALICE)
            if "started" in text:
                break
            time.sleep(0.2)
        assert "started" in text and 'class="live">live' in text and "The output appears when the run ends" in text
        assert f'data-stream="/api/v1/kernels/logs/stream/{ref}?versionLabel=v1"' in text
        assert '<script src="/static/kagflow-local/live-log.js" defer></script>' in text
    finally:
        assert web_site.cancel_kernel(ALICE, "slow-running-notebook")
    assert wait_kernel(alice, ref).status.name == "CANCEL_ACKNOWLEDGED"
    assert "The output appears" not in page(web_site, f"/code/{ref}", ALICE)
