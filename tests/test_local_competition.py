"""The local competition's scorer: Kaggle's checks, then multi-class log loss."""

from __future__ import annotations

import math

import pytest

from local_fixtures import write_competition

from kagflow.local.competition import ScoreError, install_competition, score_submission
from kagflow.local.store import Store

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


@pytest.mark.parametrize("body,header,message", [
    ("1,0.2,0.3,0.5\n2,0.2,0.3,0.5\n", HEADER, "1 missing"),
    ("1,0.2,0.3,0.5\n2,0.2,0.3,0.5\n3,0.2,0.3,0.5\n4,0.2,0.3,0.5\n", HEADER, "1 unexpected"),
    ("1,0.2,0.3,0.5\n1,0.2,0.3,0.5\n3,0.2,0.3,0.5\n", HEADER, "duplicate id"),
    ("1,nan,0.5,0.5\n2,0.2,0.3,0.5\n3,0.2,0.3,0.5\n", HEADER, "NaN"),
    ("1,x,0.5,0.5\n2,0.2,0.3,0.5\n3,0.2,0.3,0.5\n", HEADER, "not a number"),
    ("1,1.5,-0.5,0\n2,0.2,0.3,0.5\n3,0.2,0.3,0.5\n", HEADER, "outside [0, 1]"),
    ("1,0.5,0.5,0.5\n2,0.2,0.3,0.5\n3,0.2,0.3,0.5\n", HEADER, "sums to 1.5"),
    ("1,0.5,0.5\n2,0.5,0.5\n3,0.5,0.5\n", "id,winner_model_a,winner_model_b\n", "columns"),
    ("1,0.2,0.3\n", HEADER, "line 2 has 3 values"),
])
def test_malformed_submissions_are_refused(tmp_path, solution, body, header, message):
    with pytest.raises(ScoreError, match=message.replace("[", r"\[").replace("]", r"\]")):
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
    with pytest.raises(FileNotFoundError):
        (files / "solution.csv").unlink()
        install_competition(tmp_path / "data", "no-solution", files)
