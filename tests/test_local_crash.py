"""The local Kaggle killed (SIGKILL) mid-operation and restarted on the same data folder; many clients at once.

Each server here is ``kagflow local serve`` in a real subprocess on a free 127.0.0.1 port with its own data
folder. It is killed from outside while a blob PUT or a kernel run is in flight, or kills itself as a chosen SQL
statement starts (``crash_on``: the exact moment inside a create). After the restart the data folder must be
sound (:func:`assert_sound`), what was there before intact, and the client's retry must finish the job once.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from local_fixtures import *  # noqa: F401,F403
from local_fixtures import USER, gateway, wait_kernel, write_dataset, write_kernel

from kagflow.hub.client import build_api
from kagflow.local.control import find_free_port, health

# `kagflow local serve ARGS`; with KAGFLOW_TEST_CRASH_ON set, the process SIGKILLs itself as the first SQL
# statement matching that pattern starts (so that statement never runs, as if the power went at that instant)
SERVE = """
import os, re, signal, sqlite3, sys
crash_on = os.environ.pop("KAGFLOW_TEST_CRASH_ON", "")
if crash_on:
    pattern, connect = re.compile(crash_on), sqlite3.connect
    def connect_then_crash(*args, **kwargs):
        db = connect(*args, **kwargs)
        db.set_trace_callback(lambda sql: pattern.search(sql) and os.kill(os.getpid(), signal.SIGKILL))
        return db
    sqlite3.connect = connect_then_crash
from kagflow.cli import main
main(["local", "serve", *sys.argv[1:]])
"""


class Served:
    """One data folder and one port, served by a `kagflow local serve` process that can be killed and restarted."""

    def __init__(self, data_dir: Path):
        self.data_dir = data_dir
        self.port = find_free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None

    def start(self, crash_on: str = "") -> "Served":
        env = {**os.environ, "KAGFLOW_TEST_CRASH_ON": crash_on}
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with open(self.data_dir.parent / "serve.log", "ab") as log:
            self.proc = subprocess.Popen([sys.executable, "-c", SERVE, "--port", str(self.port), "--data-dir",
                                          str(self.data_dir)], env=env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while health(self.url, timeout=0.5) is None:
            assert self.proc.poll() is None and time.monotonic() < deadline, self.log()
            time.sleep(0.05)
        return self

    def kill(self) -> None:
        """SIGKILL the server and every process it started (as a crash would end them: see `descendants`)."""
        children = descendants(self.proc.pid)
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)
        wait_gone(children)

    def crashed(self) -> None:
        """Wait for a ``crash_on`` server to have killed itself."""
        assert self.proc.wait(30) == -signal.SIGKILL, self.log()

    def restart_when_crashed(self) -> threading.Thread:
        """Restart the server as soon as it has crashed (while its client keeps retrying)."""
        thread = threading.Thread(target=lambda: (self.crashed(), self.start()), daemon=True)
        thread.start()
        return thread

    def log(self) -> str:
        path = self.data_dir.parent / "serve.log"
        return path.read_text(errors="replace")[-3000:] if path.is_file() else ""

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()


@pytest.fixture
def served(tmp_path, kaggle_env, monkeypatch):
    from kagflow.hub.retry import RetryPolicy

    # real waits between retries (the suite's default is none): the client outlasts a restart, as a user's would
    monkeypatch.setattr(RetryPolicy, "BASE_WAIT", 0.25)
    monkeypatch.setattr(RetryPolicy, "MAX_WAIT", 2.0)
    srv = Served(tmp_path / "data")
    try:
        yield srv
    finally:
        srv.close()


def descendants(pid: int) -> set[int]:
    """Every live process below ``pid`` (the kernel sandbox, its executor and Jupyter kernel)."""
    parents = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents[int(stat.parent.name)] = int(fields[1])
    found, frontier = set(), {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def wait_gone(pids: set[int], timeout: float = 30.0) -> None:
    """Until each of ``pids`` has exited (a zombie counts as exited: nobody may reap it in a container)."""
    deadline = time.monotonic() + timeout
    alive = set(pids)
    while alive and time.monotonic() < deadline:
        alive = {p for p in alive if _running(p)}
        time.sleep(0.05)
    assert not alive, {p: Path(f"/proc/{p}/cmdline").read_bytes()[:200] for p in alive if _running(p)}


def _running(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def assert_sound(data_dir: Path) -> sqlite3.Connection:
    """The database opens and passes SQLite's integrity check; no dataset or model instance is left without a
    version; every version's file names a blob on disk whose bytes hash to its name; no run is left RUNNING."""
    db = sqlite3.connect(data_dir / "kaggle.sqlite3")
    db.row_factory = sqlite3.Row
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert db.execute("SELECT slug FROM datasets WHERE id NOT IN (SELECT dataset_id FROM dataset_versions)"
                      ).fetchall() == []
    assert db.execute("SELECT slug FROM model_instances WHERE id NOT IN (SELECT instance_id FROM model_versions)"
                      ).fetchall() == []
    for row in db.execute("SELECT DISTINCT sha256 FROM files"):
        blob = data_dir / "blobs" / "sha256" / row[0][:2] / row[0]
        assert hashlib.sha256(blob.read_bytes()).hexdigest() == row[0], blob
    assert db.execute("SELECT COUNT(*) FROM kernel_versions WHERE status IN ('RUNNING', 'QUEUED')").fetchone()[0] == 0
    return db


