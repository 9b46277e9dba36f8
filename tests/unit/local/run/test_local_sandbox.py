"""A kernel under attack: it cannot escape the sandbox, read what is not its own, reach the server with a stolen key,
or exceed Kaggle's limits; one user's kernel never blocks another's; a key-checking server never runs one unconfined."""

from __future__ import annotations

import fcntl
import json
import os
import socket
import struct
import tempfile
import threading
import time
from pathlib import Path

import pytest

from kagflow.hub.client import build_api
from kagflow.local.run import runner, sandbox
from kagflow.local.run.limits import Limits
from kagflow.local.run.runner import run_notebook_in_sandbox
from kagflow.local.server.api import Settings
from kagflow.local.server.httpd import start_server

from local_fixtures import *  # noqa: F401,F403
from local_fixtures import KEY, USER, wait_kernel, write_dataset, write_kernel, write_notebook

NO_SANDBOX = sandbox.unavailable_reason()
needs_sandbox = pytest.mark.skipif(NO_SANDBOX is not None, reason=f"no bubblewrap sandbox here: {NO_SANDBOX}")
NO_NETWORK = NO_SANDBOX or sandbox.network_unavailable_reason()
needs_network = pytest.mark.skipif(NO_NETWORK is not None, reason=f"no slirp4netns network here: {NO_NETWORK}")
USERS = {USER: KEY, "bob": "bob-local-key"}

ATTEMPT = (
    "import os, subprocess\n"
    "def attempt(label, fn):\n"
    "    try:\n"
    "        result = fn()\n"
    "        print(label, 'DONE', repr(result)[:80])\n"
    "    except (OSError, subprocess.CalledProcessError) as exc:\n"
    "        print(label, 'refused', type(exc).__name__)\n"
    "def sh(cmd):\n"
    "    return subprocess.run(cmd, shell=True, check=True, capture_output=True, text=True).stdout\n")


def _stdout(log_path) -> str:
    return "".join(e["data"] for e in json.loads(Path(log_path).read_text()) if e["stream_name"] == "stdout")


def _server_log(api, ref: str, tmp_path: Path) -> str:
    api.kernels_output(ref, str(tmp_path / "out"), quiet=True)
    return (tmp_path / "out" / f"{ref.split('/')[1]}.log").read_text()


@pytest.fixture
def outside_tmp():
    """A folder outside /tmp (the sandbox's /tmp is private anyway): where a host's secrets would lie."""
    base = Path("/var/tmp")
    if not base.is_dir():
        pytest.skip("no /var/tmp on this machine")
    folder = Path(tempfile.mkdtemp(prefix="kagflow-sandbox-test-", dir=base))
    yield folder
    import shutil
    shutil.rmtree(folder, ignore_errors=True)


@needs_sandbox
def test_a_kernel_has_no_privilege_and_cannot_remount_or_write_outside(tmp_path, outside_tmp):
    marker = outside_tmp / "escaped.txt"
    escapes = [Path(f"/{top}/kagflow-escape-{os.getpid()}-{tmp_path.name}.txt") for top in ("usr", "etc")]
    try:
        _escape_attempts(tmp_path, marker, escapes)
    finally:  # a sandbox that failed would have written them on this machine
        for path in escapes:
            path.unlink(missing_ok=True)


