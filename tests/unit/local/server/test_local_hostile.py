"""Hostile input: every bad request gets a Kaggle-shaped JSON error and leaves the data dir as it was."""

from __future__ import annotations

import json
import socket
from urllib.parse import urlparse

import pytest
import requests

from local_fixtures import *  # noqa: F401,F403
from local_fixtures import KEY, USER, snapshot

BLOB = "blobs.BlobApiService/StartBlobUpload"
TRAVERSAL_NAMES = ["../evil.csv", "/etc/passwd", "a/b.csv", "..", "a\x00b.csv", "a\u2215b.csv", "a\uff0fb.csv",
                   "a\\b.csv", "x" * 300, "\u00e9" * 128]  # (the last: 128 characters, 256 bytes in UTF-8)


def post(server, route, body, *, auth=(USER, KEY), raw=None):
    data = raw if raw is not None else json.dumps(body)
    return requests.post(f"{server.url}/api/v1/{route}", data=data, auth=auth,
                         headers={"Content-Type": "application/json"}, timeout=10)


def assert_kaggle_error(resp, code, fragment=""):
    assert resp.status_code == code, resp.text
    assert resp.headers["Content-Type"] == "application/json"
    body = resp.json()
    assert body["code"] == code and fragment.lower() in body["message"].lower()
    assert "Traceback" not in body["message"]


def raw_request(server, head: bytes, body: bytes, *, close_write=True) -> bytes:
    """Send ``head`` + ``body`` on a raw socket (then half-close) and read the whole answer."""
    host = urlparse(server.url)
    with socket.create_connection((host.hostname, host.port), timeout=10) as s:
        s.sendall(head + body)
        if close_write:
            s.shutdown(socket.SHUT_WR)
        chunks = []
        while chunk := s.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


@pytest.mark.parametrize("name", TRAVERSAL_NAMES)
def test_blob_names_cannot_escape(server, data_dir, name):
    before = snapshot(data_dir)
    resp = post(server, BLOB, {"type": "DATASET", "name": name, "contentLength": 3, "lastModifiedEpochSeconds": 1})
    assert_kaggle_error(resp, 400, "invalid file name")
    assert snapshot(data_dir) == before


def _empty_upload(server, name="a.csv"):
    return post(server, BLOB, {"type": "DATASET", "name": name, "contentLength": 0}).json()["token"]


def test_names_are_counted_in_utf8_bytes(server):
    """255 bytes per name, as filesystems count: 100 two-byte characters (200 bytes) are a fine file name; a path
    (folders and name) is at most 1024 bytes."""
    name = "\u00e9" * 100
    resp = post(server, "datasets.DatasetApiService/CreateDataset",
                {"slug": "utf8-names", "title": "UTF-8 names", "files": [{"token": _empty_upload(server, name)}]})
    assert resp.status_code == 200 and not resp.json().get("error"), resp.text
    files = post(server, "datasets.DatasetApiService/ListDatasetFiles",
                 {"ownerSlug": USER, "datasetSlug": "utf8-names"})
    assert [f["name"] for f in files.json()["datasetFiles"]] == [name]
    folders = [{"name": "\u00e9" * 120, "files": []} for _ in range(5)]  # each 240 bytes: fine alone, 1205 together
    for outer, inner in zip(folders, folders[1:]):
        outer["directories"] = [inner]
    folders[-1]["files"] = [{"token": _empty_upload(server)}]
    resp = post(server, "datasets.DatasetApiService/CreateDatasetVersion",
                {"ownerSlug": USER, "datasetSlug": "utf8-names", "body": {"files": [], "directories": [folders[0]]}})
    assert_kaggle_error(resp, 400, "more than 1024")


NOT_WHOLE = "\n"  # "ok-slug\n" passed a `^...$` check: every name check matches the whole string


@pytest.mark.parametrize("route,body,fragment", [
    ("datasets.DatasetApiService/CreateDataset", {"slug": "ok-slug" + NOT_WHOLE, "title": "A fine title",
                                                  "files": []}, "invalid dataset slug"),
    ("models.ModelApiService/CreateModel", {"slug": "ok-slug" + NOT_WHOLE, "title": "A fine title"},
     "invalid model slug"),
    ("kernels.KernelsApiService/SaveKernel", {"slug": f"{USER}/ok-kernel{NOT_WHOLE}", "text": "{}",
                                              "language": "python", "kernelType": "notebook"}, "invalid kernel slug"),
    ("models.ModelApiService/CreateModelInstance", {"ownerSlug": USER, "modelSlug": "some-model" + NOT_WHOLE},
     "invalid model slug"),
    ("datasets.DatasetApiService/CreateDataset", {"ownerSlug": USER + NOT_WHOLE, "slug": "ok-slug",
                                                  "title": "A fine title"}, "invalid owner slug"),
])
def test_create_calls_refuse_a_slug_with_a_trailing_newline(server, data_dir, route, body, fragment):
    before = snapshot(data_dir)
    assert_kaggle_error(post(server, route, body), 400, fragment)
    assert snapshot(data_dir) == before
    assert server.store.one("SELECT COUNT(*) AS n FROM models")["n"] == 0


