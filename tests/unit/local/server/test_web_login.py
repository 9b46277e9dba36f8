"""Signing a browser in to the local Kaggle's pages: a one-time link from an authenticated API call, swapped for
an HttpOnly SameSite=Strict session cookie; never the key in a URL or a cookie. Without the cookie (or a key)
a page shows public things only, key checking on or off; `kagflow local open` opens the link."""

from __future__ import annotations

import json

import pytest
import requests
from web_fixtures import ALICE, BOB, KEYS, TRAIN, WHEELS

from kagflow.hub.client import build_api
from kagflow.local.server.httpd import start_server
from kagflow.local.server.web_login import Logins, cookie_name

from local_fixtures import USER, run_kagflow, write_dataset


def session() -> requests.Session:
    s = requests.Session()
    s.trust_env = False
    return s


def link_for(server, user: str, key: str | None = None) -> str:
    r = session().post(server.url + "/web/login-link", auth=(user, key or KEYS[user]), timeout=30)
    assert r.status_code == 200 and r.headers["Content-Type"] == "application/json", r.text
    assert r.json()["user"] == user and r.json()["expires_in"] == Logins.LINK_TTL_S
    return r.json()["url"]


def signed_in(server, user: str) -> requests.Session:
    browser = session()
    assert browser.get(link_for(server, user), timeout=30).url == server.url + "/"
    return browser


def test_a_link_signs_in_once_and_never_carries_the_key(web_site):
    link = link_for(web_site, ALICE)
    assert KEYS[ALICE] not in link and link.startswith(web_site.url + "/web/login/")
    browser = session()
    assert f"{ALICE}/{TRAIN}" not in browser.get(web_site.url + "/", timeout=30).text  # not yet signed in
    assert browser.head(link, timeout=30).status_code == 200  # a link preview does not spend it
    first = browser.get(link, allow_redirects=False, timeout=30)
    assert first.status_code == 303 and first.headers["Location"] == "/"
    cookie = first.headers["Set-Cookie"]
    name, value = cookie.split(";")[0].split("=", 1)
    assert name == cookie_name(web_site.port) and value and value not in link and KEYS[ALICE] not in cookie
    flags = {part.strip() for part in cookie.split(";")[1:]}
    assert {"HttpOnly", "SameSite=Strict", "Path=/"} <= flags
    index = browser.get(web_site.url + "/", timeout=30).text
    assert f"{ALICE}/{TRAIN}" in index and "signed in as <b>alice</b>" in index
    assert browser.get(f"{web_site.url}/code/{ALICE}/{TRAIN}", timeout=30).status_code == 200
    again = session().get(link, allow_redirects=False, timeout=30)
    assert again.status_code == 403 and "used already or has expired" in again.text
    assert "Set-Cookie" not in again.headers


def test_a_link_needs_the_users_key(web_site):
    for auth in (None, (ALICE, "not-her-key"), (ALICE, KEYS[BOB])):
        r = session().post(web_site.url + "/web/login-link", auth=auth, timeout=30)
        assert r.status_code == 401 and r.headers["Content-Type"] == "application/json", (auth, r.text)


def test_a_session_sees_its_users_things_only(web_site):
    bob = signed_in(web_site, BOB)
    assert bob.get(f"{web_site.url}/code/{ALICE}/{TRAIN}", timeout=30).status_code == 404
    assert f"{ALICE}/{WHEELS}" not in bob.get(web_site.url + "/", timeout=30).text
    forged = session()
    forged.cookies.set(cookie_name(web_site.port), "made-up-session-token")
    r = forged.get(f"{web_site.url}/code/{ALICE}/{TRAIN}", timeout=30)
    assert r.status_code == 404 and "public view" in r.text


def test_the_live_log_stream_takes_the_session(web_site):
    stream = f"{web_site.url}/api/v1/kernels/logs/stream/{ALICE}/{TRAIN}?versionLabel=v1"
    assert session().get(stream, timeout=30).status_code == 404  # alice's kernel: not to nobody
    entries = signed_in(web_site, ALICE).get(stream, timeout=30).json()
    assert any("fold 0 of 5" in e["data"] for e in entries)