def _escape_attempts(tmp_path: Path, marker: Path, escapes: list) -> None:
    nb = write_notebook(tmp_path / "nb.ipynb", ATTEMPT + (
        "print('uid', os.getuid(), os.getgid())\n"
        "print('capeff', open('/proc/self/status').read().split('CapEff:')[1].split()[0])\n"
        "attempt('remount-var', lambda: sh('mount -o remount,bind,rw /var'))\n"
        "attempt('remount-usr', lambda: sh('mount -o remount,bind,rw /usr'))\n"
        "attempt('mount-input', lambda: sh('mount -t tmpfs none /kaggle/input'))\n"
        "attempt('unshare', lambda: sh('unshare --user --map-root-user true'))\n"
        f"attempt('write-marker', lambda: open({str(marker)!r}, 'w').write('x'))\n"
        f"attempt('write-usr', lambda: open({str(escapes[0])!r}, 'w').write('x'))\n"
        f"attempt('write-etc', lambda: open({str(escapes[1])!r}, 'w').write('x'))\n"
        "attempt('write-root', lambda: open('/escaped.txt', 'w').write('x'))\n"
        "attempt('shadow', lambda: open('/etc/shadow').read())\n"
        "open('/kaggle/working/mine.txt', 'w').write('ok')\n"
        "print('pids', sorted(int(p) for p in os.listdir('/proc') if p.isdigit())[:2])\n"))
    status, failure, log = run_notebook_in_sandbox(nb, tmp_path / "sb", timeout=120, enable_internet=False)
    out = _stdout(log)
    assert status == "COMPLETE", failure
    assert "uid 1000 1000" in out and "capeff 0000000000000000" in out, out
    for label in ("remount-var", "remount-usr", "mount-input", "unshare", "write-marker", "write-usr", "write-etc",
                  "write-root", "shadow"):
        assert f"{label} refused" in out, out
    assert not marker.exists() and not any(path.exists() for path in escapes)
    assert "pids [1, 2]" in out  # a /proc of its own: the host's processes are not there
    owner = (tmp_path / "sb" / "working" / "mine.txt").stat().st_uid
    # on the host, the kernel is an unprivileged user (its server's own one when that is not root), never root
    assert owner == (sandbox.HOST_UID if os.geteuid() == 0 else os.geteuid())


def test_the_environment_is_an_allow_list(tmp_path, monkeypatch):
    """The server's secrets never reach a kernel, sandboxed or not; locale and the kernel's own variables do."""
    for name, value in (("KAGFLOW_LOCAL_USERS", "/srv/users.json"), ("HF_TOKEN", "hf_secret"),
                        ("SOME_TOKEN", "t0ken"), ("AWS_SECRET_ACCESS_KEY", "aws"), ("NVIDIA_API_KEY", "nv"),
                        ("KAGGLE_KEY", "kaggle"), ("DATABASE_URL", "postgres://u:p@h/db"), ("LC_ALL", "C.UTF-8")):
        monkeypatch.setenv(name, value)
    nb = write_notebook(tmp_path / "env.ipynb", "import json, os; print(json.dumps(dict(os.environ)))")
    for sandboxed in ([True, False] if NO_SANDBOX is None else [False]):
        if not sandboxed:
            monkeypatch.setattr(runner.bwrap, "unavailable_reason", lambda: "bubblewrap (bwrap) is not installed")
        status, failure, log = run_notebook_in_sandbox(nb, tmp_path / f"sb-{sandboxed}", timeout=60,
                                                       enable_internet=True)
        assert status == "COMPLETE", failure
        env = json.loads(_stdout(log).strip().splitlines()[-1])
        for secret in ("KAGFLOW_LOCAL_USERS", "HF_TOKEN", "SOME_TOKEN", "AWS_SECRET_ACCESS_KEY", "NVIDIA_API_KEY",
                       "KAGGLE_KEY", "DATABASE_URL"):
            assert secret not in env, (sandboxed, secret)
        assert not any(v in ("hf_secret", "t0ken", "aws", "nv", "kaggle") for v in env.values())
        assert env["LC_ALL"] == "C.UTF-8" and env["KAGGLE_KERNEL_RUN_TYPE"] == "Batch"
        assert env["HOME"] == ("/root" if sandboxed else str((tmp_path / "sb-False" / "home").resolve()))
        assert env["HOME"] != os.environ["HOME"]


@needs_sandbox
def test_keys_and_the_users_file_are_not_readable_from_a_pushed_kernel(outside_tmp, kaggle_env, monkeypatch, tmp_path):
    """A key-checking server as root: the users file, ~/.ssh, ~/.kaggle and /etc/shadow stay out of reach."""
    home = outside_tmp / "home"
    for path, text in ((home / ".ssh" / "id_ed25519", "PRIVATE KEY"), (home / ".kaggle" / "kaggle.json", '{"key": 1}'),
                       (outside_tmp / "users.json", json.dumps(USERS))):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        os.chmod(path, 0o600)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("KAGFLOW_LOCAL_USERS", str(outside_tmp / "users.json"))
    targets = [home / ".ssh" / "id_ed25519", home / ".kaggle" / "kaggle.json", outside_tmp / "users.json",
               Path("/etc/shadow"), home]
    code = ATTEMPT + "".join(f"attempt({str(t)!r}, lambda: open({str(t)!r}).read() if os.path.isfile({str(t)!r}) "
                             f"else os.listdir({str(t)!r}))\n" for t in targets)
    with start_server(tmp_path / "data", users=USERS, hide=[outside_tmp / "users.json"]) as srv:
        api = build_api(srv.url)
        api.kernels_push(str(write_kernel(tmp_path / "k", "secret-reader", code)))
        assert wait_kernel(api, f"{USER}/secret-reader").status.name == "COMPLETE"
        log = _server_log(api, f"{USER}/secret-reader", tmp_path)
    for target in targets:
        assert f"{target} refused" in log, log
    assert "PRIVATE KEY" not in log and KEY not in log


