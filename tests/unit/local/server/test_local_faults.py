"""Fault injection: 429 with Retry-After, 500, slow and dropped answers, deterministic by seed."""

from __future__ import annotations

import time

import pytest
import requests
from requests.exceptions import ConnectionError as RequestsConnectionError
from requests.exceptions import HTTPError

from kagflow.local.server.faults import FaultRule, Faults

from local_fixtures import *  # noqa: F401,F403
from local_fixtures import KEY, USER, write_dataset

STATUS = "datasets.DatasetApiService/GetDatasetStatus"


def _status(server):
    return requests.post(f"{server.url}/api/v1/{STATUS}", auth=(USER, KEY), timeout=10,
                         json={"ownerSlug": USER, "datasetSlug": "nothing-here"})


def test_429_500_slow_and_drop(server):
    server.faults = Faults({STATUS: FaultRule(rate_429=1.0, retry_after=7)})
    resp = _status(server)
    assert resp.status_code == 429 and resp.headers["Retry-After"] == "7"
    assert resp.headers["Content-Type"] == "application/json" and resp.json()["code"] == 429

    server.faults = Faults({"GetDatasetStatus": FaultRule(rate_500=1.0)})
    assert _status(server).json()["code"] == 500

    server.faults = Faults({"*": FaultRule(rate_slow=1.0, slow_seconds=0.5)})
    t0 = time.monotonic()
    assert _status(server).status_code == 404  # slow, then the real answer
    assert time.monotonic() - t0 >= 0.5

    server.faults = Faults({STATUS: FaultRule(rate_drop=1.0)})
    with pytest.raises(RequestsConnectionError):
        _status(server)
    server.faults = None
    assert _status(server).status_code == 404


def test_seeded_faults_repeat():
    def sequence(seed):
        faults = Faults({"*": FaultRule(rate_429=0.3, rate_500=0.2, rate_drop=0.1)}, seed=seed)
        return [faults.decide("x.Y/Z")[0] for _ in range(50)]
    assert sequence(3) == sequence(3)
    assert sequence(3) != sequence(4)
    assert {"ok", "429", "500", "drop"} <= set(sequence(3))


def test_kagflow_retries_the_client_through_429_and_drops(api, server, tmp_path):
    """The official client's own retries are off (kagflow.hub.client): kagflow's one layer retries."""
    from kagflow.hub.endpoint import Endpoint
    from kagflow.hub.gateway import Gateway

    server.faults = Faults({"CreateDataset": FaultRule(rate_429=1.0, retry_after=0, limit=2),
                            "StartBlobUpload": FaultRule(rate_drop=1.0, limit=1)}, seed=1)
    ds = write_dataset(tmp_path / "ds", "flaky-network", {"a.csv": "1\n"})
    gw = Gateway(api, Endpoint("local", server.url, USER), log=lambda m: None)
    assert gw.call(lambda: api.dataset_create_new(str(ds), quiet=True), what="create dataset",
                   uploads=True).status == "ok"
    assert server.faults.rules["CreateDataset"].injected == 2
    assert server.faults.rules["StartBlobUpload"].injected == 1
    [only] = server.store.all("SELECT number FROM dataset_versions")
    assert only["number"] == 1  # retried, never duplicated


def test_faults_at_start(data_dir, kaggle_env):
    from kagflow.hub.client import build_api
    from kagflow.local.server.httpd import start_server
    with start_server(data_dir, faults=Faults({"GetDatasetStatus": FaultRule(rate_500=1.0)})) as srv:
        with pytest.raises(HTTPError) as err:
            build_api(srv.url).dataset_status(f"{USER}/whatever")
        assert err.value.response.status_code == 500
