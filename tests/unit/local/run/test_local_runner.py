"""The kernel runner: sandbox, environment, no internet, time limit, cancel, outputs."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest

from kagflow.local.run import runner
from kagflow.local.run.runner import run_notebook_in_sandbox
from kagflow.local.run.sandbox import unavailable_reason

from local_fixtures import *  # noqa: F401,F403
from local_fixtures import USER, snapshot, wait_kernel, write_kernel, write_notebook

NETWORK_PROBE = (
    "import socket, urllib.request, time\n"
    "t = time.monotonic()\n"
    "for target in [('93.184.216.34', 80), ('example.com', 80)]:\n"
    "    try:\n"
    "        socket.create_connection(target, timeout=10)\n"
    "        print('connected', target)\n"
    "    except OSError as exc:\n"
    "        print('blocked', target[0], type(exc).__name__)\n"
    "try:\n"
    "    urllib.request.urlopen('http://example.com/', timeout=10)\n"
    "except Exception as exc:\n"
    "    print('urlopen failed', type(exc).__name__)\n"
    "s = socket.socket(); s.bind(('127.0.0.1', 0)); s.listen(); c = socket.create_connection(s.getsockname())\n"
    "print('loopback ok')\n"
    "print('elapsed', round(time.monotonic() - t, 1))\n")


def _stdout(log_path) -> str:
    return "".join(e["data"] for e in json.loads(log_path.read_text()) if e["stream_name"] == "stdout")


def test_internet_off_fails_fast_but_loopback_works(tmp_path):
    nb = write_notebook(tmp_path / "net.ipynb", NETWORK_PROBE)
    status, failure, log = run_notebook_in_sandbox(nb, tmp_path / "sb", timeout=60, enable_internet=False)
    out = _stdout(log)
    assert status == "COMPLETE", failure
    assert "blocked 93.184.216.34 OSError" in out and "blocked example.com" in out
    assert "urlopen failed URLError" in out and "loopback ok" in out and "connected" not in out
    assert float(out.split("elapsed ")[1]) < 5


def test_sandbox_env_and_layout(tmp_path):
    nb = write_notebook(tmp_path / "env.ipynb",
                        "import os, json\n"
                        "keys = ['KAGFLOW_INPUT_ROOT', 'KAGFLOW_WORKING_ROOT', 'KAGGLE_KERNEL_RUN_TYPE', 'EXTRA']\n"
                        "print(json.dumps({k: os.environ.get(k) for k in keys}))\n"
                        "print(os.getcwd(), 'KAGGLE_KEY' in os.environ)\n"
                        "print(open('/kaggle/input/data/in.txt').read())\n"
                        "open('/kaggle/working/result.txt', 'w').write('done')\n"
                        "open('/kaggle/temp/scratch.txt', 'w').write('tmp')")
    sandbox = (tmp_path / "sb").resolve()
    (sandbox / "input" / "data").mkdir(parents=True)
    (sandbox / "input" / "data" / "in.txt").write_text("input file")
    status, failure, log = run_notebook_in_sandbox(nb, sandbox, timeout=60, enable_internet=True,
                                                   env={"EXTRA": "1"})
    lines = _stdout(log).splitlines()
    assert status == "COMPLETE", failure
    assert json.loads(lines[0]) == {"KAGFLOW_INPUT_ROOT": "/kaggle/input", "KAGFLOW_WORKING_ROOT": "/kaggle/working",
                                    "KAGGLE_KERNEL_RUN_TYPE": "Batch", "EXTRA": "1"}
    assert lines[1:3] == ["/kaggle/working False", "input file"]
    assert (sandbox / "working" / "result.txt").read_text() == "done"
    assert (sandbox / "temp" / "scratch.txt").read_text() == "tmp"


ESCAPES = (
    "import os, subprocess\n"
    "def attempt(label, fn):\n"
    "    try:\n"
    "        fn()\n"
    "        print(label, 'DONE')\n"
    "    except OSError as exc:\n"
    "        print(label, 'refused', type(exc).__name__)\n"
    "attempt('input', lambda: open('/kaggle/input/data/in.txt', 'a').write('x'))\n"
    "attempt('new-input', lambda: open('/kaggle/input/new.txt', 'w').write('x'))\n"
    "attempt('root', lambda: open('/escaped.txt', 'w').write('x'))\n"
    "attempt('outside', lambda: open({outside!r}, 'w').write('x'))\n"
    "attempt('hidden', lambda: print(os.listdir({hidden!r})))\n"
    "attempt('secret', lambda: open({secret!r}).read())\n"
    "attempt('tmp', lambda: open('/tmp/in-tmp.txt', 'w').write('x'))\n"
    "print('tmp holds', os.listdir('/tmp'))\n"
    "print(subprocess.run(['cat', '/proc/net/dev'], capture_output=True, text=True).stdout)\n")


def _interfaces(text: str) -> set:
    return {line.split(":")[0].strip() for line in text.splitlines() if ":" in line}


@pytest.mark.skipif(unavailable_reason() is not None, reason="no bubblewrap sandbox here")
@pytest.mark.parametrize("internet", [False, True])
def test_the_sandbox_confines_files_and_network(tmp_path, internet):
    hidden = tmp_path / "server-data"
    (hidden / "runs" / "other").mkdir(parents=True)
    secret = hidden / "runs" / "other" / "secret.txt"
    secret.write_text("another run's output")
    outside = tmp_path / "outside.txt"
    sandbox = tmp_path / "sb"
    (sandbox / "input" / "data").mkdir(parents=True)
    (sandbox / "input" / "data" / "in.txt").write_text("input file")
    before = snapshot(tmp_path)
    nb = write_notebook(tmp_path / "nb" / "escape.ipynb",
                        ESCAPES.format(outside=str(outside), hidden=str(hidden), secret=str(secret)))
    status, failure, log = run_notebook_in_sandbox(nb, sandbox, timeout=60, enable_internet=internet,
                                                   hide=[hidden])
    out = _stdout(log)
    assert status == "COMPLETE", failure
    for label in ("input", "new-input", "root", "secret", "hidden"):
        assert f"{label} refused" in out, out  # the server's data folder is not there at all
    assert "tmp DONE" in out and "in-tmp.txt" in out.split("tmp holds", 1)[1]  # a private /tmp
    assert not Path("/tmp/in-tmp.txt").exists() and not outside.exists()
    after = {k: v for k, v in snapshot(tmp_path).items() if not k.startswith(("sb/", "nb/"))}
    assert after == {k: v for k, v in before.items() if not k.startswith("sb/")}  # nothing written outside
    assert (sandbox / "input" / "data" / "in.txt").read_text() == "input file"
    seen = _interfaces(out.split("tmp holds", 1)[1])
    assert seen == ({"lo", "tap0"} if internet else {"lo"})  # a network of its own, through slirp4netns


def test_without_bubblewrap_the_run_is_unconfined_and_says_so_once(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(runner.bwrap, "unavailable_reason", lambda: "bubblewrap (bwrap) is not installed")
    nb = write_notebook(tmp_path / "env.ipynb", "import os\nprint(os.environ['KAGFLOW_INPUT_ROOT'], os.getcwd())")
    status, failure, log = run_notebook_in_sandbox(nb, tmp_path / "sb", timeout=60, enable_internet=False)
    sandbox = (tmp_path / "sb").resolve()
    assert status == "COMPLETE", failure
    assert _stdout(log).strip() == f"{sandbox / 'input'} {sandbox / 'working'}"
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and "no sandbox for this kernel run (bubblewrap (bwrap) is not installed)" in lines[0]


def test_time_limit_and_cancel(tmp_path):
    nb = write_notebook(tmp_path / "slow.ipynb", "print('going to sleep', flush=True)", "import time; time.sleep(60)")
    t0 = time.monotonic()
    status, failure, log = run_notebook_in_sandbox(nb, tmp_path / "sb1", timeout=10, enable_internet=False)
    assert status == "ERROR" and failure.startswith("Timeout") and time.monotonic() - t0 < 30
    assert "going to sleep" in _stdout(log) and "time limit" in log.read_text()

    cancel = threading.Event()
    threading.Timer(2.0, cancel.set).start()
    status, failure, log = run_notebook_in_sandbox(nb, tmp_path / "sb2", timeout=60, enable_internet=False,
                                                   cancel=cancel)
    assert status == "CANCEL_ACKNOWLEDGED" and "cancelled" in log.read_text()


def test_cancel_through_the_api_and_outputs_stay_inside_working(server, api, tmp_path):
    api.kernels_push(str(write_kernel(tmp_path / "long", "long-running", "import time; time.sleep(60)")))
    leaky = write_kernel(tmp_path / "leak", "leaky-output",
                         "import os\nos.symlink('/etc/passwd', 'passwd')\nos.symlink('/etc', 'etc-dir')\n"
                         "open('real.txt', 'w').write('x')")
    api.kernels_push(str(leaky))
    for _ in range(100):
        if api.kernels_status(f"{USER}/long-running").status.name == "RUNNING":
            break
        time.sleep(0.1)
    assert server.cancel_kernel(USER, "long-running")
    assert wait_kernel(api, f"{USER}/long-running").status.name == "CANCEL_ACKNOWLEDGED"
    assert wait_kernel(api, f"{USER}/leaky-output").status.name == "COMPLETE"
    files, _ = api.kernels_output(f"{USER}/leaky-output", str(tmp_path / "out"))
    assert sorted(f.rsplit("/", 1)[1] for f in files) == ["leaky-output.log", "real.txt"]


def test_the_kernel_runs_on_the_given_python_and_pip_installs_into_the_run(tmp_path):
    import sys
    nb = write_notebook(tmp_path / "py.ipynb", "import os, sys; print(sys.executable); print(os.environ['PIP_TARGET'])")
    status, _, log = run_notebook_in_sandbox(nb, tmp_path / "sb", timeout=60, enable_internet=True,
                                             python=sys.executable)
    executable, target = _stdout(log).split()
    assert status == "COMPLETE" and executable == sys.executable
    assert target.endswith("/site") and target.startswith(("/kagflow", str(tmp_path)))


@pytest.mark.skipif(unavailable_reason() is not None, reason="no bubblewrap sandbox here")
def test_a_kernel_python_under_tmp_is_visible_in_the_sandbox(tmp_path):
    """The sandbox's /tmp is empty; an interpreter environment that lives under /tmp (a clone or an image
    cache there, as on CI) must still be reachable, read-only."""
    import subprocess
    import sys
    import sysconfig
    assert str(tmp_path).startswith("/tmp/")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    purelib = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    site = Path(subprocess.run([str(venv / "bin" / "python"), "-c", purelib],
                               check=True, capture_output=True, text=True).stdout.strip())
    (site / "outer.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")  # ipykernel from this venv
    nb = write_notebook(tmp_path / "py.ipynb", "import sys; print(sys.prefix)\nopen(sys.prefix + '/x', 'w')")
    status, failure, log = run_notebook_in_sandbox(nb, tmp_path / "sb", timeout=120, enable_internet=False,
                                                   python=str(venv / "bin" / "python"))
    assert status == "ERROR" and "Read-only file system" in failure, failure
    assert _stdout(log).split() == [str(venv)]


KAGGLE_STYLE = (
    "import os, subprocess\n"
    "rows = open('/kaggle/input/numbers/rows.csv').read()\n"
    "assert rows == open('/kaggle/input/datasets/alice/numbers/rows.csv').read()\n"
    "open('/kaggle/working/doubled.csv', 'w').write(rows + rows)\n"
    "for path in [{data!r}, {db!r}, {other!r}]:\n"
    "    try:\n"
    "        print(path, 'READ', len(open(path, 'rb').read()))\n"
    "    except OSError as exc:\n"
    "        print(path, 'refused', type(exc).__name__)\n"
    "print('listing', os.path.exists({data!r}))\n"
    "print('interfaces', subprocess.run(['cat', '/proc/net/dev'], capture_output=True, text=True).stdout.count(':'))\n")


@pytest.mark.skipif(unavailable_reason() is not None, reason="no bubblewrap sandbox here")
def test_a_pushed_kaggle_notebook_reads_input_writes_working_and_reaches_nothing_else(server, api, tmp_path):
    from local_fixtures import write_dataset

    api.dataset_create_new(str(write_dataset(tmp_path / "ds", "numbers", {"rows.csv": "a,b\n1,2\n"})), quiet=True)
    api.kernels_push(str(write_kernel(tmp_path / "first", "first-run", "open('private.txt', 'w').write('mine')")))
    assert wait_kernel(api, f"{USER}/first-run").status.name == "COMPLETE"
    data = server.data_dir.resolve()
    other = data / "runs" / USER / "first-run" / "v1" / "working" / "private.txt"
    assert other.read_text() == "mine"
    before = snapshot(data)
    api.kernels_push(str(write_kernel(tmp_path / "k", "kaggle-style", KAGGLE_STYLE.format(
        data=str(data), db=str(data / "kaggle.sqlite3"), other=str(other)), dataset_sources=[f"{USER}/numbers"])))
    assert wait_kernel(api, f"{USER}/kaggle-style").status.name == "COMPLETE"

    files, _ = api.kernels_output(f"{USER}/kaggle-style", str(tmp_path / "out"))
    assert (tmp_path / "out" / "doubled.csv").read_text() == "a,b\n1,2\n" * 2
    log = (tmp_path / "out" / "kaggle-style.log").read_text()
    for path in (data / "kaggle.sqlite3", other):
        assert f"{path} refused FileNotFoundError" in log
    assert "listing False" in log and "interfaces 1" in log  # no data folder at all; internet off: loopback only
    after = snapshot(data)  # the run wrote only inside its own sandbox folder
    new = {k for k in after if k not in before or after[k] != before[k]}
    assert new and all(k.startswith(f"runs/{USER}/kaggle-style/v1/") for k in new), sorted(new)