@needs_sandbox
def test_a_hidden_file_inside_a_visible_folder_reads_empty(tmp_path):
    """Wherever the users file lies (even under /etc), a hidden path is covered inside the sandbox."""
    nb = write_notebook(tmp_path / "nb.ipynb", "print(repr(open('/etc/hostname').read()))")
    status, failure, log = run_notebook_in_sandbox(nb, tmp_path / "sb", timeout=60, enable_internet=False,
                                                   hide=["/etc/hostname"])
    assert status == "COMPLETE", failure
    assert _stdout(log).strip() == "''"


def _outside_address() -> str:
    """A non-loopback IPv4 address of this machine: "the outside" as an internet-on kernel sees it."""
    for _, name in socket.if_nameindex():
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            try:
                packed = fcntl.ioctl(s.fileno(), 0x8915, struct.pack("256s", name.encode()[:15]))  # SIOCGIFADDR
            except OSError:
                continue
        address = socket.inet_ntoa(packed[20:24])
        if not address.startswith("127."):
            return address
    pytest.skip("this machine has no non-loopback address to stand for the outside")


@needs_network
def test_an_internet_on_kernel_reaches_out_but_not_the_server_with_a_stolen_key(kaggle_env, tmp_path):
    outside = socket.socket()
    outside.bind((_outside_address(), 0))
    outside.listen()
    threading.Thread(target=lambda: [c.sendall(b"outside ok") or c.close() for c, _ in iter(outside.accept, None)],
                     daemon=True).start()
    with start_server(tmp_path / "data", users=USERS) as srv:
        bob = build_api(srv.url)
        bob.config_values.update(username="bob", key=USERS["bob"])
        folder = write_dataset(tmp_path / "ds", "bob-private", {"secret.csv": "bob's secret\n"}, owner="bob")
        bob.dataset_create_new(str(folder), quiet=True)  # private by default
        host, port = outside.getsockname()
        code = ATTEMPT + (
            "import base64, json, socket, urllib.request\n"
            f"auth = 'Basic ' + base64.b64encode(b'bob:{USERS['bob']}').decode()\n"
            "def download(url):\n"
            "    body = json.dumps({'ownerSlug': 'bob', 'datasetSlug': 'bob-private'}).encode()\n"
            "    req = urllib.request.Request(url + '/api/v1/datasets.DatasetApiService/DownloadDataset', body,\n"
            "                                 {'Authorization': auth, 'Content-Type': 'application/json'})\n"
            "    return urllib.request.urlopen(req, timeout=5).read()\n"
            f"attempt('server', lambda: download({srv.url!r}))\n"
            f"attempt('host-alias', lambda: download('http://10.0.2.2:{srv.port}'))\n"
            f"attempt('outside', lambda: socket.create_connection(({host!r}, {port}), timeout=10).recv(100))\n")
        api = build_api(srv.url)
        api.kernels_push(str(write_kernel(tmp_path / "k", "key-thief", code, enable_internet=True)))
        assert wait_kernel(api, f"{USER}/key-thief").status.name == "COMPLETE"
        log = _server_log(api, f"{USER}/key-thief", tmp_path)
    assert "server refused" in log and "host-alias refused" in log, log
    assert "bob's secret" not in log
    assert "outside DONE b'outside ok'" in log, log


def test_a_key_checking_server_refuses_to_run_kernels_unconfined(kaggle_env, tmp_path, monkeypatch):
    monkeypatch.setattr(sandbox, "unavailable_reason", lambda: "bubblewrap (bwrap) is not installed")
    with start_server(tmp_path / "data", users=USERS) as srv:
        api = build_api(srv.url)
        api.kernels_push(str(write_kernel(tmp_path / "k", "unconfined", "open('ran.txt', 'w').write('x')")))
        status = wait_kernel(api, f"{USER}/unconfined")
    assert status.status.name == "ERROR"
    assert "only in a sandbox" in status.failure_message and "apt-get install bubblewrap" in status.failure_message
    assert not (tmp_path / "data" / "runs" / USER / "unconfined" / "v1" / "working" / "ran.txt").exists()


