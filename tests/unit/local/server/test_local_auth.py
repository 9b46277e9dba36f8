"""Auth: Basic username:key (checked when keys are configured), Bearer tokens, the key never logged."""

from __future__ import annotations

import json
import logging

import pytest
from requests.exceptions import HTTPError

from kagflow.hub.client import build_api
from kagflow.local.server.httpd import start_server

from local_fixtures import *  # noqa: F401,F403
from local_fixtures import KEY, USER, write_dataset


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


def test_users_file_from_env_turns_key_checking_on(tmp_path, kaggle_env, monkeypatch):
    """`kagflow local serve --users FILE` / KAGFLOW_LOCAL_USERS: a wrong key is a 401 for the official client."""
    from kagflow.local.control import ensure_background_server, stop_background_server

    users = tmp_path / "users.json"
    users.write_text(json.dumps({USER: KEY, "bob": "bob-key"}))
    monkeypatch.setenv("KAGFLOW_LOCAL_USERS", str(users))
    data = tmp_path / "bg"
    url = ensure_background_server(data)
    try:
        ds = write_dataset(tmp_path / "ds", "keyed-dataset", {"a.txt": "x"})
        assert build_api(url).dataset_create_new(str(ds), quiet=True).status == "ok"
        wrong = build_api(url)
        wrong.config_values["key"] = "not-alice-key"
        with pytest.raises(HTTPError) as err:
            wrong.dataset_list_files(f"{USER}/keyed-dataset")
        assert err.value.response.status_code == 401
        stranger = build_api(url)
        stranger.config_values.update(username="mallory", key="any")
        with pytest.raises(HTTPError) as err:
            stranger.dataset_list(user=USER)
        assert err.value.response.status_code == 401
    finally:
        stop_background_server(data)
    assert "keys checked for 2 user(s)" in (data / "server.log").read_text()


@pytest.mark.parametrize("content,fragment", [("{not json", "not valid JSON"), ("[]", "non-empty JSON object"),
                                              ('{"../x": "k"}', "invalid username"),
                                              ('{"bob": ""}', "non-empty string")])
def test_users_file_errors_name_the_file_and_the_fix(tmp_path, content, fragment):
    from kagflow.errors import KagflowError
    from kagflow.local.control import load_users

    path = tmp_path / "users.json"
    path.write_text(content)
    with pytest.raises(KagflowError) as err:
        load_users(path)
    assert fragment.lower() in str(err.value).lower() and str(path) in str(err.value)
    assert "kagflow local serve --users" in err.value.hint


def test_users_file_may_be_a_kaggle_json(tmp_path):
    from kagflow.local.control import load_users

    path = tmp_path / "kaggle.json"
    path.write_text(json.dumps({"username": "carol", "key": "c-key"}))
    assert load_users(path) == {"carol": "c-key"}


def test_kagflow_local_serve_reads_the_users_option(tmp_path, monkeypatch, capsys):
    """`kagflow local serve --users FILE` loads (and checks) the file before serving anything."""
    from kagflow.cli import main
    from kagflow.project.init import init_project

    monkeypatch.chdir(init_project(tmp_path / "proj", username=USER, competition="some-comp").parent)
    bad = tmp_path / "users.json"
    bad.write_text('{"../../x": "k"}')
    with pytest.raises(SystemExit) as exit_:
        main(["local", "serve", "--users", str(bad), "--data-dir", str(tmp_path / "d")])
    assert exit_.value.code == 1
    err = capsys.readouterr().err
    assert "invalid username" in err.lower() and str(bad) in err
    assert not (tmp_path / "d" / "server.port").exists()