def test_a_model_instance_slug_with_a_trailing_newline_is_refused(server):
    assert post(server, "models.ModelApiService/CreateModel", {"slug": "some-model", "title": "Some model"}).ok
    body = {"framework": "MODEL_FRAMEWORK_TRANSFORMERS", "instanceSlug": "lora" + NOT_WHOLE, "licenseName": "MIT",
            "files": [{"token": _empty_upload(server)}]}
    resp = post(server, "models.ModelApiService/CreateModelInstance",
                {"ownerSlug": USER, "modelSlug": "some-model", "body": body})
    assert_kaggle_error(resp, 400, "invalid model instance slug")
    assert server.store.one("SELECT COUNT(*) AS n FROM model_instances")["n"] == 0


def test_download_names_cannot_escape(api, server, tmp_path):
    from local_fixtures import write_dataset
    api.dataset_create_new(str(write_dataset(tmp_path / "ds", "safe-names", {"a.csv": "1"})), quiet=True)
    for name in ("../kaggle.sqlite3", "../../secret", "a.csv/../../x", "\u2215etc\u2215passwd"):
        resp = post(server, "datasets.DatasetApiService/DownloadDataset",
                    {"ownerSlug": USER, "datasetSlug": "safe-names", "fileName": name})
        assert_kaggle_error(resp, 400, "invalid")
    tampered = requests.get(f"{server.url}/files/eyJwIjogInNlY3JldCJ9.{'0' * 32}/secret", timeout=10)
    assert_kaggle_error(tampered, 403, "invalid")
    assert requests.get(f"{server.url}/files/../kaggle.sqlite3", timeout=10).status_code == 404


def test_malformed_json_unknown_fields_wrong_types(server, data_dir):
    before = snapshot(data_dir)
    assert_kaggle_error(post(server, "datasets.DatasetApiService/GetDatasetStatus", None, raw="{not json"),
                        400, "invalid json")
    assert_kaggle_error(post(server, "datasets.DatasetApiService/GetDatasetStatus", None, raw=b"\xff\xfe"),
                        400, "invalid json")
    assert_kaggle_error(post(server, "datasets.DatasetApiService/GetDatasetStatus", [1, 2]), 400, "json object")
    assert_kaggle_error(post(server, "datasets.DatasetApiService/GetDatasetStatus", {"ownerSlug": 5}),
                        400, "expected str")
    assert_kaggle_error(post(server, BLOB, {"type": "NOT_A_TYPE", "name": "a.csv", "contentLength": 1}),
                        400, "not a ApiBlobType")
    assert_kaggle_error(post(server, BLOB, {"type": "DATASET", "name": "a.csv", "contentLength": "1"}),
                        400, "expected int")
    assert_kaggle_error(post(server, BLOB, {"type": "DATASET", "name": "a.csv", "contentLength": True}),
                        400, "expected int")
    assert_kaggle_error(post(server, "datasets.DatasetApiService/CreateDatasetVersion",
                             {"ownerSlug": USER, "datasetSlug": "abcdef", "body": {"files": "x"}}),
                        400, "body.files")
    assert_kaggle_error(post(server, "datasets.DatasetApiService/CreateDatasetVersion",
                             {"ownerSlug": USER, "datasetSlug": "abcdef", "body": {"files": [{"token": 5}]}}),
                        400, "body.files[0].token")
    assert_kaggle_error(post(server, "nope.NopeService/Nothing", {}), 404, "unknown method")
    assert_kaggle_error(post(server, "competitions.CompetitionApiService/UpdateCompetitionPage", {}), 405,
                        "the local kaggle does not support")
    assert_kaggle_error(post(server, "datasets.DatasetApiService/GetDatasetStatus",
                             {"ownerSlug": USER, "datasetSlug": "no-such-dataset"}), 404, "not found")
    assert snapshot(data_dir) == before


