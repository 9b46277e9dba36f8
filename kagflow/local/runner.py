"""Run a notebook the way a Kaggle batch session does, on this machine: the one runner of local kernels.

:func:`run_notebook_in_sandbox` executes a notebook with ``<sandbox>/input`` as its read-only inputs,
``<sandbox>/working`` as its cwd and output, a time limit, cancellation and, with
``enable_internet=False``, no way out to the network. The local server's kernel runs
(:mod:`kagflow.local.jobs`) and ``kagflow kernel run --local`` (:mod:`kagflow.localrun`) both use it.

Where bubblewrap works (:mod:`kagflow.local.sandbox`), the run happens in a Kaggle-shaped sandbox:
the notebook sees ``/kaggle/input``, ``/kaggle/working``, ``/kaggle/temp`` and, with internet off,
a network namespace with loopback only. Elsewhere it runs unconfined in the sandbox folders (one
line on stderr says so), with a socket guard for internet off.

``kagflow/local/executor.py`` (this interpreter's nbclient) starts a ``python3`` kernel on ``python``
(default: this interpreter; kagflow passes the local image's, see :mod:`kagflow.localimage`).
``pip install`` in the kernel goes to the run's own ``site`` folder (``PIP_TARGET``, first on the
kernel's ``PYTHONPATH``): a run never modifies the image or any other environment.

Sandbox layout::

    <sandbox>/input/      inputs (see kagflow.local.mounts)
    <sandbox>/working/    cwd; its files are the run's output
    <sandbox>/temp/       /kaggle/temp
    <sandbox>/log.json    Kaggle-format log: [{"stream_name", "time", "data"}, ...]
    <sandbox>/.kagflow/   internals: notebook, executed.ipynb, result, kernelspec, site/
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping, Optional

from kagflow.local import sandbox as bwrap

COMPLETE, ERROR, CANCELLED = "COMPLETE", "ERROR", "CANCEL_ACKNOWLEDGED"
NO_INTERNET_PROXY = "http://127.0.0.1:9"  # discard port: nothing listens, connections fail at once
KILL_GRACE_S = 3.0
EXECUTOR = Path(__file__).with_name("executor.py")  # copied into the run: imports nothing from kagflow
# One OpenMP thread unless the caller says otherwise: on a small CPU box, the kernel's threads
# contend with the server and the client, and a training step gets many times slower.
KERNEL_THREADS = {"OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
HIDDEN_ENV = ("KAGGLE_KEY", "KAGGLE_API_TOKEN", "KAGGLE_USERNAME", "KAGGLE_CONFIG_DIR", "PYTHONPATH")

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


@dataclass(frozen=True)
class Places:
    """The run's folders as the kernel sees them: /kaggle/... in the sandbox, else the host's."""

    input: Path
    working: Path
    temp: Path
    internal: Path

    @classmethod
    def of(cls, sandbox: Path, sandboxed: bool) -> "Places":
        if sandboxed:
            return cls(bwrap.KAGGLE_ROOT / "input", bwrap.KAGGLE_ROOT / "working", bwrap.KAGGLE_ROOT / "temp",
                       bwrap.INTERNAL)
        return cls(sandbox / "input", sandbox / "working", sandbox / "temp", sandbox / ".kagflow")


def sandbox_env(sandbox: Path, *, enable_internet: bool, env: Optional[Mapping[str, str]] = None,
                python: Optional[str] = None, sandboxed: bool = False) -> dict:
    """The environment a run sees (kagflow roots, Kaggle's batch marker, the network switch); also
    writes the run's ``python3`` kernelspec and, unconfined without internet, the socket guard."""
    sandbox = Path(sandbox).resolve()
    places = Places.of(sandbox, sandboxed)
    # never the pusher's credentials, nor this machine's pip settings (the kernel's pip is Kaggle's)
    result = {k: v for k, v in os.environ.items() if k not in HIDDEN_ENV and not k.startswith("PIP_")}
    kernel_path = [str(places.internal / "site")]
    (sandbox / ".kagflow" / "site").mkdir(parents=True, exist_ok=True)
    if not enable_internet and not sandboxed:
        guard = sandbox / ".kagflow" / "guard"
        guard.mkdir(parents=True, exist_ok=True)
        (guard / "sitecustomize.py").write_text(SITECUSTOMIZE)
        kernel_path.append(str(places.internal / "guard"))
        for var in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "all_proxy"):
            result[var] = NO_INTERNET_PROXY
        result["no_proxy"] = result["NO_PROXY"] = "127.0.0.1,localhost,::1"
    _kernelspec(sandbox / ".kagflow" / "jupyter", python or sys.executable,
                {"PYTHONPATH": os.pathsep.join(kernel_path), "PIP_TARGET": str(places.internal / "site")})
    result.update({
        "JUPYTER_PATH": str(places.internal / "jupyter"),
        "KAGFLOW_INPUT_ROOT": str(places.input),
        "KAGFLOW_WORKING_ROOT": str(places.working),
        "KAGGLE_KERNEL_RUN_TYPE": "Batch",
        "KAGFLOW_INTERNET": "1" if enable_internet else "0",
        "PYTHONUNBUFFERED": "1",
    })
    if sandboxed:
        result.update({"HOME": "/tmp", "TMPDIR": "/tmp"})
    result.update({k: v for k, v in KERNEL_THREADS.items() if k not in os.environ})
    result.update(env or {})
    return result


