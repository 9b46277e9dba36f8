"""`kagflow check --online` and the flow's preflight: what only the target can say, against the local Kaggle through
the official client (credentials, the competition, its rules, the quota, the models of others the kernels mount)."""

from __future__ import annotations

import pytest

from kagflow.errors import KagflowError, PermissionDeniedError
from kagflow.project.config import load_config
from kagflow.project.edit import set_value
from kagflow.workflow import online
from kagflow.workflow.session import Session

from local_fixtures import *  # noqa: F401,F403
from local_fixtures import COMPETITION, USER, run_kagflow


@pytest.fixture
def proj(tmp_path, server, monkeypatch):
    from kagflow.project.init import init_project

    path = init_project(tmp_path / "proj", username=USER, competition=COMPETITION)
    monkeypatch.setenv("KAGFLOW_KAGGLE_ENDPOINT", server.url)
    monkeypatch.chdir(path.parent)
    return path


def _as_bob(proj, monkeypatch):
    """The project and the client's credentials both bob's, who never accepted the competition's rules."""
    set_value(proj, "project", "username", "bob")
    monkeypatch.setenv("KAGGLE_USERNAME", "bob")


def _findings(path) -> dict:
    return {f.what: f for f in Session(load_config(path), announce=False).check_online()}


def test_a_ready_project_is_ok_on_every_count(proj):
    found = _findings(proj)
    assert found["credentials"].ok and f"accepted as {USER}" in found["credentials"].message
    assert found["competition"].ok and found["rules"].ok
    quota = found["GPU quota"]  # train and infer never ran: their timeouts (9 h each) against 30 h
    assert quota.ok and "train about 12.00 h, infer about 9.00 h" in quota.message and "30.00 h" in quota.message


def test_rules_not_accepted_say_how_to_accept_them(proj, monkeypatch):
    _as_bob(proj, monkeypatch)
    found = _findings(proj)
    rules = found["rules"]
    assert rules.ok is False and f"bob has not accepted the rules of {COMPETITION}" in rules.message
    assert "kagflow local competition --accept-rules" in rules.fix


def test_a_missing_competition_and_a_short_quota_are_problems(proj, server):
    set_value(proj, "project", "competition", "no-such-competition")
    server.settings.gpu_quota_s = 3600.0  # 1 h left: less than the kernels' timeouts
    found = _findings(proj)
    assert found["competition"].ok is False and "no competition 'no-such-competition'" in found["competition"].message
    assert "[project] competition" in found["competition"].fix and "rules" not in found
    assert found["GPU quota"].ok is False and "1.00 h of 1.00 h left" in found["GPU quota"].message


def test_a_model_of_another_owner_the_kernels_cannot_see_is_a_problem(proj):
    with open(proj, "a") as f:
        f.write('\n[kernels.extra]\ntitle = "Extra inference notebook"\nkind = "infer"\n'
                'sources = ["model:google/gemma-2/transformers/gemma-2-9b-it/1", "competition"]\n')
    found = _findings(proj)
    model = found["model google/gemma-2"]
    assert model.ok is False and "[kernels.extra] mounts google/gemma-2/transformers/gemma-2-9b-it/1" in model.message
    assert "https://www.kaggle.com/models/google/gemma-2" in model.fix


def test_refused_credentials_stop_there(proj, monkeypatch):
    from kagflow.hub import kernels

    def refused(gw):
        raise PermissionDeniedError("accelerator quota: refused", server_message="Unauthenticated", hint="fix creds")

    monkeypatch.setattr(kernels, "accelerator_quota", refused)
    found = Session(load_config(proj), announce=False).check_online()
    assert [f.what for f in found] == ["credentials"] and found[0].ok is False
    assert "refused the credentials of alice: Unauthenticated" in found[0].message


def test_check_online_cli_exits_1_on_a_problem_and_lists_every_finding(proj, capsys, monkeypatch):
    code, out, err = run_kagflow(capsys, "check", "--online")
    assert code == 0, err
    assert "online ok: rules:" in out and "online ok: GPU quota:" in out
    _as_bob(proj, monkeypatch)
    code, out, err = run_kagflow(capsys, "check", "--online")
    assert code == 1 and "online problem: rules: bob has not accepted" in err and "1 online problem(s)" in err


def test_the_flow_asks_before_its_first_upload_and_uploads_nothing_on_a_problem(proj, monkeypatch):
    _as_bob(proj, monkeypatch)
    session = Session(load_config(proj), announce=False)
    lines = []
    with pytest.raises(KagflowError) as err:
        online.preflight(session, lines.append)
    assert "1 online problem(s) before the first upload; nothing uploaded" in err.value.message
    assert "rules" in err.value.context and "kagflow check --online" in err.value.hint


def test_run_flow_asks_before_the_base_model_is_published(proj):
    from kagflow.project.state import StepRecord
    from kagflow.workflow.flow import run_flow

    with open(proj, "a") as f:  # a source the kernels cannot mount: the flow stops before uploading anything
        f.write('\n[kernels.extra]\ntitle = "Extra inference notebook"\nkind = "infer"\n'
                'sources = ["model:google/gemma-2/transformers/gemma-2-9b-it/1", "competition"]\n')
    session = Session(load_config(proj), announce=False)
    session.state.record_step("setup", StepRecord(True, "hosted", 0.0))
    lines = []
    with pytest.raises(KagflowError) as err:
        run_flow(session, log=lines.append)
    assert "model google/gemma-2" in err.value.context
    assert not any(line.startswith("[base] ...") for line in lines) and not session.state.models