@needs_sandbox
def test_without_slirp4netns_internet_on_kernels_are_refused_with_keys_and_warned_without(kaggle_env, tmp_path,
                                                                                         monkeypatch):
    monkeypatch.setattr(sandbox, "network_unavailable_reason",
                        lambda: "slirp4netns is not installed; on Debian/Ubuntu: apt-get install slirp4netns")
    with start_server(tmp_path / "data", users=USERS) as srv:
        api = build_api(srv.url)
        api.kernels_push(str(write_kernel(tmp_path / "k", "online", "print('ran')", enable_internet=True)))
        status = wait_kernel(api, f"{USER}/online")
        api.kernels_push(str(write_kernel(tmp_path / "k2", "offline", "print('ran')")))
        assert wait_kernel(api, f"{USER}/offline").status.name == "COMPLETE"  # internet off needs no slirp4netns
    assert status.status.name == "ERROR" and "apt-get install slirp4netns" in status.failure_message
    nb = write_notebook(tmp_path / "nb.ipynb", "print('ran')")
    result, failure, log = run_notebook_in_sandbox(nb, tmp_path / "sb", timeout=60, enable_internet=True)
    assert result == "COMPLETE", failure  # the single-user default runs it, on the host's network, and says so
    assert "shares the host's network" in log.read_text()


@needs_sandbox
@pytest.mark.parametrize("limits,code,fragment", [
    (Limits(pids=64), "import subprocess\nprocs = [subprocess.Popen(['sleep', '60']) for _ in range(200)]",
     "limit of 64 processes"),
    (Limits(file_bytes=1 << 20), "open('/kaggle/working/big.bin', 'wb').write(b'x' * (2 << 20))",
     "file size limit of 1 MiB"),
    (Limits(memory_bytes=256 << 20), "hog = b'x' * (1 << 30)", "more memory than is available"),
    (Limits(working_bytes=1 << 20),
     "import time\nfor i in range(3): open(f'/kaggle/working/part{i}.bin', 'wb').write(b'x' * (512 << 10))\n"
     "time.sleep(60)", "Disk limit exceeded: /kaggle/working"),
], ids=["pids", "file-size", "memory", "working-disk"])
def test_a_limit_ends_the_run_in_error_with_a_reason(tmp_path, monkeypatch, limits, code, fragment):
    monkeypatch.setattr(runner, "WATCH_S", 0.2)
    nb = write_notebook(tmp_path / "nb.ipynb", "print('started', flush=True)", code)
    status, failure, log = run_notebook_in_sandbox(nb, tmp_path / "sb", timeout=120, enable_internet=False,
                                                   limits=limits)
    assert status == "ERROR" and fragment in failure, failure
    assert "this run's limits:" in json.loads(log.read_text())[0]["data"]


def test_a_session_timeout_above_the_ceiling_is_capped(kaggle_env, tmp_path):
    assert Limits().session(13 * 3600)[0] == 12 * 3600
    settings = Settings(kernel_limits=Limits(session_s=3))
    with start_server(tmp_path / "data", settings=settings) as srv:
        api = build_api(srv.url)
        api.kernels_push(str(write_kernel(tmp_path / "k", "overlong", "import time; time.sleep(60)")),
                         timeout=str(24 * 3600))
        status = wait_kernel(api, f"{USER}/overlong")
        log = _server_log(api, f"{USER}/overlong", tmp_path)
    assert status.status.name == "ERROR" and "time limit of 3 seconds" in status.failure_message
    assert "session timeout of 86400 s is above the session limit of 3 s" in log