def _kernelspec(jupyter_dir: Path, python: str, env: Mapping[str, str]) -> Path:
    """A ``python3`` kernelspec for ``python`` with the kernel's own ``env``, found first through
    ``JUPYTER_PATH`` (a user-wide ``python3`` kernelspec could otherwise pick another Python)."""
    spec = jupyter_dir / "kernels" / "python3"
    spec.mkdir(parents=True, exist_ok=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [str(python), "-m", "ipykernel_launcher", "-f", "{connection_file}"], "env": dict(env),
        "display_name": "Python 3 (kagflow local)", "language": "python", "metadata": {"debugger": False}}))
    return jupyter_dir


def run_notebook_in_sandbox(notebook_path: os.PathLike | str, sandbox_dir: os.PathLike | str, *,
                            timeout: float, enable_internet: bool, env: Optional[Mapping[str, str]] = None,
                            cancel: Optional[threading.Event] = None, python: Optional[str] = None,
                            hide: Iterable[os.PathLike | str] = ()) -> tuple[str, str, Path]:
    """Execute a notebook in ``sandbox_dir``; return ``(status, failure_message, log_path)``.

    ``status`` is ``"COMPLETE"``, ``"ERROR"`` (``failure_message`` is the exception's
    ``Name: value``, or the time limit) or ``"CANCEL_ACKNOWLEDGED"`` after ``cancel`` is set.
    ``sandbox_dir/input`` should already hold the inputs; the other folders are created.
    ``python``: the kernel's interpreter (with ipykernel); ``hide``: host folders the run must not see.
    """
    sandbox = Path(sandbox_dir).resolve()
    working, internal = sandbox / "working", sandbox / ".kagflow"
    for folder in (sandbox / "input", working, sandbox / "temp", internal):
        folder.mkdir(parents=True, exist_ok=True)
    log_path, result_path = sandbox / "log.json", internal / "result.json"
    result_path.unlink(missing_ok=True)
    log_path.write_text("[]")
    if Path(notebook_path).resolve() != internal / "notebook.ipynb":
        shutil.copyfile(notebook_path, internal / "notebook.ipynb")
    shutil.copyfile(EXECUTOR, internal / "executor.py")
    reason = bwrap.unavailable_reason()
    places = Places.of(sandbox, reason is None)
    cmd = [sys.executable, str(places.internal / "executor.py"), str(places.internal / "notebook.ipynb"),
           str(places.working), str(places.internal / "log.json") if reason is None else str(log_path),
           str(places.internal / "result.json"), str(places.internal / "executed.ipynb")]
    if reason is None:
        cmd = bwrap.command(cmd, input_dir=sandbox / "input", working_dir=working, temp_dir=sandbox / "temp",
                            internal_dir=internal, log_file=log_path, enable_internet=enable_internet,
                            hide=[Path(h) for h in hide], expose=_code_folders(python, env))
    else:
        print(f"kagflow: no sandbox for this kernel run ({reason}); it runs unconfined in {sandbox}",
              file=sys.stderr)
    run_env = sandbox_env(sandbox, enable_internet=enable_internet, env=env, python=python, sandboxed=reason is None)
    with open(internal / "executor.log", "wb") as executor_log:
        proc = subprocess.Popen(cmd, cwd=working, env=run_env, stdin=subprocess.DEVNULL, stdout=executor_log,
                                stderr=subprocess.STDOUT, start_new_session=True)
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


def _code_folders(python: Optional[str], env: Optional[Mapping[str, str]]) -> list[Path]:
    """What the executor and the kernel run from: both interpreters' environments, kagflow's own source
    and the PYTHONPATH folders (the sandbox's empty /tmp would hide those that live under /tmp)."""
    folders = {Path(sys.prefix), Path(sys.base_prefix), Path(__file__).resolve().parents[2]}
    for exe in filter(None, (python,)):
        folders |= {Path(exe).parent.parent, Path(os.path.realpath(exe)).parent.parent}
    pythonpath = (env or {}).get("PYTHONPATH", os.environ.get("PYTHONPATH", ""))
    folders |= {Path(p) for p in pythonpath.split(os.pathsep) if p}
    return sorted(folders)


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
