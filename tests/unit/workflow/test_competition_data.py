"""Which data a project runs on: never substituted silently; the files read against [data] before a push; the best
score by the metric's direction; a push onto another competition's kernel refused."""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace

import pytest

from kagflow.errors import DataError, KagflowError
from kagflow.local.server.competition import hosted_competition, install_competition
from kagflow.project.config import load_config
from kagflow.project.init import init_project
from kagflow.rules.metrics import METRICS
from kagflow.workflow import competition_data, kernel
from kagflow.workflow.check import check_data
from kagflow.workflow.session import Session
from kagflow.workflow.status import SubmissionLine, best_of

from local_fixtures import write_competition

WSDM = "wsdm-cup-multilingual-chatbot-arena"


def test_no_hosted_data_for_another_competition_is_refused_and_nothing_is_hosted(tmp_path):
    """The bug: the flow hosted synthetic LMSYS data under the user's slug and reported a score."""
    config = load_config(init_project(tmp_path / "p", username="alice", competition=WSDM))
    data = tmp_path / "data"
    with pytest.raises(DataError) as err:
        competition_data.host_competition(config, data, accept_rules=True)
    assert f"competition {WSDM} has no data on the local Kaggle" in err.value.message
    assert "kagflow local competition --files DIR --metric log_loss --accept-rules" in err.value.hint
    assert hosted_competition(data, WSDM) is None  # no competition, so no submission, so no score


def test_hosted_files_are_kept_and_the_default_is_synthetic_and_says_so(tmp_path):
    config = load_config(init_project(tmp_path / "p", username="alice", competition=WSDM))
    data = tmp_path / "data"
    install_competition(data, WSDM, write_competition(tmp_path / "files"))
    kept = competition_data.host_competition(config, data, accept_rules=True)  # what the flow's setup does
    assert not kept.synthetic and kept.note == "" and "train.csv" in kept.files
    default = load_config(init_project(tmp_path / "d", username="alice"))
    default = dataclasses.replace(default, stand_ins={**default.stand_ins, "tiny": dataclasses.replace(
        default.tiny, n_train=40, n_test=10)})
    made = competition_data.host_competition(default, data)
    assert made.synthetic and "SYNTHETIC data" in made.note and "solution.csv" not in made.files


def _session(config):
    return Session(config, log=lambda m: None, announce=False)


def test_check_catches_a_missing_column_before_a_push(tmp_path):
    """The bug: a training kernel was pushed and failed on Kaggle with missing columns; check never read the data."""
    config = load_config(init_project(tmp_path / "p", username="alice"))
    files = write_competition(tmp_path / "files")
    train = files / "train.csv"
    train.write_text(train.read_text().replace(",winner_tie\n", ",tie\n", 1))
    install_competition(config.layout.local_server_data, config.project.competition, files)
    session = _session(config)
    problems = check_data(session)
    assert [p.field for p in problems] == ["[data] label_columns"]
    assert "train.csv has no column 'winner_tie'" in problems[0].message and "'tie'" in problems[0].fix
    with pytest.raises(KagflowError, match="do not match \\[data\\].*not pushed"):
        kernel.check_project_data(session)


def test_check_names_a_hosted_competition_for_a_misspelled_slug(tmp_path):
    config = load_config(init_project(tmp_path / "p", username="alice", competition="wsdm-cup-multilingual-arena"))
    install_competition(config.layout.local_server_data, WSDM, write_competition(tmp_path / "files"))
    problems = check_data(_session(config))
    assert [p.field for p in problems] == ["[project] competition"]
    assert f"did you mean [project] competition = {WSDM!r}" in problems[0].fix


def _line(ref: str, score: float) -> SubmissionLine:
    return SubmissionLine(ref, "COMPLETE", score, None, "train", 1, ())


def test_best_is_the_maximum_for_accuracy_and_the_minimum_for_log_loss():
    """The bug: status took the minimum for every metric, marking the worst accuracy best."""
    subs = [_line("1", 0.61), _line("2", 0.74), _line("3", 0.52), SubmissionLine("4", "ERROR", None, None, "", 0, ())]
    assert best_of(subs, METRICS["accuracy"]).ref == "2"
    assert best_of(subs, METRICS["roc_auc"]).ref == "2"
    assert best_of(subs, METRICS["log_loss"]).ref == "3"


def test_a_push_onto_another_competition_s_kernel_is_refused_naming_both(tmp_path, monkeypatch):
    config = load_config(init_project(tmp_path / "p", username="alice", competition=WSDM))
    monkeypatch.setattr("kagflow.hub.kernels.remote_competitions", lambda gw, handle: [config.project.competition])
    session = SimpleNamespace(config=config, gateway=None)
    rendered = SimpleNamespace(handle=config.kernel_handle("train"),
                               metadata={"competition_sources": ["llm-classification-finetuning"]})
    with pytest.raises(KagflowError) as err:
        kernel.guard_competition_source(session, "train", rendered)
    assert f"belongs to competition {WSDM}, not this project's llm-classification-finetuning" in err.value.message
    rendered = SimpleNamespace(handle=rendered.handle, metadata={"competition_sources": [WSDM]})
    kernel.guard_competition_source(session, "train", rendered)  # the same competition: pushed


def test_publishing_onto_another_competition_s_adapter_is_refused_naming_both(tmp_path, monkeypatch):
    from kagflow.workflow import model

    config = load_config(init_project(tmp_path / "p", username="alice", competition=WSDM))
    other = "# x\n\nLoRA adapter for the llm-classification-finetuning competition, published with kagflow.\n"
    monkeypatch.setattr("kagflow.hub.models.model_description", lambda gw, handle: other)
    with pytest.raises(KagflowError) as err:
        model.guard_competition(None, config, "adapter_model")
    assert f"adapter of competition llm-classification-finetuning, not this project's {WSDM}" in err.value.message
    model.guard_competition(None, config, "base_model")  # the same base weights serve any competition
    monkeypatch.setattr("kagflow.hub.models.model_description", lambda gw, handle: other.replace(
        "llm-classification-finetuning", WSDM))
    model.guard_competition(None, config, "adapter_model")