def test_one_users_long_kernel_does_not_block_another_user(kaggle_env, tmp_path):
    with start_server(tmp_path / "data", settings=Settings(kernel_sessions_per_user=1)) as srv:
        alice, bob = build_api(srv.url), build_api(srv.url)
        bob.config_values.update(username="bob", key="bob-key")
        for slug in ("long-one", "long-two"):
            alice.kernels_push(str(write_kernel(tmp_path / slug, slug, "import time; time.sleep(60)")))
        _wait_status(alice, f"{USER}/long-one", "RUNNING")
        bob.kernels_push(str(write_kernel(tmp_path / "short", "short-one", "print('bob ran')", owner="bob")))
        assert wait_kernel(bob, "bob/short-one").status.name == "COMPLETE"
        assert alice.kernels_status(f"{USER}/long-one").status.name == "RUNNING"
        assert alice.kernels_status(f"{USER}/long-two").status.name == "QUEUED"  # alice's cap: one at a time
        for slug in ("long-two", "long-one"):
            srv.cancel_kernel(USER, slug)


def _wait_status(api, ref: str, wanted: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while api.kernels_status(ref).status.name != wanted:
        assert time.monotonic() < deadline, f"{ref} never became {wanted}"
        time.sleep(0.1)


def test_files_the_kernel_wrote_are_read_back_without_following_its_links(tmp_path):
    """The kernel owns its /kagflow folder: the runner (root) reads result.json and executed.ipynb from it as they
    are, never through a symlink to a host file or a FIFO put in their place; its own log lies outside."""
    secret = tmp_path / "secret.json"
    secret.write_text('{"status": "ERROR", "failure": "the host secret"}')
    (tmp_path / "link.json").symlink_to(secret)
    os.mkfifo(tmp_path / "fifo.json")
    (tmp_path / "own.json").write_text('{"status": "COMPLETE"}')
    for name in ("link.json", "fifo.json"):
        with pytest.raises(OSError):
            runner.kernel_file(tmp_path / name)
    assert runner.kernel_file(tmp_path / "own.json") == b'{"status": "COMPLETE"}'
    nb = write_notebook(tmp_path / "nb.ipynb", "import os; print(sorted(os.listdir('/kagflow')))")
    status, failure, log = run_notebook_in_sandbox(nb, tmp_path / "sb", timeout=60, enable_internet=False)
    assert status == "COMPLETE", failure
    assert "executor.log" not in _stdout(log) and (tmp_path / "sb" / "executor.log").is_file()


LAUNCHER = """
import os, sys, tempfile, time
from pathlib import Path
from kagflow.local.run import sandbox
from kagflow.local.run.limits import Limits
root = Path(tempfile.mkdtemp(dir=sys.argv[1]))
layout = sandbox.Layout.of(root)
for path in (layout.input, layout.working, layout.temp, layout.internal):
    path.mkdir()
layout.log.write_text("[]")
layout.write_etc()
for path in layout.writable() if sandbox.run_as() is not None else ():
    os.chown(path, sandbox.run_as(), sandbox.run_as())
running = sandbox.launch(["sleep", "600"], layout, internet=sys.argv[2], env={"PATH": "/usr/bin:/bin"},
                         prefix=Limits().enforce().prefix())
print("started", flush=True)
time.sleep(600)
"""


@needs_sandbox
@pytest.mark.parametrize("internet", ["off", "slirp"])
def test_the_sandbox_and_its_network_end_with_a_killed_server(tmp_path, internet):
    """SIGKILL of the process that started a sandbox (the server) ends every process of it, slirp4netns included."""
    import subprocess
    import sys

    if internet == "slirp" and NO_NETWORK is not None:
        pytest.skip(f"no slirp4netns network here: {NO_NETWORK}")
    os.chmod(tmp_path, 0o755)
    server = subprocess.Popen([sys.executable, "-c", LAUNCHER, str(tmp_path), internet], stdout=subprocess.PIPE,
                              text=True)
    try:
        assert server.stdout.readline().strip() == "started"
        deadline = time.monotonic() + 30
        started = _descendants(server.pid)
        while not any(_cmdline(p).startswith(b"sleep\0") for p in started):
            assert time.monotonic() < deadline and server.poll() is None, "the sandbox did not start"
            time.sleep(0.05)
            started = _descendants(server.pid)
        assert internet == "off" or any(_cmdline(p).startswith(b"slirp4netns\0") for p in started)
    finally:
        server.kill()
        server.wait()
    deadline = time.monotonic() + 30
    while (alive := {p for p in started if _alive(p)}) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not alive, {p: _cmdline(p)[:120] for p in alive}


def _descendants(pid: int) -> set[int]:
    parents = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parents[int(stat.parent.name)] = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
    found, frontier = set(), {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def _alive(pid: int) -> bool:
    """Running (a zombie counts as gone: nobody may reap it in a container)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False
