"""Run a notebook the way a Kaggle batch session does, on this machine.

:func:`run_notebook_in_sandbox` executes a notebook in ``<sandbox>/working`` (the cwd) with
``<sandbox>/input`` as its read-only inputs, a time limit, cancellation and, with
``enable_internet=False``, no outbound network. It starts ``kagflow/local/executor.py``
(the same interpreter as the caller, so the ``python3`` kernel is this environment's ipykernel)
in its own process group, so a cancel or a timeout can end it and its kernel.

Sandbox layout::

    <sandbox>/input/      inputs (see kagflow.local.mounts)
    <sandbox>/working/    cwd; its files are the run's output
    <sandbox>/log.json    Kaggle-format log: [{"stream_name", "time", "data"}, ...]
    <sandbox>/executed.ipynb, <sandbox>/.kagflow/   executed notebook, sandbox internals
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Mapping, Optional

COMPLETE, ERROR, CANCELLED = "COMPLETE", "ERROR", "CANCEL_ACKNOWLEDGED"
NO_INTERNET_PROXY = "http://127.0.0.1:9"  # discard port: nothing listens, connections fail at once
KILL_GRACE_S = 3.0
EXECUTOR = Path(__file__).with_name("executor.py")  # run by path: imports nothing from kagflow

SITECUSTOMIZE = '''\
"""kagflow local kernel: internet is off (enable_internet: false). Loopback still works."""
import errno as _errno
import ipaddress as _ipaddress
import socket as _socket

_MESSAGE = "Internet is disabled for this kernel (enable_internet: false)"
_LOCAL_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost"}


def _is_local(host):
    if host is None:
        return True
    if isinstance(host, bytes):
        host = host.decode("ascii", "replace")
    host = str(host).split("%")[0].strip("[]").lower()
    if host in _LOCAL_NAMES or host == "":
        return True
    try:
        return _ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _guard(address):
    if isinstance(address, tuple) and not _is_local(address[0]):
        raise OSError(_errno.ENETUNREACH, _MESSAGE)


_connect, _connect_ex = _socket.socket.connect, _socket.socket.connect_ex
_getaddrinfo = _socket.getaddrinfo


def _guarded_connect(self, address):
    _guard(address)
    return _connect(self, address)


def _guarded_connect_ex(self, address):
    _guard(address)
    return _connect_ex(self, address)


def _is_literal(host):
    try:
        _ipaddress.ip_address(str(host).split("%")[0].strip("[]"))
        return True
    except ValueError:
        return False


def _guarded_getaddrinfo(host, *args, **kwargs):
    if not _is_local(host) and not _is_literal(host):  # literals need no DNS; connect() refuses them
        raise _socket.gaierror(_socket.EAI_NONAME, _MESSAGE)
    return _getaddrinfo(host, *args, **kwargs)


_socket.socket.connect = _guarded_connect
_socket.socket.connect_ex = _guarded_connect_ex
_socket.getaddrinfo = _guarded_getaddrinfo
'''


# One OpenMP thread unless the caller says otherwise: on a small CPU box, the kernel's threads
# contend with the server and the client, and a training step gets many times slower.
KERNEL_THREADS = {"OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}


def sandbox_env(sandbox: Path, *, enable_internet: bool, env: Optional[Mapping[str, str]] = None) -> dict:
    """The environment a run sees: kagflow roots, Kaggle's batch marker, and the network switch."""
    sandbox = Path(sandbox).resolve()
    result = dict(os.environ)
    for key in ("KAGGLE_KEY", "KAGGLE_API_TOKEN", "KAGGLE_USERNAME"):
        result.pop(key, None)  # a kernel never sees the pusher's credentials
    jupyter = _kernelspec(sandbox / ".kagflow" / "jupyter")
    result["JUPYTER_PATH"] = os.pathsep.join(p for p in (str(jupyter), result.get("JUPYTER_PATH", "")) if p)
    result.update({
        "KAGFLOW_INPUT_ROOT": str(sandbox / "input"),
        "KAGFLOW_WORKING_ROOT": str(sandbox / "working"),
        "KAGGLE_KERNEL_RUN_TYPE": "Batch",
        "PYTHONUNBUFFERED": "1",
    })
    result.update({k: v for k, v in KERNEL_THREADS.items() if k not in os.environ})
    if not enable_internet:
        site = sandbox / ".kagflow" / "site"
        site.mkdir(parents=True, exist_ok=True)
        (site / "sitecustomize.py").write_text(SITECUSTOMIZE)
        result["PYTHONPATH"] = os.pathsep.join(p for p in (str(site), result.get("PYTHONPATH", "")) if p)
        for var in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "all_proxy"):
            result[var] = NO_INTERNET_PROXY
        result["no_proxy"] = result["NO_PROXY"] = "127.0.0.1,localhost,::1"
        result["KAGFLOW_INTERNET"] = "0"
    else:
        result["KAGFLOW_INTERNET"] = "1"
    result.update(env or {})
    return result