def _versions(db: sqlite3.Connection, table: str, parent: str) -> list[int]:
    return [r[0] for r in db.execute(f"SELECT number FROM {table} ORDER BY {parent}, number")]


# ---------------------------------------------------------------------------- killed inside a create

@pytest.mark.parametrize("statement", ["INSERT INTO dataset_versions", "INSERT INTO files", "COMMIT"])
def test_killed_while_creating_a_dataset_leaves_no_half_made_dataset(served, tmp_path, statement):
    from kagflow.hub.datasets import push_dataset

    served.start(crash_on=statement)
    restart = served.restart_when_crashed()
    folder = write_dataset(tmp_path / "ds", "crash-create", {"rows.csv": "a,b\n1,2\n"})
    gw = gateway(build_api(served.url), served)
    result = push_dataset(gw, folder)  # the first try dies with the server; the retry finds nothing, creates
    restart.join(60)
    assert result.created
    db = assert_sound(served.data_dir)
    assert _versions(db, "dataset_versions", "dataset_id") == [1]
    assert [d.ref for d in build_api(served.url).dataset_list(mine=True)] == [f"{USER}/crash-create"]
    build_api(served.url).dataset_download_file(f"{USER}/crash-create", "rows.csv", path=str(tmp_path / "dl"))
    assert (tmp_path / "dl" / "rows.csv").read_text() == "a,b\n1,2\n"


@pytest.mark.parametrize("statement, what", [("INSERT INTO model_versions", "instance"),
                                             ("INSERT INTO files", "version")])
def test_killed_while_creating_a_model_instance_or_version(served, tmp_path, statement, what):
    """Killed inside CreateModelInstance (its first version) or CreateModelInstanceVersion: after the restart
    the earlier versions are intact, no instance is left without a version, and the retried create makes the
    version once."""
    folders = _model_folders(tmp_path / "m")
    ref = f"{USER}/crash-model/transformers/lora"
    served.start()
    api = build_api(served.url)
    api.model_create_new(str(folders / "model"))
    if what == "version":
        api.model_instance_create(str(folders / "instance"), quiet=True)
    served.kill()
    served.start(crash_on=statement)
    restart = served.restart_when_crashed()
    gw = gateway(build_api(served.url), served)
    if what == "instance":
        gw.call(lambda: _checked(gw.api.model_instance_create(str(folders / "instance"), quiet=True)),
                what="create model instance", uploads=True)
    else:
        gw.call(lambda: _checked(gw.api.model_instance_version_create(ref, str(folders / "v2"), quiet=True)),
                what="create model instance version", uploads=True,
                before_retry=lambda: True if _latest(gw, ref) == 2 else None)  # kagflow looks before it retries
    restart.join(60)
    db = assert_sound(served.data_dir)
    expect = {"instance": [1], "version": [1, 2]}[what]
    assert _versions(db, "model_versions", "instance_id") == expect
    for number in expect:
        files = api.model_instance_version_files(f"{ref}/{number}").files
        assert [f.name for f in files] == ["adapter_config.json"]
        tgz = api.model_instance_version_download(f"{ref}/{number}", path=str(tmp_path / f"dl{number}"))
        import tarfile

        with tarfile.open(tgz) as t:
            assert t.extractfile("adapter_config.json").read() == (b'{"r": 16}' if number == 1 else b'{"r": 8}')


def _checked(response):
    error = getattr(response, "error", None)
    assert not error, error
    return response


def _latest(gw, ref: str):
    versions = gw.call(lambda: gw.api.model_instance_versions_list(ref), what="list versions").version_list.versions
    return max((v.version_number for v in versions), default=None)


def _model_folders(root: Path) -> Path:
    (root / "model").mkdir(parents=True)
    (root / "model" / "model-metadata.json").write_text(json.dumps(
        {"ownerSlug": USER, "slug": "crash-model", "title": "Crash model", "isPrivate": True, "description": "x"}))
    (root / "instance").mkdir()
    (root / "instance" / "model-instance-metadata.json").write_text(json.dumps(
        {"ownerSlug": USER, "modelSlug": "crash-model", "instanceSlug": "lora", "framework": "transformers",
         "licenseName": "Apache 2.0"}))
    (root / "instance" / "adapter_config.json").write_text('{"r": 16}')
    (root / "v2").mkdir()
    (root / "v2" / "adapter_config.json").write_text('{"r": 8}')
    return root
