"""The kernel runner: sandbox, environment, no internet, time limit, cancel, outputs."""

from __future__ import annotations

import json
import threading
import time

from local_fixtures import *  # noqa: F401,F403
from local_fixtures import USER, wait_kernel, write_kernel, write_notebook

from kagflow.local.runner import run_notebook_in_sandbox

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
                        "open('result.txt', 'w').write('done')")
    status, _, log = run_notebook_in_sandbox(nb, tmp_path / "sb", timeout=60, enable_internet=True,
                                             env={"EXTRA": "1"})
    lines = _stdout(log).splitlines()
    sandbox = (tmp_path / "sb").resolve()
    assert status == "COMPLETE"
    assert json.loads(lines[0]) == {"KAGFLOW_INPUT_ROOT": str(sandbox / "input"),
                                    "KAGFLOW_WORKING_ROOT": str(sandbox / "working"),
                                    "KAGGLE_KERNEL_RUN_TYPE": "Batch", "EXTRA": "1"}
    assert lines[1] == f"{sandbox / 'working'} False"
    assert (sandbox / "working" / "result.txt").read_text() == "done"


def test_time_limit_and_cancel(tmp_path):
    nb = write_notebook(tmp_path / "slow.ipynb", "print('going to sleep', flush=True)", "import time; time.sleep(60)")
    t0 = time.monotonic()
    status, failure, log = run_notebook_in_sandbox(nb, tmp_path / "sb1", timeout=3, enable_internet=False)
    assert status == "ERROR" and failure.startswith("Timeout") and time.monotonic() - t0 < 15
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


def test_kernel_is_this_interpreter(tmp_path):
    import sys
    nb = write_notebook(tmp_path / "py.ipynb", "import sys; print(sys.executable)")
    status, _, log = run_notebook_in_sandbox(nb, tmp_path / "sb", timeout=60, enable_internet=True)
    assert status == "COMPLETE" and _stdout(log).strip() == sys.executable
