"""Uploads and downloads: resumable, streamed in chunks, stored once per content, ranged."""

from __future__ import annotations

import hashlib
import os
import threading
import time

import psutil
import requests

from kagflow.local.server import transfer
from kagflow.local.server.faults import FaultRule, Faults

from local_fixtures import *  # noqa: F401,F403
from local_fixtures import KEY, USER, gateway, write_dataset

BLOB = "blobs.BlobApiService/StartBlobUpload"


def start_upload(server, name, size):
    resp = requests.post(f"{server.url}/api/v1/{BLOB}", auth=(USER, KEY), timeout=10,
                         json={"type": "DATASET", "name": name, "contentLength": size})
    resp.raise_for_status()
    return resp.json()


def test_resume_protocol_answers_308_with_range(server):
    payload = os.urandom(3000)
    up = start_upload(server, "part.bin", len(payload))
    url = up["createUrl"]
    query = {"Content-Length": "0", "Content-Range": f"bytes */{len(payload)}"}
    first = requests.put(url, headers=query, timeout=10)
    assert first.status_code == 308 and "Range" not in first.headers  # nothing received yet
    part = requests.put(url, data=payload[:1000], timeout=10,
                        headers={"Content-Range": f"bytes 0-999/{len(payload)}"})
    assert part.status_code == 308 and part.headers["Range"] == "bytes=0-999"
    assert requests.put(url, headers=query, timeout=10).headers["Range"] == "bytes=0-999"
    rest = requests.put(url, data=payload[1000:], timeout=10,
                        headers={"Content-Range": f"bytes 1000-2999/{len(payload)}"})
    assert rest.status_code == 200
    assert requests.put(url, headers=query, timeout=10).status_code == 200
    sha = hashlib.sha256(payload).hexdigest()
    assert server.store.blob_path(sha).read_bytes() == payload


def test_official_client_resumes_a_dropped_upload(api, server, tmp_path):
    """The first PUT is cut after half its body; kagflow's retry re-runs the call and the client
    asks what arrived and sends the rest."""
    payload = os.urandom(300_000)
    ds = write_dataset(tmp_path / "ds", "resumed-upload", {"blob.bin": payload})
    server.faults = Faults({"upload": FaultRule(rate_drop=1.0, limit=1)}, seed=7)
    gw = gateway(api, server)
    assert gw.call(lambda: api.dataset_create_new(str(ds), quiet=True), what="create dataset",
                   uploads=True).status == "ok"
    assert server.faults.rules["upload"].injected == 1
    api.dataset_download_file(f"{USER}/resumed-upload", "blob.bin", path=str(tmp_path / "dl"))
    assert (tmp_path / "dl" / "blob.bin").read_bytes() == payload


def test_unchanged_files_are_stored_once(api, server, tmp_path):
    ds = write_dataset(tmp_path / "ds", "dedup-check", {"same.csv": "x,y\n1,2\n", "other.csv": "q\n"})
    api.dataset_create_new(str(ds), quiet=True)
    def blobs():
        return {p.name for p in (server.data_dir / "blobs").rglob("*") if p.is_file()}
    first = blobs()
    api.dataset_create_version(str(ds), "same content", quiet=True)
    assert blobs() == first
    (ds / "other.csv").write_text("q\nchanged\n")
    api.dataset_create_version(str(ds), "one file changed", quiet=True)
    assert len(blobs() - first) == 1
    rows = server.store.all("SELECT COUNT(DISTINCT sha256) AS n, COUNT(*) AS total FROM files "
                            "WHERE set_kind='dataset_version'")
    assert (rows[0]["n"], rows[0]["total"]) == (3, 6)


def test_large_upload_and_download_keep_memory_flat(api, server, tmp_path):
    """200 MB up and down through the official client: server-side bodies move in 1 MiB chunks."""
    big = tmp_path / "ds" / "weights.bin"
    big.parent.mkdir()
    with open(big, "wb") as f:  # sparse: costs no disk until read
        f.truncate(200 << 20)
    write_dataset(tmp_path / "ds", "big-weights", {})
    reads = []
    original = transfer._copy_body

    def spy(rfile, out, length, digest):
        real_read = rfile.read
        sizes = []

        class Counting:
            def read(self, n):
                sizes.append(n)
                return real_read(n)
        got = original(Counting(), out, length, digest)
        reads.append(max(sizes) if sizes else 0)
        return got

    transfer._copy_body = spy
    proc = psutil.Process()
    rss_before = proc.memory_info().rss
    peak = [rss_before]
    stop = threading.Event()

    def sample():
        while not stop.is_set():
            peak[0] = max(peak[0], proc.memory_info().rss)
            time.sleep(0.05)
    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        assert api.dataset_create_new(str(tmp_path / "ds"), quiet=True).status == "ok"
        api.dataset_download_file(f"{USER}/big-weights", "weights.bin", path=str(tmp_path / "dl"))
    finally:
        stop.set()
        sampler.join()
        transfer._copy_body = original
    assert reads and max(reads) <= transfer.CHUNK
    assert (tmp_path / "dl" / "weights.bin").stat().st_size == 200 << 20
    assert peak[0] - rss_before < 64 << 20, f"RSS grew by {(peak[0] - rss_before) >> 20} MiB"


def test_ranged_download(api, server, tmp_path):
    payload = bytes(range(256)) * 40
    api.dataset_create_new(str(write_dataset(tmp_path / "ds", "ranged-file", {"r.bin": payload})), quiet=True)
    redirect = requests.post(f"{server.url}/api/v1/datasets.DatasetApiService/DownloadDataset", auth=(USER, KEY),
                             json={"ownerSlug": USER, "datasetSlug": "ranged-file", "fileName": "r.bin"},
                             allow_redirects=False, timeout=10)
    assert redirect.status_code == 302
    url = redirect.headers["Location"]
    whole = requests.get(url, timeout=10)
    assert whole.content == payload and whole.headers["Accept-Ranges"] == "bytes"
    part = requests.get(url, headers={"Range": "bytes=100-"}, timeout=10)
    assert part.status_code == 206 and part.content == payload[100:]
    stale = requests.get(url, headers={"Range": "bytes=100-", "If-Range": '"other"'}, timeout=10)
    assert stale.status_code == 200 and stale.content == payload
    assert requests.get(url, headers={"Range": f"bytes={len(payload)}-"}, timeout=10).status_code == 416
