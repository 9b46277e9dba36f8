"""Auth: Basic username:key (checked when keys are configured), Bearer tokens, the key never logged."""

from __future__ import annotations

import logging

import pytest
from requests.exceptions import HTTPError

from local_fixtures import *  # noqa: F401,F403
from local_fixtures import KEY, USER, write_dataset

from kagflow.hub.client import build_api
from kagflow.local.server import start_server


def test_bearer_token_identifies_the_user(data_dir, kaggle_env, monkeypatch, tmp_path):
    monkeypatch.delenv("KAGGLE_USERNAME")
    monkeypatch.delenv("KAGGLE_KEY")
    monkeypatch.setenv("KAGGLE_API_TOKEN", "local-token-123")
    with start_server(data_dir, tokens={"local-token-123": "carol"}) as srv:
        api = build_api(srv.url)
        assert api.config_values["username"] == "carol"  # from security.OAuthService/IntrospectToken
        ds = write_dataset(tmp_path / "ds", "token-dataset", {"a.txt": "x"}, owner="carol")
        assert api.dataset_create_new(str(ds), quiet=True).ref == "carol/token-dataset"


def test_configured_keys_are_checked_and_never_logged(data_dir, kaggle_env, caplog, tmp_path):
    caplog.set_level(logging.DEBUG, logger="kagflow.local")
    with start_server(data_dir, users={USER: KEY}) as srv:
        ds = write_dataset(tmp_path / "ds", "keyed-dataset", {"a.txt": "x"})
        assert build_api(srv.url).dataset_create_new(str(ds), quiet=True).status == "ok"
        api = build_api(srv.url)
        api.config_values["key"] = "wrong-key"
        with pytest.raises(HTTPError) as err:
            api.dataset_status(f"{USER}/keyed-dataset")
        assert err.value.response.status_code == 401
    assert KEY not in caplog.text and "wrong-key" not in caplog.text
    assert "GetDatasetStatus" in caplog.text  # request lines are logged, credentials are not