def _kernelspec(jupyter_dir: Path) -> Path:
    """A ``python3`` kernelspec for this very interpreter, found first through ``JUPYTER_PATH``.

    A user-wide ``python3`` kernelspec (``~/.local/share/jupyter``) could otherwise point the run
    at another Python.
    """
    spec = jupyter_dir / "kernels" / "python3"
    spec.mkdir(parents=True, exist_ok=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python 3 (kagflow local)", "language": "python", "metadata": {"debugger": False}}))
    return jupyter_dir


def run_notebook_in_sandbox(notebook_path: os.PathLike | str, sandbox_dir: os.PathLike | str, *,
                            timeout: float, enable_internet: bool, env: Optional[Mapping[str, str]] = None,
                            cancel: Optional[threading.Event] = None) -> tuple[str, str, Path]:
    """Execute a notebook in ``sandbox_dir``; return ``(status, failure_message, log_path)``.

    ``status`` is ``"COMPLETE"``, ``"ERROR"`` (``failure_message`` is the exception's
    ``Name: value``, or the time limit) or ``"CANCEL_ACKNOWLEDGED"`` after ``cancel`` is set.
    ``sandbox_dir/input`` should already hold the inputs; ``working`` is created if missing.
    """
    sandbox = Path(sandbox_dir).resolve()
    working, internal = sandbox / "working", sandbox / ".kagflow"
    for folder in (sandbox / "input", working, internal):
        folder.mkdir(parents=True, exist_ok=True)
    log_path, result_path = sandbox / "log.json", internal / "result.json"
    result_path.unlink(missing_ok=True)
    cmd = [sys.executable, str(EXECUTOR), str(Path(notebook_path).resolve()), str(working),
           str(log_path), str(result_path)]
    with open(internal / "executor.log", "wb") as executor_log:
        proc = subprocess.Popen(cmd, cwd=working, env=sandbox_env(sandbox, enable_internet=enable_internet, env=env),
                                stdin=subprocess.DEVNULL, stdout=executor_log, stderr=subprocess.STDOUT,
                                start_new_session=True)
        ended = _wait(proc, timeout, cancel)
    if ended == "cancel":
        _append_log(log_path, "stderr", "Kernel run cancelled.\n")
        return CANCELLED, "Cancelled", log_path
    if ended == "timeout":
        message = f"Timeout: the run exceeded its time limit of {timeout:g} seconds"
        _append_log(log_path, "stderr", message + "\n")
        return ERROR, message, log_path
    try:
        result = json.loads(result_path.read_text())
    except (OSError, ValueError):
        tail = (internal / "executor.log").read_text(errors="replace")[-2000:]
        message = f"Kernel process exited with code {proc.returncode} before finishing"
        _append_log(log_path, "stderr", message + "\n" + tail)
        return ERROR, message, log_path
    status = COMPLETE if result.get("status") == COMPLETE else ERROR
    return status, result.get("failure") or "", log_path


def _wait(proc: subprocess.Popen, timeout: float, cancel: Optional[threading.Event]) -> str:
    deadline = time.monotonic() + timeout
    while True:
        try:
            proc.wait(timeout=0.1)
            return "exit"
        except subprocess.TimeoutExpired:
            pass
        if cancel is not None and cancel.is_set():
            _stop(proc)
            return "cancel"
        if time.monotonic() > deadline:
            _stop(proc)
            return "timeout"


def _stop(proc: subprocess.Popen) -> None:
    """SIGTERM the executor's group (it shuts its kernel down), then SIGKILL what is left."""
    for sig, grace in ((signal.SIGTERM, KILL_GRACE_S), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=grace)
            if sig == signal.SIGKILL:
                return
        except subprocess.TimeoutExpired:
            continue
        try:  # leader gone; kill stragglers (the kernel) in the group
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        return


def _append_log(log_path: Path, stream: str, data: str) -> None:
    """Add one entry to a Kaggle-format log, creating or repairing it as needed."""
    entries = read_log(log_path)
    entries.append({"stream_name": stream, "time": entries[-1]["time"] if entries else 0.0, "data": data})
    tmp = log_path.with_suffix(".tmp")
    tmp.write_text("[" + "\n,".join(json.dumps(e) for e in entries) + "]")
    os.replace(tmp, log_path)


def read_log(log_path: Path) -> list:
    """Entries of a Kaggle-format log (empty if missing or unreadable)."""
    try:
        data = json.loads(Path(log_path).read_text())
        return data if isinstance(data, list) else []
    except (OSError, ValueError):
        return []
