"""The peer runner's own parts, fast: the endpoint shim and recorder with the real CLI against a local server, the
recording ``kaggle`` wrapper, and the report's choice of the exchange that shows a failure. (The suites themselves
run with ``make peer``, outside ``make test``.)"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from local_fixtures import *  # noqa: F401,F403
from local_fixtures import COMPETITION, KEY, USER

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import diagnoses  # noqa: E402
import report  # noqa: E402


def _client_env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KAGGLE", "KAGFLOW", "PYTHONPATH"))}
    return {**env, "KAGGLE_USERNAME": USER, "KAGGLE_KEY": KEY, "PYTHONPATH": str(HERE / "shim"), **extra}


def test_the_shim_points_the_unchanged_cli_at_the_server_and_records_each_exchange(server, tmp_path):
    record = tmp_path / "requests.jsonl"
    env = _client_env(KAGGLE_API_ENVIRONMENT="LOCALHOST", KAGFLOW_PEER_ENDPOINT=server.url,
                      KAGFLOW_PEER_REQUESTS=str(record), KAGFLOW_PEER_TEST="suite::one")
    done = subprocess.run([sys.executable, "-c", "from kaggle.cli import main; main()", "competitions", "list"],
                          env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert COMPETITION in done.stdout
    entries = [json.loads(line) for line in record.read_text().splitlines()]
    assert [(e["test"], e["method"], e["url"], e["status"]) for e in entries] == [
        ("suite::one", "POST", f"{server.url}/api/v1/competitions.CompetitionApiService/ListCompetitions", 200)]
    assert COMPETITION in entries[0]["answer"]  # the answer as the client read it
    assert KEY not in record.read_text()  # credentials (headers) are never written


def test_the_kaggle_wrapper_answers_no_and_records_the_exit_status(tmp_path):
    fake = tmp_path / "kaggle"
    fake.write_text('#!/bin/sh\nread answer\necho "asked, got $answer; args $*"\nexit 3\n')
    fake.chmod(0o755)
    steps = tmp_path / "steps.jsonl"
    env = dict(os.environ, KAGFLOW_PEER_KAGGLE=str(fake), KAGFLOW_PEER_STEPS=str(steps))
    for _ in range(2):
        done = subprocess.run([sys.executable, str(HERE / "kaggle_step.py"), "m", "delete", "x/y"], env=env,
                              stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)
        assert done.returncode == 3 and done.stdout == "asked, got no; args m delete x/y\n"
    recorded = [json.loads(line) for line in steps.read_text().splitlines()]
    assert [(s["step"], s["args"], s["rc"]) for s in recorded] == [(1, ["m", "delete", "x/y"], 3),
                                                                   (2, ["m", "delete", "x/y"], 3)]


def test_the_failure_shown_is_the_refusal_on_the_causes_route_not_an_expected_404_before_it():
    def refused(method, status):
        return {"method": "POST", "path": f"/api/v1/models.ModelApiService/{method}", "body": "{}", "status": status,
                "answer": "{}"}

    test = {"refused": [refused("GetModel", 404), refused("CreateModel", 400), refused("DeleteModel", 404)],
            "last": refused("DeleteModel", 404)}
    assert report.decisive(test, "ModelApiService/CreateModel")["path"].endswith("/CreateModel")
    assert report.decisive(test)["path"].endswith("/DeleteModel")  # no route: the last refusal
    assert report.decisive({"refused": [], "last": None}) is None  # it failed before any request


def test_every_diagnosed_test_and_seed_names_a_cause_and_every_cause_is_used():
    keys = {c.key for c in diagnoses.CAUSES}
    used = {key for key, _ in diagnoses.TESTS.values()} | {k for ks in diagnoses.SEEDS.values() for k in ks}
    assert used | {c.key for c in diagnoses.fixed()} == keys
    assert all(c.category == diagnoses.FIDELITY for c in diagnoses.fixed())
    assert all(c.category in (diagnoses.FIDELITY, diagnoses.OUTSIDE, diagnoses.REAL_DATA, diagnoses.CLIENT)
               for c in diagnoses.CAUSES)