def test_unknown_fields_of_a_newer_client_are_ignored_not_refused(server):
    """Kaggle's protobuf JSON parser skips fields it does not know; so does the local Kaggle (a newer client sends
    fields this kagglesdk lacks), at the top level and nested, while a known field of the wrong type is still a 400."""
    made = post(server, "models.ModelApiService/CreateModel",
                {"ownerSlug": USER, "slug": "from-the-future", "title": "From the future", "isPrivate": True,
                 "fieldOfANewerClient": {"nested": [1, 2]}})
    assert made.status_code == 200 and made.json()["ref"] == f"{USER}/from-the-future", made.text
    got = post(server, "models.ModelApiService/GetModel",
               {"ownerSlug": USER, "modelSlug": "from-the-future", "readMask": "title", "bogus": 1})
    assert got.status_code == 200 and got.json()["title"] == "From the future"
    nested = post(server, "datasets.DatasetApiService/CreateDatasetVersion",
                  {"ownerSlug": USER, "datasetSlug": "abcdef", "body": {"files": [{"token": "t", "newer": 1}]}})
    assert_kaggle_error(nested, 404, "not found")  # parsed past the unknown field: the dataset does not exist


def test_owner_and_auth_checks(server, data_dir):
    before = snapshot(data_dir)
    body = {"type": "DATASET", "name": "a.csv", "contentLength": 1}
    assert_kaggle_error(post(server, BLOB, body, auth=None), 401, "unauthenticated")
    resp = requests.post(f"{server.url}/api/v1/{BLOB}", json=body, timeout=10,
                         headers={"Authorization": "Bearer not-a-token"})
    assert_kaggle_error(resp, 401, "token")
    assert_kaggle_error(post(server, "models.ModelApiService/CreateModel",
                             {"ownerSlug": "bob", "slug": "stolen", "title": "Stolen model"}), 403, "denied")
    assert_kaggle_error(post(server, "kernels.KernelsApiService/SaveKernel",
                             {"slug": "alice/../../etc", "text": "{}", "language": "python",
                              "kernelType": "notebook"}), 400, "invalid kernel slug")
    assert snapshot(data_dir) == before


