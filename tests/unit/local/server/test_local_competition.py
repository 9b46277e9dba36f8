"""The local competition's scorer: Kaggle's checks in Kaggle's words, then the competition's metric."""

from __future__ import annotations

import math
import re
import time

import pytest

from kagflow.errors import DataError
from kagflow.local.server.competition import ScoreError, install_competition, score_submission
from kagflow.local.server.store import Store

from local_fixtures import *  # noqa: F401,F403
from local_fixtures import write_competition

HEADER = "id,winner_model_a,winner_model_b,winner_tie\n"


@pytest.fixture
def solution(tmp_path):
    return write_competition(tmp_path / "comp") / "solution.csv"


def _sub(tmp_path, body, header=HEADER):
    path = tmp_path / "submission.csv"
    path.write_text(header + body)
    return path


def test_log_loss_matches_the_formula(tmp_path, solution):
    sub = _sub(tmp_path, "1,0.7,0.2,0.1\n2,0.1,0.8,0.1\n3,0.2,0.2,0.6\n")
    expected = -(math.log(0.7) + math.log(0.8) + math.log(0.6)) / 3
    assert score_submission(solution, sub) == pytest.approx(expected)
    uniform = _sub(tmp_path, "".join(f"{i},{1/3},{1/3},{1/3}\n" for i in (1, 2, 3)))
    assert score_submission(solution, uniform) == pytest.approx(math.log(3))


def test_columns_in_another_order_and_clipping(tmp_path, solution):
    sub = _sub(tmp_path, "3,1,0,0\n1,0,0,1\n2,0,1,0\n", header="id,winner_tie,winner_model_b,winner_model_a\n")
    assert score_submission(solution, sub) == pytest.approx(0, abs=1e-9)
    wrong = _sub(tmp_path, "1,0,1,0\n2,0,1,0\n3,0,0,1\n")  # one confident miss: clipped, not infinite
    assert score_submission(solution, wrong) == pytest.approx(-math.log(1e-15) / 3, rel=1e-6)


@pytest.mark.parametrize("body,header,message", [  # Kaggle's submission parser's words, then its metric's
    ("1,0.2,0.3,0.5\n2,0.2,0.3,0.5\n", HEADER, "Evaluation Exception: Submission must have 3 rows"),
    ("1,0.2,0.3,0.5\n2,0.2,0.3,0.5\n3,0.2,0.3,0.5\n4,0.2,0.3,0.5\n", HEADER, "Submission must have 3 rows"),
    ("1,0.2,0.3,0.5\n2,0.2,0.3,0.5\n4,0.2,0.3,0.5\n", HEADER,
     "ERROR: Unable to find 1 required key values in the 'id' column (e.g. ['3'])"),
    ("1,0.2,0.3,0.5\n1,0.2,0.3,0.5\n3,0.2,0.3,0.5\n", HEADER,
     "ERROR: The value '1' in the key column 'id' has already been defined (Line 3, Column 1)"),
    ("1,nan,0.5,0.5\n2,0.2,0.3,0.5\n3,0.2,0.3,0.5\n", HEADER, "NaN"),
    ("1,x,0.5,0.5\n2,0.2,0.3,0.5\n3,0.2,0.3,0.5\n", HEADER,
     "ERROR: Could not parse 'x' into expected type of Double (Line 2, Column 3)"),
    ("1,1.5,-0.5,0\n2,0.2,0.3,0.5\n3,0.2,0.3,0.5\n", HEADER, "outside [0, 1]"),
    ("1,0.5,0.5,0.5\n2,0.2,0.3,0.5\n3,0.2,0.3,0.5\n", HEADER, "sums to 1.5"),
    ("1,0.5,0.5\n2,0.5,0.5\n3,0.5,0.5\n", "id,winner_model_a,winner_model_b\n",
     "ERROR: Required column 'winner_tie' could not be found"),
    ("1,0.5,0.5,0\n", "id,winner_model_a,winner_model_b,tie\n",
     "ERROR: Unexpected Column: 'tie' (Line 1, Column 34)\nERROR: Required column 'winner_tie' could not be found"),
    ("1,0.2,0.3\n", HEADER, "line 2 has 3 values"),
])
def test_malformed_submissions_are_refused(tmp_path, solution, body, header, message):
    with pytest.raises(ScoreError, match=re.escape(message)):
        score_submission(solution, _sub(tmp_path, body, header))


