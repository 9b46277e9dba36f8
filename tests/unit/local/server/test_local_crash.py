"""The local Kaggle killed (SIGKILL) mid-operation and restarted on the same data folder; many clients at once.

Each server here is ``kagflow local serve`` in a real subprocess on a free 127.0.0.1 port with its own data
folder. It is killed from outside while a blob PUT or a kernel run is in flight, or kills itself as a chosen SQL
statement starts (``crash_on``: the exact moment inside a create). After the restart the data folder must be
sound (:func:`assert_sound`), what was there before intact, and the client's retry must finish the job once.
"""

from __future__ import annotations

import hashlib
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from kagflow.hub.client import build_api
from kagflow.local.control import find_free_port, health

from local_fixtures import *  # noqa: F401,F403
from local_fixtures import USER, gateway, wait_kernel, write_dataset, write_kernel, write_model_folders

# `kagflow local serve ARGS`; with KAGFLOW_TEST_CRASH_ON set, the process SIGKILLs itself as the first SQL
# statement matching that pattern starts in a request (so that statement never runs, as if the power went at
# that instant; the statements of opening the data folder, in the main thread, are left alone)
SERVE = """
import os, re, signal, sqlite3, sys, threading
crash_on = os.environ.pop("KAGFLOW_TEST_CRASH_ON", "")
if crash_on:
    pattern, connect = re.compile(crash_on), sqlite3.connect
    def crash(sql):
        if pattern.search(sql) and "process_request" in threading.current_thread().name:
            os.kill(os.getpid(), signal.SIGKILL)
    def connect_then_crash(*args, **kwargs):
        db = connect(*args, **kwargs)
        db.set_trace_callback(crash)
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
        self.crashes = 0

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
        self.crashes += 1

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
    assert served.crashes == 1 and result.created
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
    folders = write_model_folders(tmp_path / "m", "crash-model")
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
    assert served.crashes == 1
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


# ---------------------------------------------------------------------------- killed from outside

def test_killed_during_a_blob_put_the_upload_resumes(served, tmp_path, monkeypatch):
    """SIGKILL while a dataset version's 8 MB file is half sent: after the restart the official client resumes
    that same upload session from the bytes the dead server had kept, and version 2 holds exactly the files."""
    from kaggle.api import kaggle_api_extended

    from kagflow.hub.datasets import push_dataset

    halfway, go = threading.Event(), threading.Event()
    size = 8 << 20

    class PausingReader(kaggle_api_extended.TqdmBufferedReader):
        """The first upload body to pass half of ``size`` waits there (the PUT in flight) until ``go``."""

        def read(self, *args, **kwargs):
            if not halfway.is_set() and self.raw.tell() >= size // 2:
                halfway.set()
                go.wait(60)
            return super().read(*args, **kwargs)

    served.start()
    gw = gateway(build_api(served.url), served)
    folder = write_dataset(tmp_path / "ds", "crash-upload", {"rows.csv": "a\n1\n"})
    push_dataset(gw, folder)
    big = os.urandom(size)
    (folder / "big.bin").write_bytes(big)
    (folder / "rows.csv").write_text("a\n1\n2\n")
    monkeypatch.setattr(kaggle_api_extended, "TqdmBufferedReader", PausingReader)
    pushed = []
    worker = threading.Thread(target=lambda: pushed.append(push_dataset(gw, folder)), daemon=True)
    worker.start()
    assert halfway.wait(60)
    [part] = (served.data_dir / "uploads").glob("*.part")  # the server is receiving big.bin
    served.kill()
    kept = part.stat().st_size
    served.start()
    go.set()
    worker.join(120)
    assert pushed and pushed[0].uploaded, served.log()

    db = assert_sound(served.data_dir)
    assert _versions(db, "dataset_versions", "dataset_id") == [1, 2]
    # one upload session for big.bin, resumed after the restart (the server had kept `kept` bytes of it)
    assert [r[0] for r in db.execute("SELECT sha256 FROM uploads WHERE name='big.bin'")] == [
        hashlib.sha256(big).hexdigest()]
    assert 0 < kept < size
    api = build_api(served.url)
    for version, files in ((1, {"rows.csv": b"a\n1\n"}), (2, {"rows.csv": b"a\n1\n2\n", "big.bin": big})):
        for name, content in files.items():
            dest = tmp_path / f"v{version}"
            api.dataset_download_file(f"{USER}/crash-upload/{version}", name, path=str(dest), unzip=True)
            assert (dest / name).read_bytes() == content, (version, name)


def test_killed_during_a_kernel_run_the_run_ends_error_with_the_reason(served, tmp_path):
    """SIGKILL while a kernel runs: the sandbox and everything in it end with the server; after the restart that
    version is ERROR saying why, its log so far is kept, the version before it is intact and new runs work."""
    served.start()
    api = build_api(served.url)
    ref, runs = f"{USER}/crash-kernel", served.data_dir / "runs" / USER / "crash-kernel"
    folder = write_kernel(tmp_path / "k", "crash-kernel", "open('out.txt', 'w').write('one')")
    api.kernels_push(str(folder))
    assert wait_kernel(api, ref, timeout=300).status.name == "COMPLETE"
    write_kernel(folder, "crash-kernel", "import time\nprint('started', flush=True)\nopen('started', 'w').close()\n"
                                        "while True:\n    time.sleep(0.1)")
    assert api.kernels_push(str(folder)).version_number == 2
    deadline = time.monotonic() + 300
    while not (runs / "v2" / "working" / "started").exists():
        assert time.monotonic() < deadline, served.log()
        time.sleep(0.1)
    served.kill()  # returns once every process the server started (bwrap, executor, Jupyter kernel) is gone
    served.start()

    status = api.kernels_status(ref)
    assert status.status.name == "ERROR"
    assert "server stopped during the run" in status.failure_message
    api.kernels_output(ref, str(tmp_path / "out"))
    assert "started" in (tmp_path / "out" / "crash-kernel.log").read_text()
    assert (runs / "v1" / "working" / "out.txt").read_text() == "one"
    write_kernel(folder, "crash-kernel", "open('out.txt', 'w').write('three')")
    assert api.kernels_push(str(folder)).version_number == 3
    assert wait_kernel(api, ref, timeout=300).status.name == "COMPLETE"
    assert (runs / "v3" / "working" / "out.txt").read_text() == "three"
    assert_sound(served.data_dir)


# ---------------------------------------------------------------------------- many clients at once

def test_eight_parallel_dataset_versions_are_numbered_once_each_with_their_own_files(server, tmp_path):
    """Eight `kaggle datasets version` of one dataset at the same instant (the official client, one KaggleApi per
    thread): versions 2..9, each number once, each with the files and notes of exactly one of the uploads."""
    base = write_dataset(tmp_path / "base", "parallel-versions", {"part.csv": "n\n0\n", "same.csv": "s\n1\n"})
    assert build_api(server.url).dataset_create_new(str(base), quiet=True).status == "ok"
    folders = [write_dataset(tmp_path / f"u{i}", "parallel-versions",
                             {"part.csv": f"n\n{i}\n" * (i + 1), "same.csv": "s\n1\n"}) for i in range(1, 9)]
    start, answers = threading.Barrier(len(folders)), {}

    def version(i: int, folder: Path) -> None:
        api = build_api(server.url)
        start.wait()
        answers[i] = api.dataset_create_version(str(folder), f"upload {i}", quiet=True)

    threads = [threading.Thread(target=version, args=(i, f)) for i, f in enumerate(folders, start=1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert sorted(answers) == list(range(1, 9)) and all(a.status == "ok" for a in answers.values()), answers

    db = assert_sound(server.data_dir)
    rows = db.execute("SELECT v.number, v.notes, v.id FROM dataset_versions v JOIN datasets d ON d.id = v.dataset_id "
                      "WHERE d.slug='parallel-versions' ORDER BY v.number").fetchall()
    assert [r["number"] for r in rows] == list(range(1, 10))
    api = build_api(server.url)
    for row in rows[1:]:
        i = int(row["notes"].removeprefix("upload "))
        dest = tmp_path / "dl" / str(row["number"])
        for name, content in (("part.csv", f"n\n{i}\n" * (i + 1)), ("same.csv", "s\n1\n")):
            api.dataset_download_file(f"{USER}/parallel-versions/{row['number']}", name, path=str(dest))
            assert (dest / name).read_text() == content, (row["number"], name)
    assert sorted(int(r["notes"].removeprefix("upload ")) for r in rows[1:]) == list(range(1, 9))