def test_huge_content_length_with_short_body(server, data_dir):
    before = snapshot(data_dir)
    head = (f"POST /api/v1/{BLOB} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"Content-Length: {1 << 30}\r\n\r\n").encode()
    answer = raw_request(server, head, b'{"name": "a')
    status_line, _, rest = answer.partition(b"\r\n")
    assert b" 413 " in status_line
    headers, _, body = rest.partition(b"\r\n\r\n")
    assert b"application/json" in headers and json.loads(body)["code"] == 413
    # a body shorter than its (acceptable) Content-Length ends with a 400, not a hang
    head = (f"POST /api/v1/{BLOB} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"Content-Length: 5000\r\n\r\n").encode()
    answer = raw_request(server, head, b'{"name": "a')
    assert b" 400 " in answer.split(b"\r\n", 1)[0] and b"ended after 11 of 5000 bytes" in answer
    assert snapshot(data_dir) == before


def test_upload_bodies_are_bounded(server, data_dir):
    start = post(server, BLOB, {"type": "DATASET", "name": "small.bin", "contentLength": 10}).json()
    path = urlparse(start["createUrl"]).path
    before = snapshot(data_dir)
    head = (f"PUT {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {1 << 30}\r\n\r\n").encode()
    answer = raw_request(server, head, b"0123")
    assert b" 413 " in answer.split(b"\r\n", 1)[0]
    bad_range = requests.put(start["createUrl"], data=b"abc", headers={"Content-Range": "bytes 5-7/99"}, timeout=10)
    assert_kaggle_error(bad_range, 400, "content-range")
    unknown = requests.put(f"{server.url}/upload/{'x' * 32}", data=b"abc", timeout=10)
    assert_kaggle_error(unknown, 404, "not found")
    assert snapshot(data_dir) == before
    assert not list((data_dir / "blobs").rglob("*.part"))


def test_non_loopback_bind_needs_explicit_opt_in(tmp_path):
    from kagflow.local.server.httpd import LocalServer
    with pytest.raises(ValueError, match="loopback"):
        LocalServer(tmp_path / "d", host="0.0.0.0")


def test_stalled_body_times_out_with_an_error(data_dir, kaggle_env):
    from kagflow.local.server.httpd import start_server
    with start_server(data_dir, read_timeout_s=1) as srv:
        head = (f"POST /api/v1/{BLOB} HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n").encode()
        answer = raw_request(srv, head, b'{"na', close_write=False)
    assert b" 400 " in answer.split(b"\r\n", 1)[0] and b"stalled after 4 of 100 bytes" in answer


def test_traversal_username_is_refused_and_nothing_outside_changes(tmp_path, kaggle_env):
    """A Basic-auth username like ``../../../victim`` once made a kernel sandbox (and its rmtree) outside the data
    dir."""
    from kagflow.local.server.httpd import start_server
    data = tmp_path / "a" / "b" / "data"
    victim = tmp_path / "a" / "victim" / "precious-kernel" / "v1"  # where runs/../../../victim/... pointed
    victim.mkdir(parents=True)
    (victim / "precious.txt").write_text("keep me")
    outside_before = snapshot(tmp_path / "a" / "victim")
    notebook = json.dumps({"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5})
    with start_server(data) as srv:
        inside_before = snapshot(data)
        for name in ("../../../victim", "..", "a/b", "victim\x00", "a b"):
            resp = post(srv, "kernels.KernelsApiService/SaveKernel",
                        {"slug": "precious-kernel", "text": notebook, "language": "python",
                         "kernelType": "notebook"}, auth=(name, "k"))
            assert resp.status_code in (400, 401), (name, resp.text)
            assert "invalid username" in resp.json()["message"].lower()
        assert snapshot(data) == inside_before
    assert (victim / "precious.txt").read_text() == "keep me"
    assert snapshot(tmp_path / "a" / "victim") == outside_before


@pytest.mark.parametrize("field,value", [("ownerSlug", "../x"), ("datasetSlug", "a/../../b"), ("ownerSlug", "x" * 200),
                                         ("datasetSlug", "..")])
def test_names_in_requests_are_checked_at_the_edge(server, data_dir, field, value):
    before = snapshot(data_dir)
    body = {"ownerSlug": USER, "datasetSlug": "abcdef", field: value}
    assert_kaggle_error(post(server, "datasets.DatasetApiService/GetDatasetStatus", body), 400, "invalid")
    assert snapshot(data_dir) == before


def test_sandbox_paths_stay_inside_the_data_dir(server):
    from kagflow.local.server.jobs import sandbox_dir
    from kagflow.local.server.protocol import ApiError
    assert sandbox_dir(server.store, USER, "my-kernel", 3) == server.data_dir / "runs" / USER / "my-kernel" / "v3"
    for owner, slug in (("..", "x"), ("../../v", "x"), (USER, "../x"), (USER, ".")):
        with pytest.raises(ApiError):
            sandbox_dir(server.store, owner, slug, 1)


def test_deeply_nested_json_is_a_400(server, data_dir):
    before = snapshot(data_dir)
    deep = "[" * 100_000 + "]" * 100_000
    assert_kaggle_error(post(server, BLOB, None, raw=deep), 400, "nested too deeply")
    deep_obj = '{"name": ' + '{"a": ' * 100_000 + "1" + "}" * 100_001
    assert_kaggle_error(post(server, BLOB, None, raw=deep_obj), 400, "invalid json")
    assert snapshot(data_dir) == before


def test_huge_numbers_are_a_400(api, server, data_dir, tmp_path):
    from local_fixtures import wait_kernel, write_kernel
    api.kernels_push(str(write_kernel(tmp_path / "k", "numbers-kernel", "print(1)")))
    wait_kernel(api, f"{USER}/numbers-kernel")
    before = snapshot(data_dir)
    digits = "9" * 5000
    for junk in (digits, "²", "abcd"):  # opaque tokens this server never issued read as the first page
        assert post(server, "datasets.DatasetApiService/ListDatasets", {"pageToken": junk}).status_code == 200
    for label in (digits, "v" + digits, "v" + "9" * 30):
        assert_kaggle_error(post(server, "kernels.KernelsApiService/GetKernelSessionStatus",
                                 {"userName": USER, "kernelSlug": "numbers-kernel", "versionLabel": label}),
                            400, "version label")
    assert_kaggle_error(post(server, "kernels.KernelsApiService/CancelKernelSession", None,
                             raw='{"kernelSessionId": ' + "9" * 40 + "}"), 400, "64 bits")
    assert_kaggle_error(post(server, "kernels.KernelsApiService/CancelKernelSession", None,
                             raw='{"kernelSessionId": ' + digits + "}"), 400, "invalid json")
    head = (f"POST /api/v1/{BLOB} HTTP/1.1\r\nHost: x\r\nContent-Length: {digits}\r\n\r\n").encode()
    answer = raw_request(server, head, b"")
    assert b" 400 " in answer.split(b"\r\n", 1)[0] and b"Content-Length" in answer
    logs = requests.get(f"{server.url}/api/v1/kernels/logs/stream/{USER}/numbers-kernel?versionLabel={digits}",
                        auth=(USER, KEY), timeout=10)
    assert_kaggle_error(logs, 400, "version label")
    assert snapshot(data_dir) == before