def test_missing_submission_file(tmp_path, solution):
    with pytest.raises(ScoreError, match="not found"):
        score_submission(solution, tmp_path / "nope.csv")


def test_install_hides_the_solution(tmp_path):
    files = write_competition(tmp_path / "comp")
    install_competition(tmp_path / "data", "hidden-solution", files, title="Hidden solution")
    install_competition(tmp_path / "data", "hidden-solution", files)  # re-install replaces, no duplicates
    store = Store(tmp_path / "data")
    try:
        comp = store.one("SELECT * FROM competitions WHERE slug='hidden-solution'")
        names = [f["name"] for f in store.files_of("competition", comp["id"])]
        assert names == ["sample_submission.csv", "test.csv", "train.csv"]
        assert (store.root / "competitions" / "hidden-solution" / "solution.csv").read_text() == \
            (files / "solution.csv").read_text()
    finally:
        store.close()
    with pytest.raises(DataError, match="solution.csv: is missing"):
        (files / "solution.csv").unlink()
        install_competition(tmp_path / "data", "no-solution", files)


# --------------------------------------------------------------------------- metrics, any competition

def _regression(folder, rows=4):
    """A House-Prices-shaped competition: Id, SalePrice (no arena columns anywhere)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "train.csv").write_text("Id,LotArea,SalePrice\n1,8450,208500\n")
    (folder / "test.csv").write_text("Id,LotArea\n" + "".join(f"{i},9000\n" for i in range(10, 10 + rows)))
    (folder / "sample_submission.csv").write_text("Id,SalePrice\n" + "".join(f"{i},1\n" for i in range(10, 10 + rows)))
    (folder / "solution.csv").write_text("Id,SalePrice\n" + "".join(f"{i},{100 * i}\n" for i in range(10, 10 + rows)))
    return folder


def test_rmse_scores_a_regression_competition(tmp_path):
    files = _regression(tmp_path / "house")
    sub = _sub(tmp_path, "".join(f"{i},{100 * i + 3}\n" for i in range(10, 14)), header="Id,SalePrice\n")
    assert score_submission(files / "solution.csv", sub, "rmse") == pytest.approx(3.0)
    with pytest.raises(ScoreError, match=r"Could not parse 'x' into expected type of Double \(Line 3, Column 4\)"):
        score_submission(files / "solution.csv", _sub(tmp_path, "10,1\n11,x\n12,1\n13,1\n", "Id,SalePrice\n"),
                         "rmse")
    install_competition(tmp_path / "data", "house-prices", files, metric="rmse", kernels_only=False)
    with pytest.raises(DataError, match="outside"):  # the same solution cannot be scored by log loss
        install_competition(tmp_path / "data", "house-log-loss", files)
    with pytest.raises(ValueError, match="unknown metric 'auc'.*log_loss, macro_f1, map_at_3, rmse, roc_auc"):
        install_competition(tmp_path / "data", "house-auc", files, metric="auc")


def test_binary_log_loss_takes_one_probability_column(tmp_path):
    solution = tmp_path / "solution.csv"
    solution.write_text("PassengerId,Survived\n1,1\n2,0\n")
    sub = _sub(tmp_path, "1,0.8\n2,0.4\n", header="PassengerId,Survived\n")
    assert score_submission(solution, sub) == pytest.approx(-(math.log(0.8) + math.log(0.6)) / 2)


def test_file_submissions_to_a_regression_competition_rank_and_download(server, api, tmp_path):
    """kaggle-cli's suites submit House Prices' sample_submission.csv and view and download the leaderboard."""
    import csv
    import io
    import zipfile

    from kagflow.local.server.competition import accept_rules

    from local_fixtures import USER

    install_competition(server.data_dir, "house-prices", _regression(tmp_path / "house"), metric="rmse",
                        kernels_only=False, category="gettingStarted")
    accept_rules(server.data_dir, "house-prices", USER)
    for error in (50, 7):
        sub = _sub(tmp_path, "".join(f"{i},{100 * i + error}\n" for i in range(10, 14)), header="Id,SalePrice\n")
        assert api.competition_submit(str(sub), "try", "house-prices").ref
    deadline = time.monotonic() + 30
    while [s.status.name for s in api.competition_submissions("house-prices")] != ["COMPLETE"] * 2:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    board = api.competition_leaderboard_view("house-prices")
    assert [(b.team_name, b.score) for b in board] == [(USER, "7.00000")]  # the best, lower is better
    comp = api.competitions_list(search="house-prices").competitions[0]
    assert comp.evaluation_metric == "root mean squared error" and comp.category == "Getting Started"
    api.competition_leaderboard_download("house-prices", str(tmp_path / "lb"))
    with zipfile.ZipFile(tmp_path / "lb" / "house-prices.zip") as zf:
        rows = list(csv.DictReader(io.StringIO(zf.read("house-prices-publicleaderboard.csv").decode())))
    assert [(r["TeamName"], r["Score"]) for r in rows] == [(USER, "7.00000")]


def test_competition_list_filters_and_pages(server, api, tmp_path):
    """group, category, search, sort and page are honoured (backend_tests: page 2 of a category)."""
    from local_fixtures import COMPETITION
    for n in range(3):
        install_competition(server.data_dir, f"getting-started-{n}", _regression(tmp_path / f"g{n}"), metric="rmse",
                            kernels_only=False, category="gettingStarted")
    listed = lambda **kw: [c.ref.rsplit("/", 1)[-1] for c in api.competitions_list(**kw).competitions]  # noqa: E731
    assert listed(category="gettingStarted") == [f"getting-started-{n}" for n in range(3)]
    assert listed(category="gettingStarted", page_size=2, page=2) == ["getting-started-2"]
    assert listed(category="featured") == [COMPETITION]
    assert listed(group="entered") == [COMPETITION]  # the rules accepted
    assert listed(group="hosted") == []
    assert listed(search="started-1") == ["getting-started-1"]
    assert listed(sort_by="recentlyCreated")[0] == "getting-started-2"
    first = api.competitions_list(page_size=2)
    second = api.competitions_list(page_size=2, page_token=first.next_page_token)
    assert [c.ref for c in first.competitions + second.competitions] == [c.ref for c in
                                                                        api.competitions_list().competitions]
    assert api.competitions_list(page_size=2, page_token="abcd").competitions[0].ref == first.competitions[0].ref


# --------------------------------------------------------------------------- code-competition semantics

HIDDEN_ROWS = 1200
READ_TEST = ("import os, glob, pandas as pd\n"
             "root = os.environ['KAGFLOW_INPUT_ROOT']\n"
             "test = pd.read_csv(glob.glob(root + '/competitions/**/test.csv', recursive=True)[0])\n"
             "print('rows', len(test))\n")
GOOD = READ_TEST + ("pd.DataFrame({'id': test.id, 'winner_model_a': 0.5, 'winner_model_b': 0.25, "
                    "'winner_tie': 0.25}).to_csv('submission.csv', index=False)")
HARD_CODED = READ_TEST + ("pd.DataFrame({'id': [1, 2, 3], 'winner_model_a': 0.5, 'winner_model_b': 0.25, "
                          "'winner_tie': 0.25}).to_csv('submission.csv', index=False)")


@pytest.fixture
def hidden_server(data_dir, kaggle_env, tmp_path):
    """A code competition with 3 public test rows and a hidden test set of 1,200 rows."""
    from kagflow.local.server.api import Settings
    from kagflow.local.server.competition import accept_rules
    from kagflow.local.server.httpd import start_server

    from local_fixtures import COMPETITION, USER, write_hidden_test

    install_competition(data_dir, COMPETITION, write_hidden_test(write_competition(tmp_path / "comp"), HIDDEN_ROWS))
    accept_rules(data_dir, COMPETITION, USER)
    with start_server(data_dir, settings=Settings(daily_submissions=50)) as srv:
        yield srv


def _push(api, tmp_path, slug, code, **meta):
    from local_fixtures import COMPETITION, USER, wait_kernel, write_kernel
    meta.setdefault("competition_sources", [COMPETITION])
    api.kernels_push(str(write_kernel(tmp_path / slug, slug, code, **meta)), timeout=meta.pop("timeout", None))
    status = wait_kernel(api, f"{USER}/{slug}")
    assert status.status.name == "COMPLETE", status.failure_message
    return f"{USER}/{slug}"


def _submit(api, ref):
    from local_fixtures import COMPETITION, wait_submission
    sub = api.competition_submit_code("submission.csv", "try", COMPETITION, ref, 1, quiet=True)
    return wait_submission(api, COMPETITION, sub.ref, timeout=120)


def test_submission_reruns_the_notebook_on_the_hidden_test_set(hidden_server, tmp_path):
    from kagflow.hub.client import build_api

    from local_fixtures import USER

    api = build_api(hidden_server.url)
    good = _push(api, tmp_path, "reads-all-rows", GOOD)
    api.kernels_output(good, str(tmp_path / "out"))
    assert len((tmp_path / "out" / "submission.csv").read_text().splitlines()) == 1 + 3  # its own run: public rows
    scored = _submit(api, good)
    assert scored.status.name == "COMPLETE", scored.error_description
    expected = -sum((math.log(0.5), math.log(0.25), math.log(0.25))[(i - 1) % 3] for i in range(1, HIDDEN_ROWS + 1))
    assert float(scored.public_score) == pytest.approx(expected / HIDDEN_ROWS, abs=1e-4)
    rerun = hidden_server.data_dir / "runs" / USER / "reads-all-rows" / f"submission-{scored.ref}"
    assert f"rows {HIDDEN_ROWS}" in (rerun / "log.json").read_text()


def test_a_notebook_that_hard_codes_the_public_rows_fails_its_submission(hidden_server, tmp_path):
    from kagflow.hub.client import build_api

    api = build_api(hidden_server.url)
    lazy = _push(api, tmp_path, "three-rows-only", HARD_CODED)  # passes its own run on the 3 public rows
    scored = _submit(api, lazy)
    assert scored.status.name == "ERROR"
    assert scored.error_description.startswith("Submission Scoring Error")
    assert f"Submission must have {HIDDEN_ROWS} rows" in scored.error_description


def test_a_rerun_that_fails_or_times_out_is_a_failed_submission(hidden_server, tmp_path):
    from kagflow.hub.client import build_api

    api = build_api(hidden_server.url)
    crashes = _push(api, tmp_path, "crashes-on-hidden", READ_TEST + "assert len(test) < 10, 'too many rows'\n" + GOOD)
    assert _submit(api, crashes).error_description.startswith("Notebook Threw Exception: AssertionError")
    slow = _push(api, tmp_path, "slow-on-hidden", READ_TEST + "import time; time.sleep(600 if len(test) > 3 else 0)\n"
                 + GOOD, timeout=30)
    assert _submit(api, slow).error_description.startswith("Notebook Timeout")


def test_code_submissions_need_internet_off_the_competition_as_a_source_and_no_files(hidden_server, tmp_path):
    from requests.exceptions import HTTPError

    from kagflow.hub.client import build_api

    from local_fixtures import COMPETITION, USER

    api = build_api(hidden_server.url)
    online = _push(api, tmp_path, "online-kernel", GOOD, enable_internet=True)
    no_source = _push(api, tmp_path, "no-source-kernel", "print(1)", competition_sources=[])
    for ref, words in ((online, "internet"), (no_source, "as a data source")):
        with pytest.raises(HTTPError) as err:
            api.competition_submit_code("submission.csv", "x", COMPETITION, ref, 1, quiet=True)
        assert err.value.response.status_code == 400 and words in str(err.value)
    csv = tmp_path / "file.csv"
    csv.write_text(HEADER + "1,1,0,0\n")
    with pytest.raises(HTTPError) as err:
        api.competition_submit(str(csv), "file", COMPETITION, quiet=True)
    assert "only accepts notebook submissions" in str(err.value)
    assert api.competition_submissions(COMPETITION) == [] or all(s.description != "file" for s in
                                                                  api.competition_submissions(COMPETITION))
    assert USER


def test_rules_must_be_accepted_before_download_and_submit(hidden_server, tmp_path):
    from requests.exceptions import HTTPError

    from kagflow.hub.client import build_api
    from kagflow.local.server.competition import accept_rules

    from local_fixtures import COMPETITION

    bob = build_api(hidden_server.url)
    bob.config_values.update(username="bob", key="b")
    assert [f.name for f in bob.competition_list_files(COMPETITION).files]  # listing is allowed
    for call in (lambda: bob.competition_download_files(COMPETITION, path=str(tmp_path / "dl"), quiet=True),
                 lambda: bob.competition_download_file(COMPETITION, "test.csv", path=str(tmp_path / "dl"))):
        with pytest.raises(HTTPError) as err:
            call()
        assert err.value.response.status_code == 403 and "accept the rules" in str(err.value)
        assert "kagflow local competition --accept-rules" in str(err.value)
    accept_rules(hidden_server.data_dir, COMPETITION, "bob")
    bob.competition_download_files(COMPETITION, path=str(tmp_path / "dl"), quiet=True)
    assert (tmp_path / "dl" / f"{COMPETITION}.zip").is_file()


def test_hidden_files_are_not_public(hidden_server, tmp_path):
    from kagflow.hub.client import build_api

    from local_fixtures import COMPETITION

    api = build_api(hidden_server.url)
    names = sorted(f.name for f in api.competition_list_files(COMPETITION).files)
    assert names == ["sample_submission.csv", "test.csv", "train.csv"]
    api.competition_download_file(COMPETITION, "test.csv", path=str(tmp_path))
    assert len((tmp_path / "test.csv").read_text().splitlines()) == 4


def test_wait_score_shows_the_rerun_progress(hidden_server, tmp_path):
    from kagflow.hub import competitions
    from kagflow.hub.client import build_api
    from kagflow.hub.endpoint import Endpoint
    from kagflow.hub.gateway import Gateway
    from kagflow.rules import slugs

    from local_fixtures import COMPETITION, USER

    api = build_api(hidden_server.url)
    ref = _push(api, tmp_path, "slowish-kernel", READ_TEST + "import time; time.sleep(2 if len(test) > 3 else 0)\n"
                + GOOD)
    gw = Gateway(api, Endpoint("local", hidden_server.url, USER), log=lambda m: None)
    sub = competitions.submit_kernel(gw, COMPETITION, slugs.KernelHandle.parse(ref), 1)
    seen = []
    done = competitions.wait_score(gw, COMPETITION, sub.ref, sleep=lambda s: time.sleep(0.1),
                                   on_poll=lambda s, e: seen.append(s.status))
    assert done.status == "COMPLETE"
    assert any("re-running notebook version 1 on the hidden test set" in s for s in seen), seen


def test_kagflow_local_competition_follows_the_endpoint_and_accepts_rules(tmp_path, data_dir, kaggle_env, monkeypatch,
                                                                         capsys):
    """`kagflow local competition --accept-rules` installs into the server KAGFLOW_KAGGLE_ENDPOINT names (started
    with its own --data-dir), not into .kagflow/local, and then downloads work."""
    from kagflow.cli import main
    from kagflow.hub.client import build_api
    from kagflow.local.server.httpd import start_server
    from kagflow.project.init import init_project

    from local_fixtures import USER

    path = init_project(tmp_path / "proj", username=USER, competition="synthetic-arena")
    monkeypatch.chdir(path.parent)
    (path.parent / "kagflow.toml").write_text((path.parent / "kagflow.toml").read_text().replace(
        "n_train = 2000", "n_train = 30").replace("n_test = 300", "n_test = 40"))
    with start_server(tmp_path / "elsewhere") as srv:
        monkeypatch.setenv("KAGFLOW_KAGGLE_ENDPOINT", srv.url)
        with pytest.raises(SystemExit):  # another competition than the default: no synthetic data unless asked
            main(["local", "competition", "--accept-rules"])
        assert "competition synthetic-arena has no data on the local Kaggle" in capsys.readouterr().err
        for command in (["data", "synth"], ["local", "competition", "--accept-rules"]):  # synthetic: asked for
            try:
                main(command)
            except SystemExit as exc:
                assert not exc.code, capsys.readouterr()
        out = capsys.readouterr().out
        assert "rules accepted as alice" in out and "SYNTHETIC data" in out
        assert not (path.parent / ".kagflow" / "local" / "kaggle.sqlite3").exists()
        api = build_api(srv.url)
        api.competition_download_file("synthetic-arena", "test.csv", path=str(tmp_path / "dl"))
        assert len((tmp_path / "dl" / "test.csv").read_text().splitlines()) == 1 + 3  # the public rows only
        comp = srv.store.one("SELECT id FROM competitions WHERE slug='synthetic-arena'")
        hidden = [f for f in srv.store.files_of("competition_rerun", comp["id"]) if f["name"] == "test.csv"]
        assert hidden and hidden[0]["size"] > (tmp_path / "dl" / "test.csv").stat().st_size
    monkeypatch.setenv("KAGFLOW_KAGGLE_ENDPOINT", "http://127.0.0.1:9")
    with pytest.raises(SystemExit):
        main(["local", "competition"])
    assert "no local Kaggle answers there" in capsys.readouterr().err