def test_sign_out_ends_the_session(web_site):
    alice = signed_in(web_site, ALICE)
    token = alice.cookies.get(cookie_name(web_site.port))
    out = alice.post(web_site.url + "/web/logout", allow_redirects=False, timeout=30)
    assert out.status_code == 303 and "Max-Age=0" in out.headers["Set-Cookie"]
    replay = session()
    replay.cookies.set(cookie_name(web_site.port), token)
    assert replay.get(f"{web_site.url}/code/{ALICE}/{TRAIN}", timeout=30).status_code == 404


def test_pages_answer_their_own_host_only(web_site):
    """A page of another site that DNS rebinds to 127.0.0.1 sends its own name as Host: refused."""
    r = session().get(web_site.url + "/", headers={"Host": f"attacker.example:{web_site.port}"}, timeout=30)
    assert r.status_code == 421 and r.headers["Content-Type"].startswith("text/html")
    assert session().get(f"http://localhost:{web_site.port}/", timeout=30).status_code == 200


def test_links_and_sessions_expire():
    now = [1000.0]
    logins = Logins(clock=lambda: now[0])
    late = logins.link_token(ALICE)
    now[0] += Logins.LINK_TTL_S + 1
    assert logins.redeem(late) is None
    session_token, user = logins.redeem(logins.link_token(ALICE))
    assert user == ALICE and logins.user_of(session_token) == ALICE
    now[0] += Logins.SESSION_TTL_S + 1
    assert logins.user_of(session_token) is None


def test_without_key_checking_private_things_still_need_the_link(tmp_path, kaggle_credentials):
    """The single-user default accepts any key on the API; a browser without the link still sees public things."""
    server = start_server(tmp_path / "data")
    try:
        api = build_api(server.url)
        api.dataset_create_new(str(write_dataset(tmp_path / "ds", "private-notes", {"a.csv": "x\n1\n"})), quiet=True)
        assert "private-notes" not in session().get(server.url + "/", timeout=30).text
        assert session().get(f"{server.url}/datasets/alice/private-notes", timeout=30).status_code == 404
        browser = session()
        link = session().post(server.url + "/web/login-link", auth=(USER, kaggle_credentials["key"]), timeout=30)
        browser.get(link.json()["url"], timeout=30)
        assert "private-notes" in browser.get(server.url + "/", timeout=30).text
    finally:
        server.stop()


@pytest.fixture
def project_on(web_site, project, monkeypatch):
    """A kagflow project pointed at the site's server, with alice's key where the official client reads it."""
    monkeypatch.setenv("KAGFLOW_KAGGLE_ENDPOINT", web_site.url)
    monkeypatch.setenv("KAGFLOW_CONFIG", str(project))
    monkeypatch.setenv("KAGGLE_USERNAME", ALICE)
    monkeypatch.setenv("KAGGLE_KEY", KEYS[ALICE])
    return project


def test_kagflow_local_open_opens_a_signed_in_index(project_on, web_site, monkeypatch, capsys):
    opened = []
    monkeypatch.setattr("webbrowser.open", lambda url: opened.append(url) or True)
    code, out, err = run_kagflow(capsys, "local", "open")
    assert code == 0, err
    assert len(opened) == 1 and f"signed in as {ALICE}" in out and opened[0] not in out  # opened, not printed
    browser = session()
    assert f"{ALICE}/{TRAIN}" in browser.get(opened[0], timeout=30).text


def test_kagflow_local_open_prints_the_link_without_a_browser(project_on, web_site, monkeypatch, capsys):
    monkeypatch.setattr("webbrowser.open", lambda url: False)  # no browser here
    code, out, err = run_kagflow(capsys, "local", "open")
    assert code == 0, err
    url = out.split("url: ")[1].strip()
    assert f"{ALICE}/{TRAIN}" in session().get(url, timeout=30).text
    code, out, _ = run_kagflow(capsys, "local", "open", "--no-browser", "--json")
    answer = json.loads(out)
    assert answer["ok"] and answer["url"].startswith(web_site.url + "/web/login/")
