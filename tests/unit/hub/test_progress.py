"""Progress of transfers: plain lines off a terminal (bytes, rate, ETA), through the real client."""

from __future__ import annotations

import io

from kagflow import progress
from kagflow.progress import Transfer, Transfers

from local_fixtures import *  # noqa: F401,F403
from local_fixtures import USER, gateway, write_dataset


def test_plain_lines_every_interval_with_bytes_rate_and_eta(monkeypatch):
    monkeypatch.setattr(Transfers, "PLAIN_EVERY", 10.0)
    now = [0.0]
    out = io.StringIO()
    bar = Transfer("upload model.safetensors", 100_000_000, stream=out, clock=lambda: now[0])
    for _ in range(4):
        now[0] += 5.0
        bar.advance(10_000_000)
    bar.close()
    lines = out.getvalue().splitlines()
    assert lines[0] == "upload model.safetensors: 20.0 MB of 100.0 MB (20%), 2.0 MB/s, about 40s left"
    assert lines[-1].startswith("upload model.safetensors: 40.0 MB of 100.0 MB (40%)") and lines[-1].endswith("(done)")
    assert len(lines) == 3


def test_small_quick_transfers_print_nothing():
    out = io.StringIO()
    with progress.transfer("download tiny.txt", 10) as bar:
        bar.stream = out
        bar.advance(10)
    assert out.getvalue() == ""


def test_uploads_and_downloads_of_the_real_client_report_progress(server, api, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(Transfers, "MIN_BYTES", 0)
    payload = b"x" * 200_000
    ds = write_dataset(tmp_path / "ds", "progress-check", {"blob.bin": payload})
    gw = gateway(api, server)
    gw.call(lambda: api.dataset_create_new(str(ds), quiet=True), what="create dataset", uploads=True)
    api.dataset_download_file(f"{USER}/progress-check", "blob.bin", path=str(tmp_path / "dl"), quiet=True)
    err = capsys.readouterr().err
    assert "upload blob.bin: 0.2 MB of 0.2 MB (100%)" in err and "download blob.bin: 0.2 MB" in err


def test_watch_folder_reports_growth(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(Transfers, "MIN_BYTES", 0)
    with progress.watch_folder(tmp_path / "dl", "fetch 1 wheel(s)", interval=0.01):
        (tmp_path / "dl").mkdir()
        (tmp_path / "dl" / "a-1.0-py3-none-any.whl").write_bytes(b"w" * 300_000)
    assert "fetch 1 wheel(s): 0.3 MB" in capsys.readouterr().err
